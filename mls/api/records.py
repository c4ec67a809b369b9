"""Formats of the records the API keeps in its ``Storage`` (``mls.storage``).

Four namespaces, each value TLS-encoded (§2.1 presentation language) so any
storage can hold it as bytes:

* ``identity``, key ``client_id``: the signature key pair (§5.1) and its suite;
* ``key_package``, key ``KeyPackageRef`` (§5.2): a KeyPackage we published and
  its init and encryption private keys, until a Welcome uses it (§16.8);
* ``group``, key ``(group_id, client_id)``: a member's encoded ``GroupState``
  (``mls.group.serialize``);
* ``psk``, key ``psk_id``: an external PSK (§8.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.wire.codec import Reader, Writer
from mls.wire.key_package import KeyPackage

__all__ = ["GROUP", "IDENTITY", "KEY_PACKAGE", "PSK", "IdentityRecord", "KeyPackageRecord", "group_id_of_key", "group_key"]

IDENTITY = "identity"
KEY_PACKAGE = "key_package"
GROUP = "group"
PSK = "psk"


def group_key(group_id: bytes, client_id: bytes) -> bytes:
    """The record key of one member's state of one group: ``opaque group_id<V>; opaque client_id<V>``."""
    writer = Writer()
    writer.opaque(group_id)
    writer.opaque(client_id)
    return writer.getvalue()


def group_id_of_key(key: bytes) -> bytes:
    """The group id in a ``group`` record key."""
    return Reader(key).opaque("group_id")


@dataclass(frozen=True)
class IdentityRecord:
    """``struct { uint16 cipher_suite; opaque private_key<V>; opaque public_key<V>; }``."""

    suite_id: int
    private_key: bytes = field(repr=False)
    public_key: bytes

    def encode(self) -> bytes:
        writer = Writer()
        writer.u16(self.suite_id)
        writer.opaque(self.private_key)
        writer.opaque(self.public_key)
        return writer.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> IdentityRecord:
        reader = Reader(data)
        return cls(reader.u16("suite"), reader.opaque("private"), reader.opaque("public"))


@dataclass(frozen=True)
class KeyPackageRecord:
    """``struct { opaque client_id<V>; opaque key_package<V>; opaque init<V>; opaque encryption<V>; }``."""

    client_id: bytes
    key_package: bytes
    init_private_key: bytes = field(repr=False)
    encryption_private_key: bytes = field(repr=False)

    def encode(self) -> bytes:
        writer = Writer()
        writer.opaque(self.client_id)
        writer.opaque(self.key_package)
        writer.opaque(self.init_private_key)
        writer.opaque(self.encryption_private_key)
        return writer.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> KeyPackageRecord:
        reader = Reader(data)
        return cls(reader.opaque("client_id"), reader.opaque("key_package"), reader.opaque("init"), reader.opaque("encryption"))

    def key_package_struct(self) -> KeyPackage:
        return KeyPackage.decode(self.key_package)
