"""The unit of work around storage: load a member's group state, change it, store it atomically.

Every API operation on a group runs as one unit: the state is loaded (from a
cache of decoded states, or the ``group`` record), the operation works on it,
and the new state is written in one ``Storage.write``. If the operation or
the write fails, the cached state is dropped, so the next call starts again
from the stored, unchanged state: a failed operation changes nothing
(RFC 9420 §14 relies on members never half-applying an epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from mls.api.records import GROUP, group_id_of_key, group_key
from mls.errors import UnknownGroupError
from mls.group.serialize import decode_state, encode_state
from mls.group.state import GroupState
from mls.storage import Storage

__all__ = ["GroupStates"]

T = TypeVar("T")


class GroupStates:
    """Members' group states in a ``Storage``, with a cache of the decoded ones."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: dict[bytes, GroupState] = {}

    def __repr__(self) -> str:
        return f"GroupStates({len(self._cache)} cached)"

    def exists(self, group_id: bytes, client_id: bytes) -> bool:
        return self.storage.get(GROUP, group_key(group_id, client_id)) is not None

    def load(self, group_id: bytes, client_id: bytes) -> GroupState:
        """The member's current state; ``UnknownGroupError`` if none is stored."""
        key = group_key(group_id, client_id)
        state = self._cache.get(key)
        if state is None:
            record = self.storage.get(GROUP, key)
            if record is None:
                raise UnknownGroupError("no stored group for this group id and client id")
            state = decode_state(record)
            self._cache[key] = state
        return state

    def with_group_id(self, group_id: bytes) -> Iterator[GroupState]:
        """Every stored member state of the group ``group_id`` (e.g. to find a resumption PSK, §8.6)."""
        for key in self.storage.keys(GROUP):
            if group_id_of_key(key) == group_id:
                cached = self._cache.get(key)
                if cached is None:
                    record = self.storage.get(GROUP, key)
                    if record is None:
                        continue
                    cached = decode_state(record)
                    self._cache[key] = cached
                yield cached

    def store(
        self, group_id: bytes, client_id: bytes, state: GroupState, deletes: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Write ``state`` (and ``deletes``, e.g. a used KeyPackage) in one atomic write."""
        key = group_key(group_id, client_id)
        try:
            self.storage.write([(GROUP, key, encode_state(state))], deletes)
        except BaseException:
            self._cache.pop(key, None)
            raise
        self._cache[key] = state

    def run(self, group_id: bytes, client_id: bytes, operation: Callable[[GroupState], tuple[T, GroupState]]) -> T:
        """Run ``operation`` on the member's state and store the state it returns, atomically."""
        key = group_key(group_id, client_id)
        state = self.load(group_id, client_id)
        try:
            result, new_state = operation(state)
        except BaseException:
            self._cache.pop(key, None)
            raise
        self.store(group_id, client_id, new_state)
        return result

    def delete(self, group_id: bytes, client_id: bytes) -> None:
        key = group_key(group_id, client_id)
        self.storage.write(deletes=[(GROUP, key)])
        self._cache.pop(key, None)

    def forget(self) -> None:
        """Drop every cached state (the storage was cleared or closed)."""
        self._cache.clear()
