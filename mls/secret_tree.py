"""The secret tree and its per-sender hash ratchets (RFC 9420 §9).

Node secrets are derived lazily from ``encryption_secret`` down the path to
a leaf, and each parent secret is deleted as soon as both its children exist
(§9.2 deletion schedule). A leaf secret seeds two hash ratchets, one for
handshake and one for application messages (§9.1).

Receiving uses two phases so that a failed decryption changes nothing:
:meth:`SecretTree.prepare_key` derives the key of a generation without
touching the ratchet, and :meth:`SecretTree.consume` commits that step (and
deletes the key) only once the AEAD has opened the message.

Out-of-order policy (§15.3, "Delayed and Reordered Application Messages"):
a ratchet keeps the keys of at most ``max_past`` skipped generations below
the newest one it derived, and refuses to move more than ``max_forward``
generations ahead of its next unused one.

``to_state()`` / ``from_state()`` turn a tree and its ratchets into plain
data (:class:`SecretTreeState`, :class:`HashRatchetState`) and back, so that
storage can keep exactly the secrets not yet deleted and a restored member
never reuses a key or nonce (§9.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mls import tree_math
from mls.crypto import CipherSuite
from mls.errors import SecretTreeError

DEFAULT_MAX_PAST = 10
DEFAULT_MAX_FORWARD = 1000


class RatchetType(enum.Enum):
    """Which of a leaf's two hash ratchets a key comes from (§9)."""

    HANDSHAKE = "handshake"
    APPLICATION = "application"


@dataclass(frozen=True, slots=True)
class RatchetKey:
    """``ratchet_key_[N]_[j]`` and ``ratchet_nonce_[N]_[j]`` for generation ``j`` (§9.1)."""

    generation: int
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class HashRatchetState:
    """What a :class:`HashRatchet` keeps: the current ``ratchet_secret``, its generation and the retained keys."""

    secret: bytes = field(repr=False)
    generation: int
    #: keys of skipped generations still in the window, by ascending generation
    retained: tuple[RatchetKey, ...] = ()


@dataclass(frozen=True, slots=True)
class SecretTreeState:
    """What a :class:`SecretTree` keeps: its shape, limits, undeleted node secrets and derived ratchets.

    ``nodes`` are ``(node index, secret)`` and ``ratchets`` are
    ``(leaf index, handshake, application)``, both by ascending index.
    """

    n_leaves: int
    max_past: int
    max_forward: int
    nodes: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)
    ratchets: tuple[tuple[int, HashRatchetState, HashRatchetState], ...] = field(default=(), repr=False)


