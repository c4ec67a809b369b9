"""Stored MLS state: SQLite by path, restarts, and encryption at rest with an application key.

With a key every stored value is sealed with AES-256-GCM bound to its
namespace and record key (``mls.storage_seal``): opening with another key (or
none) is refused before anything changes, a record altered or moved in the
file is refused when read, and no secret appears in the database file. Record
keys (client ids, KeyPackageRefs, group ids, PSK ids) stay in the clear.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from mls import MLS, GroupView, MemoryStorage, SQLiteStorage
from mls.api.records import GROUP as _GROUP, IDENTITY as _IDENTITY, PSK as _PSK, group_key as _group_key
from mls.errors import InvalidArgumentTypeError, MLSError, StorageError, StorageKeyError, TamperedRecordError
from mls.storage_seal import RecordSeal

KEY = bytes(range(32))
MARKER = b"credential-marker-5b1e0c"


def _rows(path: Path) -> list[tuple[str, bytes, bytes]]:
    """Every stored row, read straight from the file."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT namespace, key, value FROM mls_state ORDER BY namespace, key").fetchall()
        meta = db.execute("SELECT name, value FROM mls_meta ORDER BY name").fetchall()
    finally:
        db.close()
    return [(ns, bytes(k), bytes(v)) for ns, k, v in rows] + [("meta:" + n, b"", bytes(v)) for n, v in meta]


def _set_value(path: Path, namespace: str, key: bytes, value: bytes) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("UPDATE mls_state SET value = ? WHERE namespace = ? AND key = ?", (value, namespace, key))
    finally:
        db.close()


def _value(path: Path, namespace: str, key: bytes) -> bytes:
    return next(v for ns, k, v in _rows(path) if (ns, k) == (namespace, key))


def _file_bytes(path: Path) -> bytes:
    """The database file with its WAL and shared-memory files, as an attacker copying the disk sees them."""
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def _pair(mls: MLS) -> tuple[GroupView, GroupView, MLS]:
    """A group of ``mls``'s client (with the credential marker) and an in-memory peer; epoch 1."""
    peer = MLS()
    me = mls.generate_identity()
    group = mls.group_create(me, mls.generate_credential(b"alice " + MARKER))
    bob = peer.generate_identity()
    output = group.add(peer.generate_key_package(bob, peer.generate_credential("bob")))
    group.receive(output.commit)
    assert output.welcome is not None
    return group, peer.group_join(bob, output.welcome), peer


# --- the constructor --------------------------------------------------------------------------


def test_mls_with_a_path_keeps_state_in_that_sqlite_file(tmp_path: Path) -> None:
    assert isinstance(MLS().storage, MemoryStorage) and not MLS().storage.encrypted  # type: ignore[attr-defined]
    path = tmp_path / "alice.db"
    mls = MLS(str(path))
    assert isinstance(mls.storage, SQLiteStorage) and not mls.storage.encrypted
    me = mls.generate_identity()
    group_id = mls.group_create(me, mls.generate_credential("alice")).group_id
    mls.close()
    restarted = MLS(path)  # a PathLike works too
    view = restarted.group_get(group_id, me)
    assert view is not None and view.epoch == 0
    restarted.close()


