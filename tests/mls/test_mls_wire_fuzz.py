"""Robustness of ``mls.wire`` decoding (hypothesis): any input either decodes (and then
re-encodes to the same bytes) or raises ``DecodeError`` -- never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mls.wire as wire
from mls.errors import DecodeError
from mls.wire import ContentType, ExtensionContent, PrivateMessageContent, WireStruct

from conftest import SHARED

MLS_VECTORS = SHARED / "vectors" / "mls"

#: Every struct of ``mls.wire`` that can be decoded on its own.
STRUCTS: list[type[WireStruct]] = sorted(
    (
        value
        for value in vars(wire).values()
        if isinstance(value, type)
        and issubclass(value, WireStruct)
        and value not in (WireStruct, ExtensionContent)
    ),
    key=lambda cls: cls.__name__,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _samples() -> list[tuple[type[WireStruct], bytes]]:
    path = MLS_VECTORS / "messages.json"
    if not path.is_file():
        return []
    fields = {
        "mls_welcome": wire.MLSMessage,
        "mls_group_info": wire.MLSMessage,
        "mls_key_package": wire.MLSMessage,
        "public_message_application": wire.MLSMessage,
        "public_message_proposal": wire.MLSMessage,
        "public_message_commit": wire.MLSMessage,
        "private_message": wire.MLSMessage,
        "ratchet_tree": wire.RatchetTreeExtension,
        "group_secrets": wire.GroupSecrets,
        "commit": wire.Commit,
        "re_init_proposal": wire.ReInit,
        "pre_shared_key_proposal": wire.PreSharedKey,
    }
    cases = json.loads(path.read_text())[:20]
    return [(struct, bytes.fromhex(case[name])) for case in cases for name, struct in fields.items()]


SAMPLES = _samples()


def _decode_round_trip(struct: type[WireStruct], data: bytes) -> None:
    try:
        value = struct.decode(data)
    except DecodeError:
        return
    assert value.encode() == data


def test_struct_list_is_complete() -> None:
    names = {cls.__name__ for cls in STRUCTS}
    assert {"MLSMessage", "KeyPackage", "Welcome", "GroupInfo", "PublicMessage", "RatchetTreeExtension"} <= names
    assert len(SAMPLES) == 20 * 12


@FUZZ
@given(struct=st.sampled_from(STRUCTS), data=st.binary(max_size=300))
def test_random_bytes_every_struct(struct: type[WireStruct], data: bytes) -> None:
    _decode_round_trip(struct, data)


@FUZZ
@given(wire_format=st.integers(0, 6), data=st.binary(max_size=400))
def test_random_mls_message_bodies(wire_format: int, data: bytes) -> None:
    _decode_round_trip(wire.MLSMessage, b"\x00\x01" + wire_format.to_bytes(2, "big") + data)


@FUZZ
@given(content_type=st.sampled_from(list(ContentType)), data=st.binary(max_size=200))
def test_random_private_message_content(content_type: ContentType, data: bytes) -> None:
    try:
        value = PrivateMessageContent.decode_with(data, content_type)
    except DecodeError:
        return
    assert value.encode() == data


@FUZZ
@given(extension_type=st.sampled_from([1, 2, 3, 4, 5]), data=st.binary(max_size=200))
def test_random_extension_contents(extension_type: int, data: bytes) -> None:
    views = {cls.EXTENSION_TYPE: cls for cls in STRUCTS if issubclass(cls, ExtensionContent)}
    try:
        value = views[extension_type].from_extension(wire.Extension(extension_type, data))
    except DecodeError:
        return
    assert value.encode() == data


_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.just(0)),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        if not buf:
            break
        position = where % len(buf)
        if kind == "flip":
            buf[position] ^= 1 << value
        elif kind == "truncate":
            del buf[position:]
        elif kind == "insert":
            buf.insert(position, value)
        elif kind == "set":
            buf[position] = value
        else:
            del buf[position]
    return bytes(buf)


@FUZZ
@given(sample=st.sampled_from(SAMPLES), mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_vector_messages(sample: tuple[type[WireStruct], bytes], mutations: list[tuple[str, int, int]]) -> None:
    struct, data = sample
    _decode_round_trip(struct, _mutate(data, mutations))