class HashRatchet:
    """One sender ratchet: ``ratchet_secret_[N]_[j]`` and the keys it yields (§9.1)."""

    __slots__ = ("_suite", "_secret", "_generation", "_skipped", "_version", "max_past", "max_forward")

    def __init__(self, suite: CipherSuite, secret: bytes, max_past: int, max_forward: int) -> None:
        self._suite = suite
        self._secret = secret  # ratchet_secret for generation self._generation
        self._generation = 0  # next generation never derived
        self._skipped: dict[int, RatchetKey] = {}  # derived, unconsumed, still in the window
        self._version = 0  # bumped on every state change, guards stale PendingKeys
        self.max_past = max_past
        self.max_forward = max_forward

    def __repr__(self) -> str:
        return f"HashRatchet(generation={self._generation}, retained={sorted(self._skipped)})"

    @property
    def generation(self) -> int:
        """The next generation this ratchet has not derived yet."""
        return self._generation

    def to_state(self) -> HashRatchetState:
        """This ratchet's secrets as plain data, for storage."""
        retained = tuple(self._skipped[generation] for generation in sorted(self._skipped))
        return HashRatchetState(self._secret, self._generation, retained)

    @classmethod
    def from_state(cls, suite: CipherSuite, state: HashRatchetState, max_past: int, max_forward: int) -> HashRatchet:
        """The ratchet that :meth:`to_state` described (``SecretTreeError`` if inconsistent)."""
        if not 0 <= state.generation <= 0x100000000:
            raise SecretTreeError("ratchet generation out of range")
        if any(not 0 <= key.generation < state.generation for key in state.retained):
            raise SecretTreeError("a retained key is not below the ratchet's generation")
        ratchet = cls(suite, state.secret, max_past, max_forward)
        ratchet._generation = state.generation
        ratchet._skipped = {key.generation: key for key in state.retained}
        return ratchet

    def _key_at(self, secret: bytes, generation: int) -> RatchetKey:
        suite = self._suite
        return RatchetKey(
            generation,
            suite.derive_tree_secret(secret, b"key", generation, suite.Nk),
            suite.derive_tree_secret(secret, b"nonce", generation, suite.Nn),
        )

    def _next_secret(self, secret: bytes, generation: int) -> bytes:
        return self._suite.derive_tree_secret(secret, b"secret", generation, self._suite.Nh)

    def next_key(self) -> RatchetKey:
        """Derive and consume the next unused generation, for sending (§6.3.1)."""
        generation = self._generation
        if generation > 0xFFFFFFFF:
            raise SecretTreeError("hash ratchet exhausted (generation is a uint32)")
        key = self._key_at(self._secret, generation)
        self._secret = self._next_secret(self._secret, generation)
        self._generation = generation + 1
        self._prune()
        self._version += 1
        return key

    def prepare(self, generation: int) -> PendingKey:
        """The key of ``generation`` for receiving, without changing any state."""
        if generation < 0 or generation > 0xFFFFFFFF:
            raise SecretTreeError("generation out of range")
        if generation < self._generation:
            key = self._skipped.get(generation)
            if key is None:
                raise SecretTreeError(f"generation {generation} was already used or is too old")
            return PendingKey(self, self._version, key, None, generation, {})
        ahead = generation - self._generation
        if ahead > self.max_forward:
            raise SecretTreeError(
                f"generation {generation} is {ahead} ahead of the ratchet (limit {self.max_forward})"
            )
        # Walk the ratchet forward on a copy; keep keys only inside the window.
        keep_from = generation - self.max_past
        secret = self._secret
        kept: dict[int, RatchetKey] = {}
        for skipped in range(self._generation, generation):
            if skipped >= keep_from:
                kept[skipped] = self._key_at(secret, skipped)
            secret = self._next_secret(secret, skipped)
        key = self._key_at(secret, generation)
        return PendingKey(self, self._version, key, self._next_secret(secret, generation), generation + 1, kept)

    def commit(self, pending: PendingKey) -> None:
        """Apply a step from :meth:`prepare`: advance and delete the key used (§9.2)."""
        if pending.version != self._version:
            raise SecretTreeError("stale key: the ratchet changed since it was prepared")
        if pending.next_secret is None:
            del self._skipped[pending.key.generation]
        else:
            self._skipped.update(pending.skipped)
            self._secret = pending.next_secret
            self._generation = pending.next_generation
        self._prune()
        self._version += 1

    def _prune(self) -> None:
        """Drop retained keys that fell out of the ``max_past`` window."""
        if self._skipped:
            oldest = self._generation - 1 - self.max_past
            for generation in [g for g in self._skipped if g < oldest]:
                del self._skipped[generation]


@dataclass(frozen=True, slots=True)
class PendingKey:
    """A receive key derived but not yet consumed (see :meth:`SecretTree.consume`)."""

    ratchet: HashRatchet = field(repr=False)
    version: int = field(repr=False)
    key: RatchetKey
    next_secret: bytes | None = field(repr=False)
    next_generation: int = field(repr=False)
    skipped: dict[int, RatchetKey] = field(repr=False)