def test_storage_key_only_for_a_storage_the_mls_object_opens(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "x.db")
    with pytest.raises(InvalidArgumentTypeError):
        MLS(storage, storage_key=KEY)
    storage.close()
    assert MLS(storage_key=KEY).storage.encrypted  # type: ignore[attr-defined]
    for wrong in (b"alice.db", 42, object()):
        with pytest.raises(InvalidArgumentTypeError):
            MLS(wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", b"\x01" * 16, b"\x01" * 31, b"\x01" * 33, b"\x01" * 64])
def test_a_key_of_the_wrong_length_is_refused(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(StorageKeyError):
        SQLiteStorage(tmp_path / "x.db", key=key)
    with pytest.raises(StorageKeyError):
        MemoryStorage(key=key)
    with pytest.raises(StorageKeyError):
        MLS(tmp_path / "y.db", storage_key=key)


@pytest.mark.parametrize("key", ["k" * 32, 12345, [1] * 32])
def test_a_key_that_is_not_bytes_is_refused(key: object) -> None:
    with pytest.raises(InvalidArgumentTypeError):
        MemoryStorage(key=key)  # type: ignore[arg-type]


# --- round trip and restart -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_sealed_round_trip(tmp_path: Path, kind: str) -> None:
    storage = MemoryStorage(key=KEY) if kind == "memory" else SQLiteStorage(tmp_path / "s.db", key=KEY)
    storage.write([("group", b"g1", b"value one"), ("group", b"g2", b"value two"), ("psk", b"g1", b"other")])
    assert storage.get("group", b"g1") == b"value one"
    assert storage.get("psk", b"g1") == b"other"
    assert sorted(storage.keys("group")) == [b"g1", b"g2"]
    assert storage.get("group", b"missing") is None
    storage.write([("group", b"g1", b"value three")], deletes=[("group", b"g2")])
    assert storage.get("group", b"g1") == b"value three" and storage.get("group", b"g2") is None
    # what is stored is not the value, and sealing the same value twice gives two different records
    if isinstance(storage, MemoryStorage):
        raw = storage._data[("group", b"g1")]  # type: ignore[attr-defined]
    else:
        raw = _value(tmp_path / "s.db", "group", b"g1")
    assert b"value three" not in raw and len(raw) == 1 + 12 + len(b"value three") + 16
    storage.write([("group", b"g1", b"value three")])
    again = storage._data[("group", b"g1")] if isinstance(storage, MemoryStorage) else _value(tmp_path / "s.db", "group", b"g1")  # type: ignore[attr-defined]
    assert again != raw and storage.get("group", b"g1") == b"value three"


def test_restart_with_the_same_key_continues_the_group(tmp_path: Path) -> None:
    path = tmp_path / "alice.db"
    mls = MLS(path, storage_key=KEY)
    group, bob, _ = _pair(mls)
    late = bob.send(b"sent in epoch 1")
    commit = bob.update().commit
    bob.receive(commit)
    mls.close()

    restarted = MLS(path, storage_key=KEY)
    group = restarted.group_get(group.group_id, group.client_id)  # type: ignore[assignment]
    assert group is not None and group.epoch == 1
    assert group.receive(late).content == b"sent in epoch 1"
    assert group.receive(commit).epoch == 2
    assert bob.receive(group.send(b"after the restart")).content == b"after the restart"
    assert group.export_secret("SFrame 1.0 Base Key", b"", 16) == bob.export_secret("SFrame 1.0 Base Key", b"", 16)
    restarted.close()


# --- wrong key, no key, plaintext database ------------------------------------------------------


def test_a_wrong_key_or_no_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alice.db"
    mls = MLS(path, storage_key=KEY)
    group, _, _ = _pair(mls)
    mls.close()
    before = _rows(path)
    other = bytes(reversed(KEY))
    for attempt in (lambda: MLS(path, storage_key=other), lambda: MLS(path), lambda: SQLiteStorage(path)):
        with pytest.raises(StorageKeyError) as info:
            attempt()
        assert KEY.hex() not in str(info.value) and other.hex() not in str(info.value)
        assert _rows(path) == before
    good = MLS(path, storage_key=KEY)
    view = good.group_get(group.group_id, group.client_id)
    assert view is not None and view.epoch == 1
    good.close()


def test_a_database_of_unencrypted_state_is_not_opened_with_a_key(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    mls = MLS(path)
    me = mls.generate_identity().content
    mls.close()
    before = _rows(path)
    with pytest.raises(StorageKeyError):
        MLS(path, storage_key=KEY)
    assert _rows(path) == before
    assert MLS(path).identity(me).suite_id == 1  # still readable without a key


def test_an_empty_database_becomes_encrypted_on_first_open_with_a_key(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStorage(path).close()  # created without a key, holds nothing yet
    storage = SQLiteStorage(path, key=KEY)
    storage.write([("psk", b"id", b"secret")])
    storage.clear()  # emptied: stays encrypted
    storage.close()
    with pytest.raises(StorageKeyError):
        SQLiteStorage(path)


# --- tampered and moved records ---------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 1, 12, 13, 100, -17, -1, "truncated"])
def test_a_tampered_record_is_refused(tmp_path: Path, position: int | str) -> None:
    path = tmp_path / "alice.db"
    mls = MLS(path, storage_key=KEY)
    group, _, _ = _pair(mls)
    group_id, me = group.group_id, group.client_id
    mls.close()
    key = _group_key(group_id, me)
    sealed = _value(path, _GROUP, key)
    if position == "truncated":
        tampered = sealed[:20]
    else:
        assert isinstance(position, int)
        flipped = bytearray(sealed)
        flipped[position] ^= 0x01
        tampered = bytes(flipped)
    _set_value(path, _GROUP, key, tampered)
    before = _rows(path)

    restarted = MLS(path, storage_key=KEY)
    with pytest.raises(TamperedRecordError) as info:
        restarted.group_get(group_id, me).epoch  # type: ignore[union-attr]
    assert KEY.hex() not in str(info.value) and isinstance(info.value, StorageError)
    with pytest.raises(TamperedRecordError):
        restarted.group_get(group_id, me).send(b"x")  # type: ignore[union-attr]
    assert _rows(path) == before  # the failed reads changed nothing
    assert restarted.identity(me).suite_id == 1  # other records still open
    restarted.close()


def test_swapped_records_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alice.db"
    mls = MLS(path, storage_key=KEY)
    me = mls.generate_identity().content
    other = mls.generate_identity().content
    first = mls.group_create(me, mls.generate_credential("alice"))
    second = mls.group_create(me, mls.generate_credential("alice"))
    mls.store_psk("one", b"\x01" * 32)
    mls.store_psk("two", b"\x02" * 32)
    mls.close()
    k1, k2 = _group_key(first.group_id, me), _group_key(second.group_id, me)
    v1, v2 = _value(path, _GROUP, k1), _value(path, _GROUP, k2)
    _set_value(path, _GROUP, k1, v2)
    _set_value(path, _GROUP, k2, v1)
    # an identity record moved under another client id, a PSK under another PSK id
    _set_value(path, _IDENTITY, other, _value(path, _IDENTITY, me))
    _set_value(path, _PSK, b"two", _value(path, _PSK, b"one"))

    restarted = MLS(path, storage_key=KEY)
    for read in (
        lambda: restarted.group_get(first.group_id, me).epoch,  # type: ignore[union-attr]
        lambda: restarted.group_get(second.group_id, me).epoch,  # type: ignore[union-attr]
        lambda: restarted.generate_key_package(other, restarted.generate_credential("x")),
        lambda: restarted.storage.get(_PSK, b"two"),
    ):
        with pytest.raises(TamperedRecordError):
            read()
    assert restarted.storage.get(_PSK, b"one") == b"\x01" * 32
    assert restarted.identity(me).suite_id == 1
    restarted.close()


def test_a_swapped_record_in_encrypted_memory_is_refused() -> None:
    storage = MemoryStorage(key=KEY)
    storage.write([("group", b"a", b"state a"), ("group", b"b", b"state b")])
    data = storage._data  # type: ignore[attr-defined]
    data[("group", b"a")], data[("group", b"b")] = data[("group", b"b")], data[("group", b"a")]
    with pytest.raises(TamperedRecordError):
        storage.get("group", b"a")
    data[("psk", b"b")] = data.pop(("group", b"a"))  # same record key, another namespace
    with pytest.raises(TamperedRecordError):
        storage.get("psk", b"b")


def test_a_record_sealed_under_another_key_is_refused() -> None:
    sealed = RecordSeal(KEY).seal("group", b"g", b"state")
    assert RecordSeal(KEY).open("group", b"g", sealed) == b"state"
    with pytest.raises(TamperedRecordError):
        RecordSeal(bytes(32)).open("group", b"g", sealed)


# --- nothing secret in the file ---------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [True, False])
def test_no_secret_in_the_database_file_when_encrypted(tmp_path: Path, encrypted: bool) -> None:
    path = tmp_path / "alice.db"
    mls = MLS(path, storage_key=KEY if encrypted else None)
    group, bob, _ = _pair(mls)
    psk = os.urandom(32)
    mls.store_psk("room-password", psk)
    state = group._state  # type: ignore[attr-defined]
    secrets = {
        "signature private key": state.signature_private_key,
        "credential": MARKER,
        "init_secret": state.secrets.init_secret,
        "exporter_secret": state.secrets.exporter_secret,
        "external PSK": psk,
    }
    exported = group.export_secret("SFrame 1.0 Base Key", b"", 16)
    assert exported == bob.export_secret("SFrame 1.0 Base Key", b"", 16)
    content = _file_bytes(path)
    found = {name for name, secret in secrets.items() if secret in content}
    if encrypted:
        assert found == set()
    else:  # the control: the same secrets are there in a database without a key
        assert found == set(secrets)
    # record keys stay in the clear by design (lookups): the PSK id and the group id are visible
    assert b"room-password" in content and group.group_id in content
    mls.close()


def test_the_key_is_in_no_repr(tmp_path: Path) -> None:
    mls = MLS(tmp_path / "a.db", storage_key=KEY)
    seal = RecordSeal(KEY)
    for text in (repr(mls), repr(mls.storage), repr(MemoryStorage(key=KEY)), repr(seal), str(vars(mls))):
        assert KEY.hex() not in text and repr(KEY) not in text and str(list(KEY)) not in text
    assert "encrypted" in repr(mls.storage)
    assert not hasattr(seal, "__dict__")  # only the cipher object is kept
    mls.close()


def test_storage_errors_are_mls_errors() -> None:
    assert issubclass(StorageKeyError, StorageError) and issubclass(TamperedRecordError, StorageError)
    assert issubclass(StorageError, MLSError)
