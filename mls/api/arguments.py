"""API arguments turned into RFC 9420 values, or a typed error.

The MLS Web API takes ``MLSBytesOrUint8Array`` (an ``MLSBytes`` of a fitting
type, or bytes) and, for texts, ``Uint8ArrayOrUTF8String``
(specs/mls-web-api-explainer-2025-02-webidl.md); so do these helpers, as
the JS side (web/mls/bytes.js) does. A wrong type raises
``InvalidArgumentTypeError``, a malformed encoding ``DecodeError`` (§2.1),
a well-formed message of the wrong kind ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mls.api.results import MLSBytes
from mls.crypto import CipherSuite, cipher_suite
from mls.errors import DecodeError, InvalidArgumentError, InvalidArgumentTypeError, ValidationError
from mls.wire.credentials import Credential
from mls.wire.extensions import Extension
from mls.wire.key_package import KeyPackage
from mls.wire.messages import MLSMessage

__all__ = [
    "as_bytes",
    "as_credential",
    "as_epoch",
    "as_exporter_length",
    "as_extensions",
    "as_identity_suite",
    "as_key_package",
    "as_key_packages",
    "decode_message",
]

def as_bytes(value: object, what: str, types: Sequence[str] = (), *, text: bool = False) -> bytes:
    """The bytes of ``value``: an ``MLSBytes`` whose type is one of ``types`` (any if empty),
    bytes-like, or (with ``text``) a str as UTF-8."""
    if isinstance(value, MLSBytes):
        if types and value.type not in types:
            raise InvalidArgumentTypeError(f"{what} is an MLSBytes of type {value.type}, expected {' or '.join(types)}")
        value = value.content
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and text:
        return value.encode("utf-8")
    allowed = "MLSBytes, bytes or str" if text else "MLSBytes or bytes"
    raise InvalidArgumentTypeError(f"{what} must be {allowed}, not {type(value).__name__}")


def decode_message(value: object, what: str, types: Sequence[str] = ()) -> MLSMessage:
    """An ``MLSMessage`` (§6) from its encoding; trailing bytes are an error."""
    data = as_bytes(value, what, types)
    try:
        return MLSMessage.decode(data)
    except DecodeError:
        raise
    except (ValueError, KeyError, IndexError) as exc:
        raise DecodeError(f"{what}: malformed ({type(exc).__name__})") from None


def as_credential(value: object) -> Credential:
    """A ``Credential`` (§5.3) from its encoding."""
    data = as_bytes(value, "credential", ("credential-basic",))
    try:
        return Credential.decode(data)
    except DecodeError:
        raise
    except (ValueError, KeyError, IndexError) as exc:
        raise DecodeError(f"credential: malformed ({type(exc).__name__})") from None


def as_key_package(value: object) -> KeyPackage:
    """The KeyPackage of an ``MLSMessage`` (§10), whose version must be the message's."""
    message = decode_message(value, "key_package", ("key-package",))
    if not isinstance(message.body, KeyPackage):
        raise ValidationError("not a KeyPackage message")
    if message.body.version != message.version:
        raise ValidationError("KeyPackage version differs from its MLSMessage's (§10)")
    return message.body


def as_key_packages(values: object) -> list[KeyPackage]:
    """KeyPackages from a sequence of KeyPackage messages."""
    if isinstance(values, (str, bytes, bytearray, memoryview, MLSBytes)) or not isinstance(values, Iterable):
        raise InvalidArgumentTypeError("key_packages must be a sequence of KeyPackage messages")
    return [as_key_package(value) for value in values]


def as_extensions(extensions: object, what: str) -> tuple[Extension, ...]:
    """A sequence of ``Extension`` (§7.2)."""
    if isinstance(extensions, (str, bytes, bytearray, memoryview)) or not isinstance(extensions, Iterable):
        raise InvalidArgumentTypeError(f"{what} must be a sequence of Extension, not {type(extensions).__name__}")
    result = tuple(extensions)
    for extension in result:
        if not isinstance(extension, Extension):
            raise InvalidArgumentTypeError(f"{what} must contain Extension objects, not {type(extension).__name__}")
    return result


def as_epoch(value: object) -> int:
    """An epoch number (uint64, §8)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"epoch must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << 64:
        raise InvalidArgumentError("epoch must be a uint64")
    return value


def as_exporter_length(value: object) -> int:
    """An MLS-Exporter length: ``uint16`` in KDFLabel (§8.5)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"length must be an int, not {type(value).__name__}")
    if not 0 < value <= 0xFFFF:
        raise InvalidArgumentError("exporter length must be 1..65535")
    return value


def as_identity_suite(identity_suite: int, wanted: object) -> CipherSuite:
    """The suite to use an identity in: its own (``wanted`` None), or ``wanted`` if that
    suite has the same signature scheme (1 and 3, 4 and 6), e.g. for a ReInit (§11.2)."""
    own = cipher_suite(identity_suite)
    if wanted is None:
        return own
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        raise InvalidArgumentTypeError(f"cipher_suite must be an int, not {type(wanted).__name__}")
    suite = cipher_suite(wanted)
    if suite.signature_scheme != own.signature_scheme:
        raise ValidationError(
            f"cipher suite {wanted} signs with {suite.signature_scheme}, this identity's key is {own.signature_scheme}"
        )
    return suite