class SecretTree:
    """The secret tree of one epoch, rooted at ``encryption_secret`` (§9)."""

    def __init__(
        self,
        suite: CipherSuite,
        encryption_secret: bytes,
        n_leaves: int,
        *,
        max_past: int = DEFAULT_MAX_PAST,
        max_forward: int = DEFAULT_MAX_FORWARD,
    ) -> None:
        if n_leaves < 1:
            raise SecretTreeError("a secret tree needs at least one leaf")
        if max_past < 0 or max_forward < 0:
            raise SecretTreeError("ratchet limits must not be negative")
        self._suite = suite
        self.n_leaves = n_leaves
        self.max_past = max_past
        self.max_forward = max_forward
        self._root = tree_math.root(n_leaves)
        self._nodes: dict[int, bytes] = {self._root: encryption_secret}
        self._ratchets: dict[int, tuple[HashRatchet, HashRatchet]] = {}

    def __repr__(self) -> str:
        return f"SecretTree(n_leaves={self.n_leaves}, ratchets={sorted(self._ratchets)})"

    def to_state(self) -> SecretTreeState:
        """The undeleted node secrets and derived ratchets as plain data, for storage."""
        return SecretTreeState(
            self.n_leaves,
            self.max_past,
            self.max_forward,
            tuple(sorted(self._nodes.items())),
            tuple(
                (leaf_index, handshake.to_state(), application.to_state())
                for leaf_index, (handshake, application) in sorted(self._ratchets.items())
            ),
        )

    @classmethod
    def from_state(cls, suite: CipherSuite, state: SecretTreeState) -> SecretTree:
        """The tree that :meth:`to_state` described (``SecretTreeError`` if inconsistent)."""
        tree = cls(suite, bytes(suite.Nh), state.n_leaves, max_past=state.max_past, max_forward=state.max_forward)
        width = tree_math.node_width(state.n_leaves)
        if any(not 0 <= node < width for node, _ in state.nodes):
            raise SecretTreeError("secret tree node outside the tree")
        if any(not 0 <= leaf_index < state.n_leaves for leaf_index, _, _ in state.ratchets):
            raise SecretTreeError("ratchet of a leaf outside the tree")
        tree._nodes = dict(state.nodes)
        tree._ratchets = {
            leaf_index: (
                HashRatchet.from_state(suite, handshake, state.max_past, state.max_forward),
                HashRatchet.from_state(suite, application, state.max_past, state.max_forward),
            )
            for leaf_index, handshake, application in state.ratchets
        }
        return tree

    def ratchet(self, leaf_index: int, ratchet_type: RatchetType) -> HashRatchet:
        """The handshake or application ratchet of ``leaf_index``, derived on first use."""
        pair = self._ratchets.get(leaf_index)
        if pair is None:
            pair = self._derive_leaf(leaf_index)
        return pair[0] if ratchet_type is RatchetType.HANDSHAKE else pair[1]

    def _derive_leaf(self, leaf_index: int) -> tuple[HashRatchet, HashRatchet]:
        if not 0 <= leaf_index < self.n_leaves:
            raise SecretTreeError(f"leaf {leaf_index} is outside the tree")
        suite, nodes, target = self._suite, self._nodes, 2 * leaf_index
        node = self._root
        while node != target:
            left, right = tree_math.left(node), tree_math.right(node)
            secret = nodes.pop(node, None)
            if secret is not None:  # expand, then delete the parent (§9.2)
                nodes[left] = suite.expand_with_label(secret, b"tree", b"left", suite.Nh)
                nodes[right] = suite.expand_with_label(secret, b"tree", b"right", suite.Nh)
            node = left if target < node else right
        leaf_secret = nodes.pop(target)
        pair = (
            HashRatchet(
                suite,
                suite.expand_with_label(leaf_secret, b"handshake", b"", suite.Nh),
                self.max_past,
                self.max_forward,
            ),
            HashRatchet(
                suite,
                suite.expand_with_label(leaf_secret, b"application", b"", suite.Nh),
                self.max_past,
                self.max_forward,
            ),
        )
        self._ratchets[leaf_index] = pair
        return pair

    def next_key(self, leaf_index: int, ratchet_type: RatchetType) -> RatchetKey:
        """Consume the next generation of our own ratchet, for sending."""
        return self.ratchet(leaf_index, ratchet_type).next_key()

    def prepare_key(self, leaf_index: int, ratchet_type: RatchetType, generation: int) -> PendingKey:
        """Derive the key of ``generation`` for receiving; nothing is consumed yet."""
        return self.ratchet(leaf_index, ratchet_type).prepare(generation)

    @staticmethod
    def consume(pending: PendingKey) -> None:
        """Commit a prepared key: advance the ratchet and delete that key (§9.2)."""
        pending.ratchet.commit(pending)

    def get_key(self, leaf_index: int, ratchet_type: RatchetType, generation: int) -> RatchetKey:
        """Obtain and consume the key of ``generation`` in one step (each key once)."""
        pending = self.prepare_key(leaf_index, ratchet_type, generation)
        self.consume(pending)
        return pending.key
