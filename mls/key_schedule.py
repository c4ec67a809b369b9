"""The MLS key schedule (RFC 9420 §8).

One epoch's secrets come from the previous ``init_secret``, the
``commit_secret`` of the Commit, the ``psk_secret`` (§8.4) and the serialized
GroupContext of the new epoch::

    joiner_secret  = ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GC, Nh)
    member_secret  = Extract(joiner_secret, psk_secret)
    welcome_secret = DeriveSecret(member_secret, "welcome")
    epoch_secret   = ExpandWithLabel(member_secret, "epoch", GC, Nh)

and every other secret is ``DeriveSecret(epoch_secret, <label>)`` (§8, table
"Epoch-Derived Secrets"). ``epoch_secret`` itself is not kept: once the
derived secrets exist it is consumed (§9.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import constant_time

from mls.crypto import CipherSuite


def joiner_secret(suite: CipherSuite, init_secret: bytes, commit_secret: bytes, group_context: bytes) -> bytes:
    """``joiner_secret`` of the new epoch (§8); ``group_context`` is the encoded GroupContext_[n]."""
    prk = suite.kdf_extract(init_secret, commit_secret)
    return suite.expand_with_label(prk, b"joiner", group_context, suite.Nh)


def _member_secret(suite: CipherSuite, joiner: bytes, psk_secret: bytes | None) -> bytes:
    return suite.kdf_extract(joiner, psk_secret if psk_secret is not None else bytes(suite.Nh))


def welcome_secret(suite: CipherSuite, joiner: bytes, psk_secret: bytes | None = None) -> bytes:
    """``welcome_secret = DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")`` (§8)."""
    return suite.derive_secret(_member_secret(suite, joiner, psk_secret), b"welcome")


def epoch_secret(suite: CipherSuite, joiner: bytes, psk_secret: bytes | None, group_context: bytes) -> bytes:
    """``epoch_secret = ExpandWithLabel(Extract(joiner_secret, psk_secret), "epoch", GC, Nh)`` (§8)."""
    return suite.expand_with_label(_member_secret(suite, joiner, psk_secret), b"epoch", group_context, suite.Nh)


def welcome_key_nonce(suite: CipherSuite, welcome: bytes) -> tuple[bytes, bytes]:
    """``(welcome_key, welcome_nonce)`` that encrypt the GroupInfo of a Welcome (§12.4.3.1)."""
    return (
        suite.expand_with_label(welcome, b"key", b"", suite.Nk),
        suite.expand_with_label(welcome, b"nonce", b"", suite.Nn),
    )


@dataclass(frozen=True)
class EpochSecrets:
    """The secrets of one epoch (§8, "Epoch-Derived Secrets"), plus the next ``init_secret``.

    Build one with :meth:`from_init_secret` (a member processing a Commit) or
    :meth:`from_joiner_secret` (a new member reading a Welcome).
    """

    suite: CipherSuite = field(repr=False)
    joiner_secret: bytes = field(repr=False)
    welcome_secret: bytes = field(repr=False)
    sender_data_secret: bytes = field(repr=False)
    encryption_secret: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    external_secret: bytes = field(repr=False)
    confirmation_key: bytes = field(repr=False)
    membership_key: bytes = field(repr=False)
    resumption_psk: bytes = field(repr=False)
    epoch_authenticator: bytes = field(repr=False)
    init_secret: bytes = field(repr=False)

    @classmethod
    def from_joiner_secret(
        cls, suite: CipherSuite, joiner: bytes, psk_secret: bytes | None, group_context: bytes
    ) -> EpochSecrets:
        """Secrets of the epoch whose ``joiner_secret`` is known (§8, §12.4.3.1)."""
        epoch = epoch_secret(suite, joiner, psk_secret, group_context)
        derive = suite.derive_secret
        return cls(
            suite=suite,
            joiner_secret=joiner,
            welcome_secret=welcome_secret(suite, joiner, psk_secret),
            sender_data_secret=derive(epoch, b"sender data"),
            encryption_secret=derive(epoch, b"encryption"),
            exporter_secret=derive(epoch, b"exporter"),
            external_secret=derive(epoch, b"external"),
            confirmation_key=derive(epoch, b"confirm"),
            membership_key=derive(epoch, b"membership"),
            resumption_psk=derive(epoch, b"resumption"),
            epoch_authenticator=derive(epoch, b"authentication"),
            init_secret=derive(epoch, b"init"),
        )

    @classmethod
    def from_init_secret(
        cls,
        suite: CipherSuite,
        init_secret: bytes,
        commit_secret: bytes,
        psk_secret: bytes | None,
        group_context: bytes,
    ) -> EpochSecrets:
        """Secrets of the next epoch, from the previous epoch's ``init_secret`` (§8).

        ``commit_secret`` is the all-zero vector when the Commit has no path;
        ``psk_secret`` ``None`` means no PSKs (the all-zero vector, §8.4).
        """
        joiner = joiner_secret(suite, init_secret, commit_secret, group_context)
        return cls.from_joiner_secret(suite, joiner, psk_secret, group_context)

    def welcome_key_nonce(self) -> tuple[bytes, bytes]:
        """``(welcome_key, welcome_nonce)`` for this epoch's Welcome (§12.4.3.1)."""
        return welcome_key_nonce(self.suite, self.welcome_secret)

    def export(self, label: bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(Label, Context, Length)`` (§8.5)."""
        suite = self.suite
        secret = suite.derive_secret(self.exporter_secret, label)
        return suite.expand_with_label(secret, b"exported", suite.hash(context), length)

    def external_key_pair(self) -> tuple[bytes, bytes]:
        """``(external_priv, external_pub) = KEM.DeriveKeyPair(external_secret)`` (§8)."""
        return self.suite.derive_key_pair(self.external_secret)

    def confirmation_tag(self, confirmed_transcript_hash: bytes) -> bytes:
        """This epoch's ``confirmation_tag`` over ``confirmed_transcript_hash`` (§6.1)."""
        return confirmation_tag(self.suite, self.confirmation_key, confirmed_transcript_hash)

    def verify_confirmation_tag(self, confirmed_transcript_hash: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is this epoch's confirmation tag (constant-time comparison)."""
        return verify_confirmation_tag(self.suite, self.confirmation_key, confirmed_transcript_hash, tag)


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed_transcript_hash: bytes) -> bytes:
    """``confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)`` (§6.1)."""
    return suite.mac(confirmation_key, confirmed_transcript_hash)


def verify_confirmation_tag(
    suite: CipherSuite, confirmation_key: bytes, confirmed_transcript_hash: bytes, tag: bytes
) -> bool:
    """Whether ``tag`` is the confirmation tag, compared in constant time (§6.1)."""
    return constant_time.bytes_eq(confirmation_tag(suite, confirmation_key, confirmed_transcript_hash), tag)


def external_init_sender(suite: CipherSuite, external_pub: bytes) -> tuple[bytes, bytes]:
    """``(kem_output, init_secret)`` of a joiner by external commit (§8.3, SetupBaseS side)."""
    return suite.hpke_export_sender(external_pub, b"", b"MLS 1.0 external init secret", suite.Nh)


def external_init_receiver(suite: CipherSuite, external_priv: bytes, kem_output: bytes) -> bytes:
    """``init_secret`` a member recovers from an ExternalInit ``kem_output`` (§8.3)."""
    return suite.hpke_export_receiver(kem_output, external_priv, b"", b"MLS 1.0 external init secret", suite.Nh)
