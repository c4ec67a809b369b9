"""The public API: a synchronous Python mirror of the MLS Web API (``MLS``, ``MLSGroupView``).

Shape and names follow the Firefox prototype's WebIDL
(specs/mls-web-api-explainer-2025-02-webidl.md) in snake_case. Every value
in or out is bytes in the RFC 9420 wire format (``MLSMessage`` for
KeyPackages, Welcomes, GroupInfos, Proposals, Commits and application
messages; ``Credential`` for credentials; ``optional<Node> ratchet_tree<V>``
for trees), so any other MLS stack can consume it. Identities are handles:
a client identifier is ``Hash(signature public key)`` and private keys never
leave the library and its storage.

Every operation loads the member's state, works on it and stores the result
in one atomic write; a failure (typed, from ``mls.errors``) leaves the
stored state as it was. Handshake messages are PublicMessages by default so
that a delivery service can read their epoch and content type (configure
``GroupConfig.handshake_wire_format`` to hide them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mls.crypto import CipherSuite
from mls.crypto import cipher_suite as _cipher_suite
from mls.errors import (
    DecodeError,
    GroupInactiveError,
    InvalidArgumentTypeError,
    MissingPSKError,
    UnknownIdentityError,
    UnknownMemberError,
    ValidationError,
)
from mls.group import engine
from mls.group.commit import create_commit, fresh_nonce
from mls.group.config import GroupConfig
from mls.group.external import join_by_external_commit
from mls.group.group_info import build_group_info
from mls.group.key_package import create_key_package, create_leaf_node, default_capabilities, key_package_ref
from mls.group.psk import PskResolver
from mls.group.serialize import decode_state, encode_state
from mls.group.state import GroupState, client_id_of
from mls.group.welcome import JoinKeys, join_from_welcome
from mls.storage import MemoryStorage, SQLiteStorage, Storage
from mls.wire.codec import Reader, Writer
from mls.wire.credentials import Credential
from mls.wire.enums import LeafNodeSource, ProtocolVersion, PSKType, ResumptionPSKUsage
from mls.wire.extensions import Extension
from mls.wire.framing import PrivateMessage, PublicMessage
from mls.wire.key_package import KeyPackage
from mls.wire.messages import MLSMessage
from mls.wire.proposals import (
    Add,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
)
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode
from mls.wire.welcome import GroupInfo, Welcome

__all__ = ["MLS", "CommitOutput", "GroupDetails", "GroupMember", "GroupView", "Received"]

_IDENTITY = "identity"
_KEY_PACKAGE = "key_package"
_GROUP = "group"
_PSK = "psk"

BytesLike = bytes | bytearray | memoryview


def _as_bytes(value: BytesLike | str, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentTypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _as_wire(value: BytesLike, what: str) -> bytes:
    """Encoded RFC 9420 data: bytes-like only (a str is never a wire encoding)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentTypeError(f"{what} must be bytes (RFC 9420 encoding), not {type(value).__name__}")


def _extensions(extensions: Sequence[Extension], what: str) -> tuple[Extension, ...]:
    if isinstance(extensions, (str, bytes, bytearray, memoryview)) or not isinstance(extensions, Iterable):
        raise InvalidArgumentTypeError(f"{what} must be a sequence of Extension, not {type(extensions).__name__}")
    result = tuple(extensions)
    for extension in result:
        if not isinstance(extension, Extension):
            raise InvalidArgumentTypeError(f"{what} must contain Extension objects, not {type(extension).__name__}")
    return result


def _decode_message(data: BytesLike, what: str) -> MLSMessage:
    data = _as_wire(data, what)
    try:
        return MLSMessage.decode(data)
    except DecodeError:
        raise
    except (ValueError, KeyError, IndexError) as exc:
        raise DecodeError(f"{what}: malformed ({type(exc).__name__})") from None


def _group_key(group_id: bytes, client_id: bytes) -> bytes:
    writer = Writer()
    writer.opaque(group_id)
    writer.opaque(client_id)
    return writer.getvalue()


@dataclass(frozen=True)
class CommitOutput:
    """Web API ``MLSCommitOutput``: the Commit for members, the Welcome for new members,
    the new epoch's GroupInfo (for external joins) and ratchet tree."""

    group_id: bytes
    client_id: bytes
    commit: bytes
    welcome: bytes | None = None
    group_info: bytes | None = None
    ratchet_tree: bytes | None = None
    type: str = "commit-output"


