"""Versioned binary encoding of ``GroupState`` for storage (never pickle).

The format reuses the RFC 9420 TLS codec (``mls.wire.codec``): a magic
``b"MLSG"``, a ``uint16`` format version, then the fields below. Wire
structs (GroupContext, ratchet tree, Proposal, Sender, ReInit) are stored in
their RFC 9420 encoding. Secrets that a running member no longer needs
(``joiner_secret``, ``welcome_secret``, ``encryption_secret``) are not
stored; the secret tree is stored as its current nodes and ratchets, so a
restarted member never reuses a key or nonce (§9.2).

Reading anything malformed raises ``StateFormatError``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mls.crypto import CipherSuite, cipher_suite
from mls.errors import MLSError, StateFormatError
from mls.group.state import CachedProposal, GroupState, PastEpoch, PendingCommit
from mls.key_schedule import EpochSecrets
from mls.secret_tree import HashRatchetState, RatchetKey, SecretTree, SecretTreeState
from mls.tree import RatchetTree, TreeKEMPrivate
from mls.wire.codec import Reader, Writer, encode_varint
from mls.wire.framing import Sender
from mls.wire.group_context import GroupContext
from mls.wire.proposals import Proposal, ReInit

__all__ = ["FORMAT_VERSION", "decode_state", "encode_state"]

MAGIC = b"MLSG"
FORMAT_VERSION = 1

_SECRET_FIELDS = (
    "sender_data_secret",
    "exporter_secret",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
    "epoch_authenticator",
    "init_secret",
)


def encode_state(state: GroupState) -> bytes:
    """Serialize a member's group state (format version 1)."""
    writer = Writer()
    writer.raw(MAGIC)
    writer.u16(FORMAT_VERSION)
    _write_state(writer, state)
    return writer.getvalue()


def decode_state(data: bytes) -> GroupState:
    """Parse what ``encode_state`` wrote; ``StateFormatError`` if corrupt or of another version."""
    try:
        reader = Reader(data)
        if reader.fixed(4, "magic") != MAGIC:
            raise StateFormatError("not an MLS group state")
        version = reader.u16("format version")
        if version != FORMAT_VERSION:
            raise StateFormatError(f"unknown group state format version {version}")
        state = _read_state(reader)
        reader.finish("group state")
        return state
    except StateFormatError:
        raise
    except (MLSError, ValueError, KeyError, IndexError) as exc:
        raise StateFormatError(f"corrupt group state ({type(exc).__name__})") from None


# --- state ----------------------------------------------------------------------------------


def _write_state(w: Writer, s: GroupState) -> None:
    w.u16(s.suite.suite_id)
    s.context.write(w)
    w.opaque(s.tree.encode())
    w.u32(s.leaf_index)
    keys = []
    for node in s.private.nodes():
        value = s.tree.node(node) if node < s.tree.node_count else None
        private_key = s.private.private_key(node)
        if value is not None and private_key is not None:
            keys.append((node, private_key, value.encryption_key))
    w.vector(keys, _write_node_key)
    w.opaque(s.signature_private_key)
    for name in _SECRET_FIELDS:
        w.opaque(getattr(s.secrets, name))
    w.opaque(s.interim_transcript_hash)
    w.opaque(s.confirmation_tag)
    _write_secret_tree(w, s.secret_tree)
    _write_cached_proposals(w, s.proposals.values())
    w.vector(s.update_keys.items(), lambda w2, kv: (w2.opaque(kv[0]), w2.opaque(kv[1])))
    w.opaque(b"".join(encode_varint(len(digest)) + digest for digest in sorted(s.own_messages)))  # opaque digests<V>
    w.optional(s.pending, _write_pending)
    w.vector(s.past, _write_past)
    w.vector(sorted(s.resumption_psks.items()), lambda w2, kv: (w2.u64(kv[0]), w2.opaque(kv[1])))
    w.optional_struct(s.reinit)
    w.u8(1 if s.removed else 0)
    w.u32(s.padding_block)


def _read_state(r: Reader) -> GroupState:
    suite = cipher_suite(r.u16("suite"))
    context = GroupContext.read(r)
    tree = RatchetTree.decode(suite, r.opaque("tree"))
    private = TreeKEMPrivate(r.u32("leaf_index"))
    for node, private_key, public_key in r.vector(_read_node_key, "private keys"):
        private.set_key(node, private_key, public_key)
    signature_private_key = r.opaque("signature key")
    values = {name: r.opaque(name) for name in _SECRET_FIELDS}
    secrets = EpochSecrets(suite=suite, joiner_secret=b"", welcome_secret=b"", encryption_secret=b"", **values)
    interim = r.opaque("interim")
    tag = r.opaque("confirmation tag")
    secret_tree = _read_secret_tree(r, suite)
    proposals = {p.ref: p for p in r.vector(_read_cached_proposal, "proposals")}
    update_keys = dict(r.vector(lambda r2: (r2.opaque("pub"), r2.opaque("priv")), "update keys"))
    own = set(r.vector(lambda r2: r2.opaque("digest"), "own messages"))
    pending = r.optional(_read_pending, "pending")
    past = list(r.vector(lambda r2: _read_past(r2, suite), "past epochs"))
    resumption = dict(r.vector(lambda r2: (r2.u64("epoch"), r2.opaque("psk")), "resumption"))
    reinit = r.optional(ReInit.read, "reinit")
    removed = r.u8("removed") == 1
    padding = r.u32("padding")
    return GroupState(
        suite=suite,
        context=context,
        tree=tree,
        private=private,
        signature_private_key=signature_private_key,
        secrets=secrets,
        interim_transcript_hash=interim,
        confirmation_tag=tag,
        secret_tree=secret_tree,
        proposals=proposals,
        update_keys=update_keys,
        own_messages=own,
        pending=pending,
        past=past,
        resumption_psks=resumption,
        reinit=reinit,
        removed=removed,
        padding_block=padding,
    )


