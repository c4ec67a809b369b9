"""KeyPackages and leaf nodes this client creates (RFC 9420 §7.2, §10)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto import KEY_PACKAGE_REF_LABEL, SUPPORTED_CIPHER_SUITES, CipherSuite
from mls.group.config import GroupConfig
from mls.tree import sign_leaf_node
from mls.wire.credentials import Credential
from mls.wire.enums import CredentialType, LeafNodeSource, ProtocolVersion
from mls.wire.key_package import KeyPackage, KeyPackageTBS
from mls.wire.tree import Capabilities, LeafNode, Lifetime

__all__ = ["KeyPackageBundle", "create_key_package", "default_capabilities", "key_package_ref"]

_KEY_PACKAGE_TBS = b"KeyPackageTBS"


def default_capabilities() -> Capabilities:
    """What this implementation supports (§7.2); default extension and proposal types are implied."""
    return Capabilities(
        versions=(ProtocolVersion.MLS10,),
        cipher_suites=tuple(SUPPORTED_CIPHER_SUITES),
        extensions=(),
        proposals=(),
        credentials=(CredentialType.BASIC, CredentialType.X509),
    )


def key_package_ref(suite: CipherSuite, key_package: KeyPackage) -> bytes:
    """``KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)`` (§5.2)."""
    return suite.ref_hash(KEY_PACKAGE_REF_LABEL, key_package.encode())


@dataclass(frozen=True)
class KeyPackageBundle:
    """A KeyPackage with the private keys that belong to it (never sent)."""

    key_package: KeyPackage
    init_private_key: bytes = field(repr=False)
    encryption_private_key: bytes = field(repr=False)


def _lifetime(config: GroupConfig) -> Lifetime:
    now = config.now()
    start = (now if now is not None else 0) - config.key_package_backdate
    start = max(start, 0)
    return Lifetime(start, start + config.key_package_backdate + config.key_package_lifetime)


def create_leaf_node(
    suite: CipherSuite,
    signature_private_key: bytes,
    signature_key: bytes,
    credential: Credential,
    config: GroupConfig,
) -> tuple[LeafNode, bytes]:
    """A fresh signed ``key_package``-source LeafNode (§7.2) and its HPKE private key."""
    encryption_private_key, encryption_key = suite.generate_key_pair()
    unsigned = LeafNode(
        encryption_key,
        signature_key,
        credential,
        default_capabilities(),
        LeafNodeSource.KEY_PACKAGE,
        lifetime=_lifetime(config),
    )
    return sign_leaf_node(suite, unsigned, signature_private_key), encryption_private_key


def create_key_package(
    suite: CipherSuite,
    signature_private_key: bytes,
    signature_key: bytes,
    credential: Credential,
    config: GroupConfig,
) -> KeyPackageBundle:
    """A signed KeyPackage (§10): fresh init and leaf keys, lifetime starting an hour ago."""
    leaf, encryption_private_key = create_leaf_node(suite, signature_private_key, signature_key, credential, config)
    init_private_key, init_key = suite.generate_key_pair()
    unsigned = KeyPackage(ProtocolVersion.MLS10, suite.suite_id, init_key, leaf)
    signature = suite.sign_with_label(signature_private_key, _KEY_PACKAGE_TBS, KeyPackageTBS(unsigned).encode())
    key_package = KeyPackage(unsigned.version, unsigned.cipher_suite, init_key, leaf, (), signature)
    return KeyPackageBundle(key_package, init_private_key, encryption_private_key)
