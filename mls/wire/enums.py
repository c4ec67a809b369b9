"""Code points of RFC 9420 (§17 IANA registries and the enums of §6, §7, §8, §12).

Closed enums that select a struct variant (``ContentType``, ``SenderType``,
``WireFormat``, ``NodeType``, ``LeafNodeSource``, ``PSKType``,
``ProposalOrRefType``) reject unknown values when decoding. Open registries
(``ProtocolVersion`` outside fixed fields, ``CipherSuiteId``, ``ExtensionType``,
``ProposalType``, ``CredentialType``, ``ResumptionPSKUsage``) keep unknown
values as plain ``int`` (see ``codec.open_enum``).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CipherSuiteId",
    "ContentType",
    "CredentialType",
    "ExtensionType",
    "LeafNodeSource",
    "NodeType",
    "PSKType",
    "ProposalOrRefType",
    "ProposalType",
    "ProtocolVersion",
    "ResumptionPSKUsage",
    "SenderType",
    "WireFormat",
]


class ProtocolVersion(IntEnum):
    """§6: ``enum { reserved(0), mls10(1), (65535) } ProtocolVersion``."""

    RESERVED = 0
    MLS10 = 1


class CipherSuiteId(IntEnum):
    """§17.1 MLS Cipher Suites (``uint16``)."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 0x0001
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 0x0002
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 0x0003
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 0x0004
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 0x0005
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 0x0006
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 0x0007


class ContentType(IntEnum):
    """§6: ``enum { reserved(0), application(1), proposal(2), commit(3), (255) }``."""

    RESERVED = 0
    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    """§6: sender types of ``Sender``."""

    RESERVED = 0
    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


class WireFormat(IntEnum):
    """§6 / §17.2 MLS Wire Formats (``uint16``)."""

    RESERVED = 0
    MLS_PUBLIC_MESSAGE = 1
    MLS_PRIVATE_MESSAGE = 2
    MLS_WELCOME = 3
    MLS_GROUP_INFO = 4
    MLS_KEY_PACKAGE = 5


class ExtensionType(IntEnum):
    """§17.3 MLS Extension Types (``uint16``)."""

    RESERVED = 0
    APPLICATION_ID = 1
    RATCHET_TREE = 2
    REQUIRED_CAPABILITIES = 3
    EXTERNAL_PUB = 4
    EXTERNAL_SENDERS = 5


class ProposalType(IntEnum):
    """§17.4 MLS Proposal Types (``uint16``)."""

    RESERVED = 0
    ADD = 1
    UPDATE = 2
    REMOVE = 3
    PSK = 4
    REINIT = 5
    EXTERNAL_INIT = 6
    GROUP_CONTEXT_EXTENSIONS = 7


class CredentialType(IntEnum):
    """§17.5 MLS Credential Types (``uint16``)."""

    RESERVED = 0
    BASIC = 1
    X509 = 2


class LeafNodeSource(IntEnum):
    """§7.2: ``enum { reserved(0), key_package(1), update(2), commit(3), (255) }``."""

    RESERVED = 0
    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


class NodeType(IntEnum):
    """§7.8: ``enum { reserved(0), leaf(1), parent(2), (255) } NodeType``."""

    RESERVED = 0
    LEAF = 1
    PARENT = 2


class PSKType(IntEnum):
    """§8.4: ``enum { reserved(0), external(1), resumption(2), (255) } PSKType``."""

    RESERVED = 0
    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    """§8.4: ``enum { reserved(0), application(1), reinit(2), branch(3), (255) }``."""

    RESERVED = 0
    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


class ProposalOrRefType(IntEnum):
    """§12.4: ``enum { reserved(0), proposal(1), reference(2), (255) }``."""

    RESERVED = 0
    PROPOSAL = 1
    REFERENCE = 2
