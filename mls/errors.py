"""Every exception the ``mls`` package raises (one place, as in ``cryptography``).

Each class has a ``code``: the ``MLSError.code`` the JS MLS Web API
(web/mls/errors.js) raises for the same failure. The codes are listed once,
in tests/contracts/mls_error_codes.json, which both languages test against.
Messages never carry secret material: no keys, no plaintext.
"""


class MLSError(Exception):
    """Base class of every error raised by the ``mls`` package."""

    code = "error"


class DecodeError(MLSError, ValueError):
    """Bytes are not a valid RFC 9420 encoding (§2.1 TLS presentation language)."""

    code = "malformed"


class CryptoError(MLSError):
    """A cryptographic operation failed: bad key, failed AEAD or HPKE open (§5)."""

    code = "cryptoFailure"


class SignatureError(CryptoError):
    """A signature did not verify (§5.1.2 VerifyWithLabel)."""

    code = "badSignature"


class UnsupportedCipherSuiteError(MLSError, ValueError):
    """The cipher suite is not one of 1-7 (§17.1)."""

    code = "unsupported"


class ValidationError(MLSError):
    """A structurally valid message breaks a protocol rule (e.g. §12.2, §7.3)."""

    code = "invalidMessage"


class SecretTreeError(MLSError):
    """A secret tree key cannot be produced (§9): consumed, too old, or too far ahead."""

    code = "ratchetKeyUnavailable"


class EncodeError(MLSError, ValueError):
    """A value cannot be encoded (§2.1): integer out of range or vector longer than 2^30-1 bytes."""

    code = "unencodable"


class TreeMathError(ValidationError, ValueError):
    """A node or leaf index has no such relative in the tree (Appendix C): a leaf's child,
    the root's parent, or an index outside a tree of the given size."""

    code = "treeIndexOutOfRange"


class UnknownSenderError(ValidationError):
    """A message names a sender that is not a member of the group (§6.3.2: non-blank leaf)."""

    code = "unknownSender"


class MembershipTagError(CryptoError):
    """A PublicMessage's ``membership_tag`` did not verify (§6.2)."""

    code = "badMembershipTag"


class WrongEpochError(ValidationError):
    """A message is for an epoch other than the group's current one (§6: epoch check),
    and no retained past epoch can read it (§15.3)."""

    code = "wrongEpoch"


class StaleCommitError(WrongEpochError):
    """A Commit for an epoch the group has already left: another Commit won the race (§14)."""

    code = "staleCommit"


class CommitConflictError(MLSError):
    """A Commit is already pending for this member: merge it, receive the winner, or discard it first."""

    code = "commitPending"


class UnknownMemberError(ValidationError):
    """A client identifier (or leaf index) does not name a current member of the group."""

    code = "notMember"


class UnknownGroupError(UnknownMemberError):
    """This client has no stored state for the group id (never joined, or deleted)."""

    code = "unknownGroup"


class WrongGroupError(ValidationError):
    """A message belongs to another group than the one it was given to (§6: group_id check)."""

    code = "wrongGroup"


class NoPendingCommitError(ValidationError):
    """``apply_pending_commit`` with no Commit of this member pending (Web API ``applyPendingCommit``)."""

    code = "noPendingCommit"


class InvalidOperationError(ValidationError):
    """An operation the group state does not allow: e.g. committing one's own removal (§12.2),
    or creating a group this client already has."""

    code = "invalidOperation"


class InvalidArgumentError(ValidationError, ValueError):
    """An API argument has the right type but a value out of range (e.g. an exporter length)."""

    code = "invalidArgument"


class UnknownIdentityError(MLSError, KeyError):
    """No identity (signature key pair) is stored under this client identifier."""

    code = "unknownIdentity"


class NoMatchingKeyPackageError(ValidationError):
    """A Welcome names none of this client's KeyPackages (§12.4.3.1)."""

    code = "unknownKeyPackage"


class MissingRatchetTreeError(ValidationError):
    """A Welcome or GroupInfo has no ratchet_tree extension and no tree was supplied (§12.4.3.3)."""

    code = "missingRatchetTree"


class MissingPSKError(ValidationError):
    """A PreSharedKeyID names a PSK this client does not hold (§8.4, §12.4.2)."""

    code = "missingPsk"


class GroupInactiveError(MLSError):
    """The group can no longer be used by this member: it was removed, or a ReInit was committed (§11.2, §12.4.2)."""

    code = "groupInactive"


class StateFormatError(MLSError, ValueError):
    """Stored group state is corrupt or of an unknown format version."""

    code = "corruptState"


class InvalidArgumentTypeError(MLSError, TypeError):
    """An API argument has the wrong type (e.g. None or an int where bytes are expected).

    Both an ``MLSError`` and a ``TypeError``.
    """

    code = "invalidInput"


class StorageError(MLSError):
    """The storage backend failed (I/O error, locked or corrupt database)."""

    code = "storage"


class StorageKeyError(StorageError):
    """The storage encryption key is missing, malformed, or not the one the stored state was sealed with.

    The message never contains the key.
    """

    code = "storageKey"


class TamperedRecordError(StorageError):
    """A sealed stored record failed authentication: modified, moved to another place, or truncated."""

    code = "tamperedRecord"
