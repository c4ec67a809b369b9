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


class UnsupportedCipherSuiteError(MLSError, ValueError):
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


class WrongEpochError(ValidationError):
    """A message is for an epoch other than the group's current one (§6: epoch check),
    and no retained past epoch can read it (§15.3)."""


class StaleCommitError(WrongEpochError):
    """A Commit for an epoch the group has already left: another Commit won the race (§14)."""


class CommitConflictError(MLSError):
    """A Commit is already pending for this member: merge it, receive the winner, or discard it first."""


class UnknownMemberError(ValidationError):
    """A client identifier (or leaf index) does not name a current member of the group."""


class UnknownIdentityError(MLSError, KeyError):
    """No identity (signature key pair) is stored under this client identifier."""


class NoMatchingKeyPackageError(ValidationError):
    """A Welcome names none of this client's KeyPackages (§12.4.3.1)."""


class MissingRatchetTreeError(ValidationError):
    """A Welcome or GroupInfo has no ratchet_tree extension and no tree was supplied (§12.4.3.3)."""


class MissingPSKError(ValidationError):
    """A PreSharedKeyID names a PSK this client does not hold (§8.4, §12.4.2)."""


class GroupInactiveError(MLSError):
    """The group can no longer be used by this member: it was removed, or a ReInit was committed (§11.2, §12.4.2)."""


class StateFormatError(MLSError, ValueError):
    """Stored group state is corrupt or of an unknown format version."""


class InvalidArgumentTypeError(MLSError, TypeError):
    """An API argument has the wrong type (e.g. None or an int where bytes are expected).

    Both an ``MLSError`` and a ``TypeError``.
    """


class StorageError(MLSError):
    """The storage backend failed (I/O error, locked or corrupt database)."""


class StorageKeyError(StorageError):
    """The storage encryption key is missing, malformed, or not the one the stored state was sealed with.

    The message never contains the key.
    """


class TamperedRecordError(StorageError):
    """A sealed stored record failed authentication: modified, moved to another place, or truncated."""
