"""Every exception the ``mls`` package raises (one place, as in ``cryptography``).

Messages never carry secret material: no keys, no plaintext.
"""


class MLSError(Exception):
    """Base class of every error raised by the ``mls`` package."""


class DecodeError(MLSError, ValueError):
    """Bytes are not a valid RFC 9420 encoding (§2.1 TLS presentation language)."""


class CryptoError(MLSError):
    """A cryptographic operation failed: bad key, failed AEAD or HPKE open (§5)."""


class SignatureError(CryptoError):
    """A signature did not verify (§5.1.2 VerifyWithLabel)."""


class UnsupportedCipherSuite(MLSError, ValueError):
    """The cipher suite is not one of 1-7 (§17.1)."""


class ValidationError(MLSError):
    """A structurally valid message breaks a protocol rule (e.g. §12.2, §7.3)."""


class SecretTreeError(MLSError):
    """A secret tree key cannot be produced (§9): consumed, too old, or too far ahead."""


class EncodeError(MLSError, ValueError):
    """A value cannot be encoded (§2.1): integer out of range or vector longer than 2^30-1 bytes."""


class TreeMathError(ValidationError, ValueError):
    """A node or leaf index has no such relative in the tree (Appendix C): a leaf's child,
    the root's parent, or an index outside a tree of the given size."""


class UnknownSenderError(ValidationError):
    """A message names a sender that is not a member of the group (§6.3.2: non-blank leaf)."""


class MembershipTagError(CryptoError):
    """A PublicMessage's ``membership_tag`` did not verify (§6.2)."""