@dataclass(frozen=True)
class GroupMember:
    """Web API ``MLSGroupMember``: client identifier, encoded Credential and leaf index."""

    client_id: bytes
    credential: bytes
    leaf_index: int


@dataclass(frozen=True)
class GroupDetails:
    """Web API ``MLSGroupDetails``: the membership at one epoch."""

    group_id: bytes
    epoch: int
    members: tuple[GroupMember, ...]
    reinit_pending: bool = False
    removed: bool = False
    type: str = "group-info"


@dataclass(frozen=True)
class Received:
    """Web API ``MLSReceived``.

    ``type``: ``"application-message-plaintext"`` (``content`` is the
    plaintext), ``"proposal"`` (``content`` is the encoded Proposal) or
    ``"commit-processed"`` (``content`` is the Commit message). ``epoch`` is
    the epoch the message belongs to (application, proposal) or the epoch
    reached (commit). ``sender`` is the sender's client identifier when known.
    ``own``: our own message echoed back. ``removed``: the Commit removed us.
    """

    type: str
    group_id: bytes
    epoch: int
    content: bytes = field(repr=False)
    sender: bytes | None = None
    authenticated_data: bytes = b""
    own: bool = False
    removed: bool = False
    reinit: ReInit | None = None


class MLS:
    """Entry point of the API (Web API ``MLS``).

    ``MLS()`` keeps state in memory with cipher suite 1. ``MLS("alice.db")``
    (a path) keeps it in that SQLite file, so a restarted process continues
    its groups; ``storage_key`` (32 bytes from the application) seals every
    stored value with AES-256-GCM. Any other ``Storage`` object can be
    passed instead (then with its own key, if any).
    """

    def __init__(
        self,
        storage: Storage | str | os.PathLike[str] | None = None,
        cipher_suite: int = 1,
        config: GroupConfig | None = None,
        *,
        storage_key: bytes | None = None,
    ) -> None:
        self.suite = _cipher_suite(cipher_suite)
        if isinstance(storage, (str, os.PathLike)):
            storage = SQLiteStorage(storage, key=storage_key)
        elif storage is None:
            storage = MemoryStorage(key=storage_key)
        elif storage_key is not None:
            raise InvalidArgumentTypeError("storage_key applies to a storage the MLS object opens (a path, or None)")
        elif not all(callable(getattr(storage, name, None)) for name in ("get", "keys", "write", "clear")):
            raise InvalidArgumentTypeError(f"storage must be a path or a Storage, not {type(storage).__name__}")
        self.storage: Storage = storage
        self.config = config if config is not None else GroupConfig()
        self._cache: dict[bytes, GroupState] = {}

    def __repr__(self) -> str:
        return f"MLS(suite={self.suite.suite_id}, storage={self.storage!r})"

    # --- identities, credentials, key packages -----------------------------------------------

    def generate_identity(self) -> bytes:
        """A new signature key pair kept in storage; returns its client identifier (Hash of the public key)."""
        private_key, public_key = self.suite.generate_signature_key_pair()
        client_id = client_id_of(self.suite, public_key)
        writer = Writer()
        writer.u16(self.suite.suite_id)
        writer.opaque(private_key)
        writer.opaque(public_key)
        self.storage.write([(_IDENTITY, client_id, writer.getvalue())])
        return client_id

    def generate_credential(self, content: BytesLike | str) -> bytes:
        """A basic credential (§5.3) carrying ``content``, encoded."""
        return Credential.basic(_as_bytes(content, "credential content")).encode()

    def _identity(self, client_id: BytesLike) -> tuple[int, bytes, bytes]:
        client_id = _as_bytes(client_id, "client_id")
        record = self.storage.get(_IDENTITY, client_id)
        if record is None:
            raise UnknownIdentityError("no identity with this client identifier")
        reader = Reader(record)
        return reader.u16("suite"), reader.opaque("private"), reader.opaque("public")

    def _credential(self, credential: BytesLike) -> Credential:
        try:
            return Credential.decode(_as_wire(credential, "credential"))
        except DecodeError:
            raise
        except (ValueError, KeyError, IndexError) as exc:
            raise DecodeError(f"credential: malformed ({type(exc).__name__})") from None

    def generate_key_package(
        self, client_id: BytesLike, credential: BytesLike, cipher_suite: int | None = None
    ) -> bytes:
        """A signed KeyPackage (MLSMessage bytes); its private keys stay in storage until used.

        ``cipher_suite`` defaults to the identity's; another suite with the same
        signature scheme (1 and 3, 4 and 6) serves e.g. the successor of a ReInit (§11.2).
        """
        client_id = _as_bytes(client_id, "client_id")
        suite_id, private_key, public_key = self._identity(client_id)
        suite = self._identity_suite(suite_id, cipher_suite)
        bundle = create_key_package(suite, private_key, public_key, self._credential(credential), self.config)
        writer = Writer()
        writer.opaque(client_id)
        writer.opaque(bundle.key_package.encode())
        writer.opaque(bundle.init_private_key)
        writer.opaque(bundle.encryption_private_key)
        self.storage.write([(_KEY_PACKAGE, key_package_ref(suite, bundle.key_package), writer.getvalue())])
        return MLSMessage(bundle.key_package).encode()

    @staticmethod
    def _identity_suite(identity_suite: int, wanted: int | None) -> CipherSuite:
        """The suite to use an identity in: its own, or ``wanted`` if that has the same signature scheme."""
        own = _cipher_suite(identity_suite)
        if wanted is None:
            return own
        if isinstance(wanted, bool) or not isinstance(wanted, int):
            raise InvalidArgumentTypeError(f"cipher_suite must be an int, not {type(wanted).__name__}")
        suite = _cipher_suite(wanted)
        if suite.signature_scheme != own.signature_scheme:
            raise ValidationError(
                f"cipher suite {wanted} signs with {suite.signature_scheme}, this identity's key is {own.signature_scheme}"
            )
        return suite

    # --- PSKs --------------------------------------------------------------------------------

    def store_psk(self, psk_id: BytesLike | str, psk: BytesLike) -> None:
        """Store an external PSK (§8.4) under ``psk_id`` for every client of this object."""
        self.storage.write([(_PSK, _as_bytes(psk_id, "psk_id"), _as_bytes(psk, "psk"))])

    def _resolve_psk(self, psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype == PSKType.EXTERNAL and psk_id.psk_id is not None:
            return self.storage.get(_PSK, psk_id.psk_id)
        if psk_id.psktype == PSKType.RESUMPTION and psk_id.psk_group_id is not None:
            for key in self.storage.keys(_GROUP):
                reader = Reader(key)
                if reader.opaque("group_id") != psk_id.psk_group_id:
                    continue
                state = self._load_key(key)
                secret = state.resumption_psks.get(psk_id.psk_epoch if psk_id.psk_epoch is not None else -1)
                if secret is not None:
                    return secret
        return None

    # --- groups ------------------------------------------------------------------------------

    def group_create(
        self,
        client_id: BytesLike,
        credential: BytesLike,
        group_id: BytesLike | None = None,
        extensions: Sequence[Extension] = (),
    ) -> GroupView:
        """A new one-member group (§11) for ``client_id``; the group id is random unless given."""
        client_id = _as_bytes(client_id, "client_id")
        suite_id, private_key, public_key = self._identity(client_id)
        suite = _cipher_suite(suite_id)
        leaf, encryption_private_key = create_leaf_node(
            suite, private_key, public_key, self._credential(credential), self.config
        )
        gid = _as_bytes(group_id, "group_id") if group_id is not None else None
        if gid is not None and self.storage.get(_GROUP, _group_key(gid, client_id)) is not None:
            raise ValidationError("this client already has a group with this id")
        state = engine.create_group(
            suite, private_key, leaf, encryption_private_key, self.config, group_id=gid, extensions=_extensions(extensions, "extensions")
        )
        self._store(state.group_id, client_id, state)
        return GroupView(self, state.group_id, client_id)

    def group_get(self, group_id: BytesLike, client_id: BytesLike) -> GroupView | None:
        """The view of a stored group for ``client_id``, or None (Web API ``groupGet``)."""
        group_id = _as_bytes(group_id, "group_id")
        client_id = _as_bytes(client_id, "client_id")
        if self.storage.get(_GROUP, _group_key(group_id, client_id)) is None:
            return None
        return GroupView(self, group_id, client_id)

    def _join_keys(self, client_id: bytes) -> Callable[[bytes], JoinKeys | None]:
        suite_id, signature_private_key, _ = self._identity(client_id)

        def find(ref: bytes) -> JoinKeys | None:
            record = self.storage.get(_KEY_PACKAGE, ref)
            if record is None:
                return None
            reader = Reader(record)
            if reader.opaque("client_id") != client_id:
                return None
            key_package = KeyPackage.decode(reader.opaque("key_package"))
            return JoinKeys(key_package, reader.opaque("init"), reader.opaque("encryption"), signature_private_key)

        return find

    def group_join(
        self, client_id: BytesLike, welcome: BytesLike, ratchet_tree: BytesLike | None = None
    ) -> GroupView:
        """Join from a Welcome (§12.4.3.1). ``ratchet_tree`` (``optional<Node> ratchet_tree<V>``)
        is needed when the Welcome lacks the ``ratchet_tree`` extension (ts-mls's default)."""
        client_id = _as_bytes(client_id, "client_id")
        tree = _as_wire(ratchet_tree, "ratchet_tree") if ratchet_tree is not None else None
        message = _decode_message(welcome, "welcome")
        if not isinstance(message.body, Welcome):
            raise ValidationError("not a Welcome message")
        joined = join_from_welcome(
            message.body,
            self._join_keys(client_id),
            self.config,
            ratchet_tree=tree,
            resolver=self._join_psk_resolver(client_id),
        )
        state = joined.state
        self._check_reinit_join(state, joined.psk_ids, client_id)
        key = _group_key(state.group_id, client_id)
        existing = self.storage.get(_GROUP, key)
        if existing is not None:
            old = self._load_key(key)
            if not old.removed and old.reinit is None:
                raise ValidationError("this client is already a member of a group with this id")
        self._store(state.group_id, client_id, state, deletes=[(_KEY_PACKAGE, joined.key_package_ref)])
        return GroupView(self, state.group_id, client_id)

    def _join_psk_resolver(self, client_id: bytes) -> PskResolver:
        """PSKs for a Welcome: a ``reinit`` resumption PSK comes only from this client's state of
        the old group, and only from the epoch that committed the ReInit (§11.2)."""

        def resolve(psk_id: PreSharedKeyID) -> bytes | None:
            if psk_id.psktype != PSKType.RESUMPTION or psk_id.usage != ResumptionPSKUsage.REINIT:
                return self._resolve_psk(psk_id)
            assert psk_id.psk_group_id is not None
            old_key = _group_key(psk_id.psk_group_id, client_id)
            if self.storage.get(_GROUP, old_key) is None:
                raise MissingPSKError("the Welcome's reinit PSK names a group this client is not a member of")
            old = self._load_key(old_key)
            if old.reinit is None:
                raise ValidationError("the Welcome's reinit PSK names a group in which no ReInit was committed (§11.2)")
            if psk_id.psk_epoch != old.epoch:
                raise ValidationError("the Welcome's reinit PSK is not of the epoch that committed the ReInit (§11.2)")
            return old.secrets.resumption_psk

        return resolve

    def _check_reinit_join(self, state: GroupState, psk_ids: Sequence[PreSharedKeyID], client_id: bytes) -> None:
        """§11.2: the group a reinit PSK starts has the version, cipher suite, group id and
        extensions of the ReInit committed in the old group (the PSK resolver found that group)."""
        for psk in psk_ids:
            if psk.psktype != PSKType.RESUMPTION or psk.usage != ResumptionPSKUsage.REINIT:
                continue
            assert psk.psk_group_id is not None
            reinit = self._load_key(_group_key(psk.psk_group_id, client_id)).reinit
            context = state.context
            if reinit is None or (
                reinit.group_id,
                reinit.version,
                reinit.cipher_suite,
                reinit.extensions,
            ) != (context.group_id, context.version, context.cipher_suite, context.extensions):
                raise ValidationError("the Welcome does not match the ReInit of the old group (§11.2)")

    def _create_successor(
        self, group_id: bytes, client_id: bytes, key_packages: Sequence[KeyPackage], credential: BytesLike | None
    ) -> tuple[GroupView, CommitOutput]:
        """See ``GroupView.reinit_successor``."""
        old = self._load_key(_group_key(group_id, client_id))
        if old.removed:
            raise GroupInactiveError("this member was removed from the group")
        reinit = old.reinit
        if reinit is None:
            raise ValidationError("no ReInit was committed in this group (§11.2)")
        if reinit.version != ProtocolVersion.MLS10:
            raise ValidationError(f"the ReInit asks for protocol version {reinit.version}, which is not implemented")
        suite = self._identity_suite(old.suite.suite_id, reinit.cipher_suite)
        others = {leaf.signature_key for index, leaf in old.tree.members() if index != old.leaf_index}
        seen: set[bytes] = set()
        for key_package in key_packages:
            if key_package.cipher_suite != suite.suite_id:
                raise ValidationError("a KeyPackage is not of the ReInit's cipher suite")
            signature_key = key_package.leaf_node.signature_key
            if signature_key not in others:
                raise ValidationError("a KeyPackage is not from another member of the reinitialized group (§11.2)")
            if signature_key in seen:
                raise ValidationError("two KeyPackages of the same member")
            seen.add(signature_key)
        new_key = _group_key(reinit.group_id, client_id)
        if reinit.group_id != group_id and self.storage.get(_GROUP, new_key) is not None:
            raise ValidationError("this client already has a group with the ReInit's group id")
        leaf_credential = self._credential(credential) if credential is not None else old.own_leaf.credential
        leaf, encryption_private_key = create_leaf_node(
            suite, old.signature_private_key, old.signature_key, leaf_credential, self.config
        )
        state = engine.create_group(
            suite,
            old.signature_private_key,
            leaf,
            encryption_private_key,
            self.config,
            group_id=reinit.group_id,
            extensions=reinit.extensions,
        )
        reinit_psk = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, group_id, old.epoch, fresh_nonce(state))
        pending = create_commit(
            state,
            self.config,
            by_value=[Proposal(Add(key_package)) for key_package in key_packages],
            include_cached=False,
            resolver=self._resolve_psk,
            injected_psks=[(reinit_psk, old.secrets.resumption_psk)],
        )
        self._store(reinit.group_id, client_id, engine.apply_pending_commit(state, self.config))
        output = CommitOutput(
            reinit.group_id, client_id, pending.message, pending.welcome, pending.group_info, pending.ratchet_tree
        )
        return GroupView(self, reinit.group_id, client_id), output

    def group_join_external(
        self,
        client_id: BytesLike,
        credential: BytesLike,
        group_info: BytesLike,
        ratchet_tree: BytesLike | None = None,
    ) -> tuple[GroupView, CommitOutput]:
        """Join by external Commit from a GroupInfo with ``external_pub`` (§12.4.3.2).

        Returns the new view (already at the new epoch) and the Commit to send to the group.
        """
        client_id = _as_bytes(client_id, "client_id")
        tree = _as_wire(ratchet_tree, "ratchet_tree") if ratchet_tree is not None else None
        suite_id, private_key, public_key = self._identity(client_id)
        message = _decode_message(group_info, "group_info")
        if not isinstance(message.body, GroupInfo):
            raise ValidationError("not a GroupInfo message")
        if message.body.group_context.cipher_suite != suite_id:
            raise ValidationError("the group uses another cipher suite than this identity")
        template = LeafNode(
            b"",
            public_key,
            self._credential(credential),
            default_capabilities(),
            LeafNodeSource.COMMIT,
            parent_hash=b"",
        )
        joined = join_by_external_commit(
            message.body, template, private_key, self.config, ratchet_tree=tree, resolver=self._resolve_psk
        )
        state = joined.state
        key = _group_key(state.group_id, client_id)
        if self.storage.get(_GROUP, key) is not None and not self._load_key(key).removed:
            raise ValidationError("this client is already a member of a group with this id")
        self._store(state.group_id, client_id, state)
        output = CommitOutput(
            state.group_id, client_id, joined.commit, None, joined.group_info, joined.ratchet_tree
        )
        return GroupView(self, state.group_id, client_id), output

    def group_id_from_message(self, message: BytesLike) -> bytes:
        """The group id of a PublicMessage, PrivateMessage, GroupInfo or Welcome-less message."""
        body = _decode_message(message, "message").body
        if isinstance(body, PublicMessage):
            return body.content.group_id
        if isinstance(body, PrivateMessage):
            return body.group_id
        if isinstance(body, GroupInfo):
            return body.group_context.group_id
        raise ValidationError("this message carries no visible group id (Welcome, KeyPackage)")

    def delete_state(self) -> None:
        """Delete every identity, KeyPackage, PSK and group of this storage (Web API ``deleteState``)."""
        self.storage.clear()
        self._cache.clear()

    def close(self) -> None:
        """Close the storage (the SQLite file); the object is unusable afterwards."""
        close = getattr(self.storage, "close", None)
        if callable(close):
            close()
        self._cache.clear()

    # --- state plumbing ------------------------------------------------------------------------

    def _load_key(self, key: bytes) -> GroupState:
        state = self._cache.get(key)
        if state is None:
            record = self.storage.get(_GROUP, key)
            if record is None:
                raise UnknownMemberError("no stored group for this group id and client id")
            state = decode_state(record)
            self._cache[key] = state
        return state

    def _store(
        self, group_id: bytes, client_id: bytes, state: GroupState, deletes: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        key = _group_key(group_id, client_id)
        try:
            self.storage.write([(_GROUP, key, encode_state(state))], deletes)
        except BaseException:
            self._cache.pop(key, None)
            raise
        self._cache[key] = state

    def _run(self, group_id: bytes, client_id: bytes, operation: Callable[[GroupState], tuple[object, GroupState]]):  # type: ignore[no-untyped-def]
        """Run ``operation`` on the member's state and store the new state atomically.

        On any exception the cached state is dropped, so the next call starts
        again from the stored (unchanged) state.
        """
        key = _group_key(group_id, client_id)
        state = self._load_key(key)
        try:
            result, new_state = operation(state)
        except BaseException:
            self._cache.pop(key, None)
            raise
        self._store(group_id, client_id, new_state)
        return result


class GroupView:
    """One client's view of one group (Web API ``MLSGroupView``)."""

    def __init__(self, mls: MLS, group_id: bytes, client_id: bytes) -> None:
        self._mls = mls
        self.group_id = group_id
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"GroupView(group_id={self.group_id.hex()[:16]}..., epoch={self.epoch})"

    @property
    def _state(self) -> GroupState:
        return self._mls._load_key(_group_key(self.group_id, self.client_id))

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def config(self) -> GroupConfig:
        return self._mls.config

    def _run(self, operation):  # type: ignore[no-untyped-def]
        return self._mls._run(self.group_id, self.client_id, operation)

    # --- commits -------------------------------------------------------------------------

    def _commit(self, by_value: Sequence[Proposal] = (), include_cached: bool = True, force_path: bool | None = None) -> CommitOutput:
        def operation(state: GroupState) -> tuple[CommitOutput, GroupState]:
            pending = create_commit(
                state,
                self.config,
                by_value=by_value,
                include_cached=include_cached,
                force_path=force_path,
                resolver=self._mls._resolve_psk,
            )
            output = CommitOutput(
                self.group_id, self.client_id, pending.message, pending.welcome, pending.group_info, pending.ratchet_tree
            )
            return output, state

        return self._run(operation)

    def _key_package(self, key_package: BytesLike) -> KeyPackage:
        message = _decode_message(key_package, "key_package")
        if not isinstance(message.body, KeyPackage):
            raise ValidationError("not a KeyPackage message")
        if message.body.version != message.version:
            raise ValidationError("KeyPackage version differs from its MLSMessage's (§10)")
        return message.body

    def add(self, key_package: BytesLike) -> CommitOutput:
        """Commit an Add of the KeyPackage's client (plus pending proposals); Welcome included."""
        return self._commit([Proposal(Add(self._key_package(key_package)))])

    def add_many(self, key_packages: Sequence[BytesLike]) -> CommitOutput:
        """Commit Adds for several clients at once (one Welcome for all)."""
        return self._commit([Proposal(Add(self._key_package(kp))) for kp in key_packages])

    def remove(self, client_id: BytesLike) -> CommitOutput:
        """Commit the removal of a member (not self: propose that instead)."""
        leaf = self._state.member_leaf(_as_bytes(client_id, "client_id"))
        if leaf == self._state.leaf_index:
            raise ValidationError("a member cannot commit its own removal: use propose_remove")
        return self._commit([Proposal(Remove(leaf))])

    def update(self) -> CommitOutput:
        """Commit with a fresh UpdatePath: new leaf and path keys (post-compromise security, §12.4)."""
        return self._commit(include_cached=True, force_path=True)

    def commit(self) -> CommitOutput:
        """Commit every valid pending proposal of this epoch (§12.4)."""
        return self._commit()

    def close(self) -> CommitOutput:
        """Commit the removal of every other member."""
        state = self._state
        removes = [Proposal(Remove(i)) for i, _ in state.tree.members() if i != state.leaf_index]
        return self._commit(removes)

    def set_group_context_extensions(self, extensions: Sequence[Extension]) -> CommitOutput:
        """Commit a GroupContextExtensions proposal (§12.1.7): replaces every GroupContext extension."""
        return self._commit([Proposal(GroupContextExtensions(_extensions(extensions, "extensions")))])

    def add_psk(self, psk_id: BytesLike | str) -> CommitOutput:
        """Commit a PreSharedKey proposal for a stored external PSK (§12.1.4)."""
        return self._commit([self._psk_proposal(_as_bytes(psk_id, "psk_id"))])

    def add_resumption_psk(self, epoch: int) -> CommitOutput:
        """Commit a resumption PSK (usage application) of an earlier epoch of this group (§8.6)."""
        return self._commit([self._resumption_proposal(epoch)])

    def apply_pending_commit(self) -> Received:
        """Merge our pending Commit without waiting for the delivery service to echo it."""

        def operation(state: GroupState) -> tuple[Received, GroupState]:
            message = state.pending.message if state.pending is not None else b""
            nxt = engine.apply_pending_commit(state, self.config)
            received = Received(
                "commit-processed", self.group_id, nxt.epoch, message, self.client_id, own=True, reinit=nxt.reinit
            )
            return received, nxt

        return self._run(operation)

    def reinit_successor(
        self, key_packages: Sequence[BytesLike], credential: BytesLike | None = None
    ) -> tuple[GroupView, CommitOutput]:
        """Create the group that this group's committed ReInit asks for (§11.2, step 3).

        The new group has the ReInit's group id, version, cipher suite and
        extensions, and this member's signature key (``credential`` defaults
        to its current one). Its first Commit adds ``key_packages`` (KeyPackages
        in the new cipher suite from other members of this group) and injects
        this group's ``resumption_psk`` of its last epoch as a resumption PSK
        with usage ``reinit``, which the Welcome names; a PreSharedKey proposal
        cannot carry it (§11.2). Returns the new group's view, already at
        epoch 1, and the ``CommitOutput`` whose ``welcome`` the other members
        pass to ``MLS.group_join``. One member does this; the application
        picks which (e.g. the ReInit's committer).
        """
        if isinstance(key_packages, (str, bytes, bytearray, memoryview)) or not isinstance(key_packages, Iterable):
            raise InvalidArgumentTypeError("key_packages must be a sequence of KeyPackage messages")
        packages = [self._key_package(key_package) for key_package in key_packages]
        return self._mls._create_successor(self.group_id, self.client_id, packages, credential)

    def discard_pending_commit(self) -> None:
        """Forget our pending Commit (e.g. the delivery service rejected it)."""

        def operation(state: GroupState) -> tuple[None, GroupState]:
            state.pending = None
            return None, state

        self._run(operation)

    @property
    def has_pending_commit(self) -> bool:
        return self._state.pending is not None

    # --- proposals ------------------------------------------------------------------------

    def _propose(self, proposal: Proposal) -> bytes:
        def operation(state: GroupState) -> tuple[bytes, GroupState]:
            return engine.propose(state, proposal, self.config), state

        return self._run(operation)

    def propose_add(self, key_package: BytesLike) -> bytes:
        """An Add proposal (MLSMessage) for the group to commit."""
        return self._propose(Proposal(Add(self._key_package(key_package))))

    def propose_remove(self, client_id: BytesLike) -> bytes:
        """A Remove proposal; proposing one's own removal is how a member leaves."""
        return self._propose(Proposal(Remove(self._state.member_leaf(_as_bytes(client_id, "client_id")))))

    def propose_update(self) -> bytes:
        """An Update proposal with a fresh leaf key (§12.1.2)."""

        def operation(state: GroupState) -> tuple[bytes, GroupState]:
            proposal = engine.update_proposal(state, self.config)
            return engine.propose(state, proposal, self.config), state

        return self._run(operation)

    def _psk_proposal(self, psk_id: bytes) -> Proposal:
        if self._mls.storage.get(_PSK, psk_id) is None:
            raise MissingPSKError("no external PSK stored under this id")
        return Proposal(PreSharedKey(PreSharedKeyID.external(psk_id, fresh_nonce(self._state))))

    def _resumption_proposal(self, epoch: int) -> Proposal:
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise InvalidArgumentTypeError(f"epoch must be an int, not {type(epoch).__name__}")
        psk = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, self.group_id, epoch, fresh_nonce(self._state))
        return Proposal(PreSharedKey(psk))

    def propose_psk(self, psk_id: BytesLike | str) -> bytes:
        """A PreSharedKey proposal for a stored external PSK (§12.1.4)."""
        return self._propose(self._psk_proposal(_as_bytes(psk_id, "psk_id")))

    def propose_group_context_extensions(self, extensions: Sequence[Extension]) -> bytes:
        """A GroupContextExtensions proposal (§12.1.7)."""
        return self._propose(Proposal(GroupContextExtensions(_extensions(extensions, "extensions"))))

    def propose_reinit(
        self, group_id: BytesLike | None = None, cipher_suite: int | None = None, extensions: Sequence[Extension] = ()
    ) -> bytes:
        """A ReInit proposal (§12.1.5): once committed, the group stops and is recreated (§11.2)."""
        state = self._state
        new_group_id = _as_bytes(group_id, "group_id") if group_id is not None else os.urandom(state.suite.Nh)
        suite_id = cipher_suite if cipher_suite is not None else state.suite.suite_id
        _cipher_suite(suite_id)
        return self._propose(Proposal(ReInit(new_group_id, ProtocolVersion.MLS10, suite_id, _extensions(extensions, "extensions"))))

    # --- messages -------------------------------------------------------------------------

    def send(self, plaintext: BytesLike | str, authenticated_data: BytesLike = b"") -> bytes:
        """Encrypt application data for the group (PrivateMessage of the current epoch)."""
        data = _as_bytes(plaintext, "plaintext")
        aad = _as_bytes(authenticated_data, "authenticated_data")

        def operation(state: GroupState) -> tuple[bytes, GroupState]:
            return engine.send_application(state, data, aad), state

        return self._run(operation)

    def receive(self, message: BytesLike) -> Received:
        """Process an MLSMessage of this group: application data, a proposal, or a Commit
        (another member's, or our own echoed back, which merges our pending Commit)."""
        data = _as_wire(message, "message")

        def operation(state: GroupState) -> tuple[Received, GroupState]:
            result = engine.receive(state, data, self.config, self._mls._resolve_psk)
            suite = state.suite
            sender = client_id_of(suite, result.sender_key) if result.sender_key is not None else None
            if result.own:
                sender = self.client_id
            staged = result.staged
            # our own Commit echoed back is merged without staging: its ReInit is in the new state
            own_reinit = result.state.reinit if result.own and result.kind is engine.ReceiveKind.COMMIT else None
            received = Received(
                result.kind.value,
                self.group_id,
                result.epoch,
                result.content,
                sender,
                result.authenticated_data,
                own=result.own,
                removed=staged is not None and staged.removed_self,
                reinit=staged.reinit if staged is not None else own_reinit,
            )
            return received, result.state

        return self._run(operation)

    # --- secrets and information ---------------------------------------------------------

    def export_secret(self, label: BytesLike | str, context: BytesLike | str, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of the current epoch (§8.5)."""
        if not isinstance(length, int) or not 0 < length <= 0xFFFF:
            raise ValidationError("exporter length must be 1..65535")
        return self._state.secrets.export(_as_bytes(label, "label"), _as_bytes(context, "context"), length)

    def epoch_authenticator(self) -> bytes:
        """The current epoch's ``epoch_authenticator`` (§8.7)."""
        return self._state.secrets.epoch_authenticator

    def details(self) -> GroupDetails:
        """Members (client id, credential, leaf index) at the current epoch."""
        state = self._state
        members = tuple(
            GroupMember(client_id_of(state.suite, leaf.signature_key), leaf.credential.encode(), index)
            for index, leaf in state.tree.members()
        )
        return GroupDetails(self.group_id, state.epoch, members, state.reinit is not None, state.removed)

    def group_info(self, *, ratchet_tree: bool | None = None, external_pub: bool = True) -> bytes:
        """A signed GroupInfo of the current epoch (MLSMessage), for external joins (§12.4.3.2)."""
        state = self._state
        state.check_active()
        include = self.config.ratchet_tree_in_group_info if ratchet_tree is None else ratchet_tree
        return MLSMessage(build_group_info(state, ratchet_tree=include, external_pub=external_pub)).encode()

    def ratchet_tree(self) -> bytes:
        """The current ratchet tree, encoded as ``optional<Node> ratchet_tree<V>`` (§12.4.3.3)."""
        return self._state.tree.encode()

    def delete_state(self) -> None:
        """Delete this client's state of this group."""
        key = _group_key(self.group_id, self.client_id)
        self._mls.storage.write(deletes=[(_GROUP, key)])
        self._mls._cache.pop(key, None)
