"""``MLS``: the entry point of the API (MLS Web API ``MLS``): identities, credentials,
KeyPackages (RFC 9420 §10), creating (§11), getting and joining groups (§12.4.3).

A client identifier is ``Hash(signature public key)``; private keys never
leave this object and its storage.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mls.api import records
from mls.api.arguments import as_bytes, as_credential, as_extensions, as_identity_suite, decode_message
from mls.api.group_view import GroupView
from mls.api.records import IdentityRecord, KeyPackageRecord
from mls.api.reinit import check_reinit_join, reinit_join_resolver
from mls.api.results import CommitOutput, MLSBytes
from mls.api.unit_of_work import GroupStates
from mls.crypto import cipher_suite as _cipher_suite
from mls.errors import InvalidArgumentTypeError, InvalidOperationError, UnknownIdentityError, ValidationError
from mls.group import engine
from mls.group.config import GroupConfig
from mls.group.external import join_by_external_commit
from mls.group.key_package import create_key_package, create_leaf_node, default_capabilities, key_package_ref
from mls.group.state import client_id_of
from mls.group.welcome import JoinKeys, join_from_welcome
from mls.storage import MemoryStorage, SQLiteStorage, Storage
from mls.wire.credentials import Credential
from mls.wire.enums import LeafNodeSource, PSKType
from mls.wire.extensions import Extension
from mls.wire.framing import PrivateMessage, PublicMessage
from mls.wire.messages import MLSMessage
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode
from mls.wire.welcome import GroupInfo, Welcome

__all__ = ["MLS"]


class MLS:
    """Entry point of the API (Web API ``MLS``).

    ``MLS()`` keeps state in memory with cipher suite 1. ``MLS("alice.db")``
    (a path) keeps it in that SQLite file, so a restarted process continues
    its groups; ``storage_key`` (32 bytes from the application) seals every
    stored value with AES-256-GCM. Any other ``Storage`` object can be
    passed instead (then with its own key, if any). ``config`` is the group
    policy (``GroupConfig``), e.g. whether ``receive`` answers a proposal with
    a Commit and whether handshakes are PublicMessages.
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
        self.states = GroupStates(storage)

    def __repr__(self) -> str:
        return f"MLS(suite={self.suite.suite_id}, storage={self.storage!r})"

    # --- identities, credentials, key packages -----------------------------------------------

    def generate_identity(self) -> MLSBytes:
        """A new signature key pair kept in storage; returns its client identifier (Hash of the public key)."""
        private_key, public_key = self.suite.generate_signature_key_pair()
        client_id = client_id_of(self.suite, public_key)
        record = IdentityRecord(self.suite.suite_id, private_key, public_key)
        self.storage.write([(records.IDENTITY, client_id, record.encode())])
        return MLSBytes("client-identifier", client_id)

    def generate_credential(self, content: object) -> MLSBytes:
        """A basic credential (§5.3) carrying ``content`` (bytes, or a str as UTF-8), encoded."""
        credential = Credential.basic(as_bytes(content, "credential content", text=True))
        return MLSBytes("credential-basic", credential.encode())

    def identity(self, client_id: bytes) -> IdentityRecord:
        """The stored identity of ``client_id``; ``UnknownIdentityError`` if there is none."""
        record = self.storage.get(records.IDENTITY, client_id)
        if record is None:
            raise UnknownIdentityError("no identity with this client identifier")
        return IdentityRecord.decode(record)

    def generate_key_package(self, client_id: object, credential: object, cipher_suite: int | None = None) -> MLSBytes:
        """A signed KeyPackage (MLSMessage); its private keys stay in storage until used.

        ``cipher_suite`` defaults to the identity's; another suite with the same
        signature scheme (1 and 3, 4 and 6) serves e.g. the successor of a ReInit (§11.2).
        """
        cid = as_bytes(client_id, "client_id", ("client-identifier",))
        identity = self.identity(cid)
        suite = as_identity_suite(identity.suite_id, cipher_suite)
        bundle = create_key_package(
            suite, identity.private_key, identity.public_key, as_credential(credential), self.config
        )
        record = KeyPackageRecord(
            cid, bundle.key_package.encode(), bundle.init_private_key, bundle.encryption_private_key
        )
        self.storage.write([(records.KEY_PACKAGE, key_package_ref(suite, bundle.key_package), record.encode())])
        return MLSBytes("key-package", MLSMessage(bundle.key_package).encode())

    # --- PSKs --------------------------------------------------------------------------------

    def store_psk(self, psk_id: object, psk: object) -> None:
        """Store an external PSK (§8.4) under ``psk_id`` for every client of this object."""
        self.storage.write([(records.PSK, as_bytes(psk_id, "psk_id", text=True), as_bytes(psk, "psk"))])

    def resolve_psk(self, psk_id: PreSharedKeyID) -> bytes | None:
        """The PSK a PreSharedKeyID names (§8.4): a stored external PSK, or a kept resumption PSK (§8.6)."""
        if psk_id.psktype == PSKType.EXTERNAL and psk_id.psk_id is not None:
            return self.storage.get(records.PSK, psk_id.psk_id)
        if psk_id.psktype == PSKType.RESUMPTION and psk_id.psk_group_id is not None:
            epoch = psk_id.psk_epoch if psk_id.psk_epoch is not None else -1
            for state in self.states.with_group_id(psk_id.psk_group_id):
                secret = state.resumption_psks.get(epoch)
                if secret is not None:
                    return secret
        return None

    # --- groups ------------------------------------------------------------------------------

    def group_create(
        self,
        client_id: object,
        credential: object,
        group_id: object = None,
        extensions: tuple[Extension, ...] = (),
    ) -> GroupView:
        """A new one-member group (§11) for ``client_id``; the group id is random unless given."""
        cid = as_bytes(client_id, "client_id", ("client-identifier",))
        identity = self.identity(cid)
        suite = _cipher_suite(identity.suite_id)
        leaf, encryption_private_key = create_leaf_node(
            suite, identity.private_key, identity.public_key, as_credential(credential), self.config
        )
        gid = as_bytes(group_id, "group_id", ("group-identifier",), text=True) if group_id is not None else None
        if gid is not None and self.states.exists(gid, cid):
            raise InvalidOperationError("this client already has a group with this id")
        state = engine.create_group(
            suite,
            identity.private_key,
            leaf,
            encryption_private_key,
            self.config,
            group_id=gid,
            extensions=as_extensions(extensions, "extensions"),
        )
        self.states.store(state.group_id, cid, state)
        return GroupView(self, state.group_id, cid)

    def group_get(self, group_id: object, client_id: object) -> GroupView | None:
        """The view of a stored group for ``client_id``, or None (Web API ``groupGet``)."""
        gid = as_bytes(group_id, "group_id", ("group-identifier",), text=True)
        cid = as_bytes(client_id, "client_id", ("client-identifier",))
        return GroupView(self, gid, cid) if self.states.exists(gid, cid) else None

    def _join_keys(self, client_id: bytes) -> Callable[[bytes], JoinKeys | None]:
        signature_private_key = self.identity(client_id).private_key

        def find(ref: bytes) -> JoinKeys | None:
            stored = self.storage.get(records.KEY_PACKAGE, ref)
            if stored is None:
                return None
            record = KeyPackageRecord.decode(stored)
            if record.client_id != client_id:
                return None
            return JoinKeys(
                record.key_package_struct(), record.init_private_key, record.encryption_private_key, signature_private_key
            )

        return find

    def group_join(self, client_id: object, welcome: object, ratchet_tree: object = None) -> GroupView:
        """Join from a Welcome (§12.4.3.1). ``ratchet_tree`` (``optional<Node> ratchet_tree<V>``)
        is needed when the Welcome lacks the ``ratchet_tree`` extension (ts-mls's default)."""
        cid = as_bytes(client_id, "client_id", ("client-identifier",))
        tree = as_bytes(ratchet_tree, "ratchet_tree") if ratchet_tree is not None else None
        message = decode_message(welcome, "welcome", ("welcome",))
        if not isinstance(message.body, Welcome):
            raise ValidationError("not a Welcome message")
        joined = join_from_welcome(
            message.body,
            self._join_keys(cid),
            self.config,
            ratchet_tree=tree,
            resolver=reinit_join_resolver(self.states, cid, self.resolve_psk),
        )
        state = joined.state
        check_reinit_join(self.states, state, joined.psk_ids, cid)
        if self.states.exists(state.group_id, cid):
            old = self.states.load(state.group_id, cid)
            if not old.removed and old.reinit is None:
                raise InvalidOperationError("this client is already a member of a group with this id")
        self.states.store(state.group_id, cid, state, deletes=[(records.KEY_PACKAGE, joined.key_package_ref)])
        return GroupView(self, state.group_id, cid)

    def group_join_external(
        self, client_id: object, credential: object, group_info: object, ratchet_tree: object = None
    ) -> tuple[GroupView, CommitOutput]:
        """Join by external Commit from a GroupInfo with ``external_pub`` (§12.4.3.2).

        Returns the new view (already at the new epoch) and the Commit to send to the group.
        """
        cid = as_bytes(client_id, "client_id", ("client-identifier",))
        tree = as_bytes(ratchet_tree, "ratchet_tree") if ratchet_tree is not None else None
        identity = self.identity(cid)
        message = decode_message(group_info, "group_info")
        if not isinstance(message.body, GroupInfo):
            raise ValidationError("not a GroupInfo message")
        if message.body.group_context.cipher_suite != identity.suite_id:
            raise ValidationError("the group uses another cipher suite than this identity")
        template = LeafNode(
            b"", identity.public_key, as_credential(credential), default_capabilities(), LeafNodeSource.COMMIT, parent_hash=b""
        )
        joined = join_by_external_commit(
            message.body, template, identity.private_key, self.config, ratchet_tree=tree, resolver=self.resolve_psk
        )
        state = joined.state
        if self.states.exists(state.group_id, cid) and not self.states.load(state.group_id, cid).removed:
            raise InvalidOperationError("this client is already a member of a group with this id")
        self.states.store(state.group_id, cid, state)
        output = CommitOutput(state.group_id, cid, joined.commit, None, joined.group_info, joined.ratchet_tree)
        return GroupView(self, state.group_id, cid), output

    def group_id_from_message(self, message: object) -> bytes:
        """The group id of a PublicMessage, PrivateMessage or GroupInfo."""
        body = decode_message(message, "message").body
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
        self.states.forget()

    def close(self) -> None:
        """Close the storage (the SQLite file); the object is unusable afterwards."""
        close = getattr(self.storage, "close", None)
        if callable(close):
            close()
        self.states.forget()