def _write_node_key(w: Writer, item: tuple[int, bytes, bytes]) -> None:
    w.u32(item[0])
    w.opaque(item[1])
    w.opaque(item[2])


def _read_node_key(r: Reader) -> tuple[int, bytes, bytes]:
    return r.u32("node"), r.opaque("priv"), r.opaque("pub")


def _write_cached_proposals(w: Writer, proposals: Iterable[CachedProposal]) -> None:
    """``CachedProposal proposals<V>``, each encoded once: a cached proposal never changes,
    and the state is stored again after every proposal of the epoch."""
    stored = []
    for p in proposals:
        if p.stored is None:
            inner = Writer()
            inner.opaque(p.ref)
            p.proposal.write(inner)
            p.sender.write(inner)
            p.stored = inner.getvalue()
        stored.append(p.stored)
    w.opaque(b"".join(stored))


def _read_cached_proposal(r: Reader) -> CachedProposal:
    ref = r.opaque("ref")
    return CachedProposal(ref, Proposal.read(r), Sender.read(r))


def _write_pending(w: Writer, p: PendingCommit) -> None:
    w.opaque(p.message)
    inner = Writer()
    _write_state(inner, p.next_state)
    w.opaque(inner.getvalue())
    w.optional(p.welcome, Writer.opaque)
    w.optional(p.group_info, Writer.opaque)
    w.u8(1 if p.tree_apart else 0)


def _read_pending(r: Reader) -> PendingCommit:
    message = r.opaque("pending message")
    inner = Reader(r.opaque("pending state"))
    next_state = _read_state(inner)
    inner.finish("pending state")
    welcome = r.optional(lambda r2: r2.opaque("welcome"), "welcome")
    group_info = r.optional(lambda r2: r2.opaque("group info"), "group info")
    tree_apart = r.u8("tree apart") == 1
    return PendingCommit(message, next_state, welcome, group_info, tree_apart)


def _write_past(w: Writer, p: PastEpoch) -> None:
    p.group_context.write(w)
    _write_secret_tree(w, p.secret_tree)
    w.opaque(p.sender_data_secret)
    if p.stored_signature_keys is None:  # an ended epoch's members never change: encode them once
        body = b"".join(
            leaf.to_bytes(4, "big") + encode_varint(len(key)) + key for leaf, key in sorted(p.member_signature_keys().items())
        )  # struct { uint32 leaf; opaque key<V>; } keys<V>
        p.stored_signature_keys = encode_varint(len(body)) + body
    w.raw(p.stored_signature_keys)


def _read_past(r: Reader, suite: CipherSuite) -> PastEpoch:
    context = GroupContext.read(r)
    tree = _read_secret_tree(r, suite)
    sender_data_secret = r.opaque("sender data secret")
    keys = dict(r.vector(lambda r2: (r2.u32("leaf"), r2.opaque("key")), "signature keys"))
    return PastEpoch(context, tree, sender_data_secret, None, keys)


# --- secret tree (§9) -----------------------------------------------------------------------
# Stored as SecretTree.to_state(): n_leaves, max_past, max_forward, the undeleted
# node secrets, then per derived leaf its handshake and application ratchets.


def _write_secret_tree(w: Writer, tree: SecretTree) -> None:
    state = tree.to_state()
    w.u32(state.n_leaves)
    w.u32(state.max_past)
    w.u32(state.max_forward)
    w.vector(state.nodes, lambda w2, kv: (w2.u32(kv[0]), w2.opaque(kv[1])))
    w.vector(state.ratchets, _write_ratchet_pair)


def _write_ratchet_pair(w: Writer, item: tuple[int, HashRatchetState, HashRatchetState]) -> None:
    w.u32(item[0])
    for ratchet in item[1:]:
        w.opaque(ratchet.secret)
        w.u32(ratchet.generation)
        w.vector(ratchet.retained, _write_ratchet_key)


def _write_ratchet_key(w: Writer, key: RatchetKey) -> None:
    w.u32(key.generation)
    w.opaque(key.key)
    w.opaque(key.nonce)


def _read_secret_tree(r: Reader, suite: CipherSuite) -> SecretTree:
    n_leaves = r.u32("n_leaves")
    max_past = r.u32("max_past")
    max_forward = r.u32("max_forward")
    nodes = r.vector(lambda r2: (r2.u32("node"), r2.opaque("secret")), "tree nodes")
    ratchets = r.vector(_read_ratchet_pair, "ratchets")
    return SecretTree.from_state(suite, SecretTreeState(n_leaves, max_past, max_forward, nodes, ratchets))


def _read_ratchet_pair(r: Reader) -> tuple[int, HashRatchetState, HashRatchetState]:
    return r.u32("leaf"), _read_ratchet(r), _read_ratchet(r)


def _read_ratchet(r: Reader) -> HashRatchetState:
    secret = r.opaque("ratchet secret")
    generation = r.u32("generation")
    return HashRatchetState(secret, generation, r.vector(_read_ratchet_key, "skipped keys"))


def _read_ratchet_key(r: Reader) -> RatchetKey:
    return RatchetKey(r.u32("generation"), r.opaque("key"), r.opaque("nonce"))
