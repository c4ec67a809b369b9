"""Adversarial review of the ``sframe`` public API (RFC 9605 §4.3, §4.4, §5.2, §9).

Bad input is an ``SFrameError`` (wrong types: ``InvalidArgumentType``, also a
``TypeError``); unauthenticated frames change no state; (key, KID, CTR) is
never used twice; secrets stay out of reprs and messages.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sframe import (
    SFrameCipherSuite,
    CounterExhausted,
    InvalidArgumentType,
    InvalidParameter,
    KeyManagementError,
    MLSKeyManager,
    RatchetReceiver,
    RatchetSender,
    SFrameContext,
    SFrameError,
    SFrameHeader,
    UnknownKID,
    decode_header,
    derive_key_salt,
    encode_header,
    mls_kid,
    ratchet_base_key,
)

SUITE = SFrameCipherSuite.AES_128_GCM_SHA256_128
KEY = bytes(range(16))
NK = 16  # AEAD.Nk of SUITE: the MLS exporter length


class Exporter:
    """A stand-in MLS group: ``export_secret`` returns ``value``."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls: list[tuple[bytes, bytes, int]] = []

    def export_secret(self, label: bytes, context: bytes, length: int) -> object:
        self.calls.append((label, context, length))
        return self.value


def _manager(group_size: int = 4, own_index: int = 0, epoch: int = 1, secret: bytes = b"s" * NK) -> MLSKeyManager:
    manager = MLSKeyManager(SUITE)
    manager.install_epoch(Exporter(secret), epoch, own_index, group_size)
    return manager


# --- MLSKeyManager.install_epoch --------------------------------------------------------------


@pytest.mark.parametrize("value", [NK, [1] * NK, None, "s" * NK, 3.5, object()])
def test_exporter_returning_a_non_bytes_value_is_refused(value: object) -> None:
    """``bytes(16)`` is sixteen zero bytes: an int from the exporter must not become an all-zero key."""
    manager = MLSKeyManager(SUITE)
    with pytest.raises(KeyManagementError):
        manager.install_epoch(Exporter(value), 1, 0, 2)
    assert manager.epochs == () and manager.sending_epoch is None
    with pytest.raises(KeyManagementError):
        manager.protect(b"frame")


@pytest.mark.parametrize("size", [0, 1, NK - 1, NK + 1, 48, 4096])
def test_exporter_of_the_wrong_size_is_refused_and_changes_nothing(size: int) -> None:
    manager = _manager()
    frame = manager.protect(b"before")
    with pytest.raises(KeyManagementError, match="bytes"):
        manager.install_epoch(Exporter(b"x" * size), 2, 0, 4)
    assert manager.epochs == (1,) and manager.sending_epoch == 1
    peer = _manager(own_index=1)
    assert peer.unprotect(frame).plaintext == b"before"


def test_exporter_output_object_with_secret_attribute_is_accepted() -> None:
    class Output:
        secret = bytearray(b"s" * NK)

    manager = MLSKeyManager(SUITE)
    manager.install_epoch(Exporter(Output()), 1, 0, 2)
    peer = _manager(group_size=2, own_index=1)
    assert peer.unprotect(manager.protect(b"x")).plaintext == b"x"


@pytest.mark.parametrize(
    ("epoch", "own_index", "group_size"),
    [
        (-1, 0, 2), (2**64, 0, 2), ("1", 0, 2), (1.0, 0, 2), (None, 0, 2),
        (1, 2, 2), (1, -1, 2), (1, "0", 2), (1, 0, 0), (1, 0, -5), (1, 0, 2.0),
        (1, 0, 2**61), (1, 0, 2**64),
    ],
)
def test_install_epoch_with_weird_values_is_refused(epoch: object, own_index: object, group_size: object) -> None:
    manager = _manager()
    exporter = Exporter(b"t" * NK)
    with pytest.raises(InvalidParameter):
        manager.install_epoch(exporter, epoch, own_index, group_size)  # type: ignore[arg-type]
    assert exporter.calls == [] and manager.epochs == (1,)


def test_install_epoch_edge_values_work() -> None:
    alone = _manager(group_size=1, own_index=0, epoch=2**64 - 1)
    assert alone.sending_epoch == 2**64 - 1 and alone.protect(b"x")
    big = _manager(group_size=2**59, own_index=2**59 - 1, epoch=0)
    peer = _manager(group_size=2**59, own_index=0, epoch=0)
    result = peer.unprotect(big.protect(b"far"))
    assert (result.plaintext, result.sender_index, result.epoch) == (b"far", 2**59 - 1, 0)


def test_reinstalling_an_epoch_never_restarts_its_counter() -> None:
    manager = _manager()
    first = manager.protect(b"a")
    manager.install_epoch(Exporter(b"s" * NK), 1, 0, 4)  # same epoch, same secret: a no-op
    second = manager.protect(b"b")
    assert decode_header(first)[:2] != decode_header(second)[:2]
    with pytest.raises(KeyManagementError):
        manager.install_epoch(Exporter(b"u" * NK), 1, 0, 4)  # same epoch, other secret
    with pytest.raises(KeyManagementError):
        manager.install_epoch(Exporter(b"u" * NK), 0, 0, 4)  # older epoch


def test_no_kid_ctr_pair_repeats_across_contexts_and_epochs() -> None:
    manager = _manager()
    seen: set[tuple[int, int]] = set()
    for epoch in (1, 2, 3):
        if epoch > 1:
            manager.install_epoch(Exporter(bytes([epoch]) * NK), epoch, 0, 4)
        for context in (0, 1, 5):
            for _ in range(10):
                kid, ctr, _ = decode_header(manager.protect(b"f", context=context))
                assert (kid, ctr) not in seen
                seen.add((kid, ctr))
    assert len(seen) == 90


# --- unauthenticated frames change no state --------------------------------------------------


def test_forged_frames_with_many_kids_provision_no_keys() -> None:
    """A KID names (context, sender, epoch); forged ones must not grow the key set (memory DoS)."""
    receiver = _manager(own_index=0)
    sender = _manager(own_index=1)
    for context in range(300):
        kid = mls_kid(1, 1 + context % 3, context, 4, 2)
        with pytest.raises(SFrameError):
            receiver.unprotect(encode_header(kid, context) + bytes(24))
    assert receiver._ctx.recv_kids == frozenset()
    genuine = sender.protect(b"real", context=7)
    assert receiver.unprotect(genuine).plaintext == b"real"
    assert len(receiver._ctx.recv_kids) == 1
    forged = bytearray(sender.protect(b"again", context=7))
    forged[-1] ^= 1
    with pytest.raises(SFrameError):
        receiver.unprotect(bytes(forged))
    assert len(receiver._ctx.recv_kids) == 1  # an established KID stays
    assert receiver.unprotect(sender.protect(b"after", context=7)).plaintext == b"after"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=8))
def test_random_frames_raise_sframe_errors_and_provision_nothing(blob: bytes, metadata: bytes) -> None:
    receiver = _manager(own_index=0)
    with pytest.raises(SFrameError):
        receiver.unprotect(blob, metadata)
    assert receiver._ctx.recv_kids == frozenset()


# --- KID / CTR edge values -----------------------------------------------------------------------

_EDGES = [0, 1, 7, 8, 255, 256, 2**16 - 1, 2**16, 2**32, 2**56 - 1, 2**56, 2**64 - 2, 2**64 - 1]


@pytest.mark.parametrize("kid", _EDGES)
@pytest.mark.parametrize("ctr", [0, 7, 8, 2**63, 2**64 - 2])
def test_edge_kids_and_counters_round_trip(kid: int, ctr: int) -> None:
    sender, receiver = SFrameContext(SUITE), SFrameContext(SUITE)
    sender.add_send_key(kid, KEY, initial_counter=ctr)
    receiver.add_recv_key(kid, KEY)
    frames = [sender.protect(kid, b"p", b"m"), sender.protect(kid, b"q", b"m")]
    results = [receiver.unprotect(frame, b"m") for frame in frames]
    assert [(r.kid, r.ctr, r.plaintext) for r in results] == [(kid, ctr, b"p"), (kid, ctr + 1, b"q")]
    assert SFrameHeader.decode(frames[0])[0] == SFrameHeader(kid, ctr)


def test_counter_never_wraps() -> None:
    sender = SFrameContext(SUITE)
    sender.add_send_key(9, KEY, initial_counter=2**64 - 1)
    last = sender.protect(9, b"last")
    assert decode_header(last)[1] == 2**64 - 1
    for _ in range(3):
        with pytest.raises(CounterExhausted):
            sender.protect(9, b"again")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(2**64 - 40, 2**64 - 1), st.integers(1, 50))
def test_counters_are_unique_until_exhausted(kid: int, start: int, count: int) -> None:
    sender = SFrameContext(SUITE)
    sender.add_send_key(kid, KEY, initial_counter=start)
    counters = []
    for _ in range(count):
        try:
            counters.append(decode_header(sender.protect(kid, b""))[1])
        except CounterExhausted:
            break
    assert counters == list(range(start, min(start + count, 2**64)))


@pytest.mark.parametrize("header", [b"\x80", b"\x88\x00", b"\x08", b"\x8f" + bytes(8), b"\xff" * 3, b"\x80\x07"])
def test_truncated_or_non_minimal_headers(header: bytes) -> None:
    receiver = SFrameContext(SUITE)
    receiver.add_recv_key(0, KEY)
    with pytest.raises(SFrameError):
        receiver.unprotect(header + bytes(20))


# --- wrong argument types -----------------------------------------------------------------------


def test_wrong_types_are_typed_errors() -> None:
    ctx = SFrameContext(SUITE)
    ctx.add_send_key(1, KEY)
    receiver = SFrameContext(SUITE)
    receiver.add_recv_key(1, KEY)
    manager = _manager()
    calls = {
        "protect kid str": lambda: ctx.protect("1", b"x"),  # type: ignore[arg-type]
        "protect kid list": lambda: ctx.protect([1], b"x"),  # type: ignore[arg-type]
        "protect plaintext None": lambda: ctx.protect(1, None),  # type: ignore[arg-type]
        "protect plaintext str": lambda: ctx.protect(1, "x"),  # type: ignore[arg-type]
        "protect metadata str": lambda: ctx.protect(1, b"x", "m"),  # type: ignore[arg-type]
        "unprotect int": lambda: receiver.unprotect(5),  # type: ignore[arg-type]
        "unprotect None": lambda: receiver.unprotect(None),  # type: ignore[arg-type]
        "unprotect str": lambda: receiver.unprotect("abc"),  # type: ignore[arg-type]
        "unprotect list": lambda: receiver.unprotect([16, 0, 0]),  # type: ignore[arg-type]
        "unprotect metadata str": lambda: receiver.unprotect(ctx.protect(1, b"x", b"m"), "m"),  # type: ignore[arg-type]
        "remove_key list": lambda: ctx.remove_key([1]),  # type: ignore[arg-type]
        "decode_header str": lambda: decode_header("abc"),  # type: ignore[arg-type]
        "decode_header None": lambda: decode_header(None),  # type: ignore[arg-type]
        "manager protect None": lambda: manager.protect(None),  # type: ignore[arg-type]
        "manager unprotect None": lambda: manager.unprotect(None),  # type: ignore[arg-type]
        "manager protect context str": lambda: manager.protect(b"x", context="1"),  # type: ignore[arg-type]
        "mls_kid str": lambda: mls_kid("1", 0, 0, 4, 4),  # type: ignore[arg-type]
        "ratchet base key int": lambda: ratchet_base_key(SUITE, 32),  # type: ignore[arg-type]
        "ratchet receiver key int": lambda: RatchetReceiver(SUITE).set_sender_key(0, 32),  # type: ignore[arg-type]
        "ratchet receiver frame int": lambda: RatchetReceiver(SUITE).unprotect(3),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        with pytest.raises(InvalidArgumentType) as info:
            call()
        assert isinstance(info.value, TypeError) and isinstance(info.value, SFrameError), name
    assert receiver.unprotect(ctx.protect(1, b"ok")).plaintext == b"ok"


def test_out_of_range_or_non_integer_values_are_invalid_parameters() -> None:
    calls = {
        "encode_header str": lambda: encode_header("a", 0),  # type: ignore[arg-type]
        "encode_header float": lambda: encode_header(1.5, 0),  # type: ignore[arg-type]
        "encode_header big ctr": lambda: encode_header(0, 2**64),
        "SFrameHeader None": lambda: SFrameHeader(None, 0),  # type: ignore[arg-type]
        "derive kid str": lambda: derive_key_salt(SUITE, "1", KEY),  # type: ignore[arg-type]
        "derive key empty": lambda: derive_key_salt(SUITE, 1, b""),
        "derive key str": lambda: derive_key_salt(SUITE, 1, "key"),  # type: ignore[arg-type]
        "add_send kid -1": lambda: SFrameContext(SUITE).add_send_key(-1, KEY),
        "add_send kid 2^64": lambda: SFrameContext(SUITE).add_send_key(2**64, KEY),
        "add_send kid list": lambda: SFrameContext(SUITE).add_send_key([1], KEY),  # type: ignore[arg-type]
        "add_recv kid list": lambda: SFrameContext(SUITE).add_recv_key([1], KEY),  # type: ignore[arg-type]
        "add_send key int": lambda: SFrameContext(SUITE).add_send_key(1, 16),  # type: ignore[arg-type]
        "initial ctr 2^64": lambda: SFrameContext(SUITE).add_send_key(1, KEY, initial_counter=2**64),
        "suite 99": lambda: SFrameContext(99),
        "manager epoch_bits str": lambda: MLSKeyManager(SUITE, epoch_bits="4"),  # type: ignore[arg-type]
        "manager retain_seconds None": lambda: MLSKeyManager(SUITE, retain_seconds=None),  # type: ignore[arg-type]
        "kid_for str": lambda: _manager().kid_for("1", 0),  # type: ignore[arg-type]
        "switch_sender str": lambda: _manager().switch_sender("1"),  # type: ignore[arg-type]
        "RatchetSender key int": lambda: RatchetSender(SUITE, 32),  # type: ignore[arg-type]
        "RatchetSender generation str": lambda: RatchetSender(SUITE, KEY, key_generation="0"),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        with pytest.raises(InvalidParameter):
            call()


def test_memoryview_and_bytearray_keys_are_accepted_alike() -> None:
    sender, receiver = SFrameContext(SUITE), SFrameContext(SUITE)
    sender.add_send_key(3, memoryview(KEY))
    receiver.add_recv_key(3, bytearray(KEY))
    assert receiver.unprotect(memoryview(sender.protect(3, b"v"))).plaintext == b"v"


def test_unknown_kid_is_told_apart_from_a_forgery() -> None:
    receiver = _manager(own_index=0)
    with pytest.raises(UnknownKID):
        receiver.unprotect(encode_header(mls_kid(9, 1, 0, 4, 2), 0) + bytes(20))  # epoch 9 not installed
    with pytest.raises(UnknownKID):
        receiver.unprotect(_manager(own_index=0).protect(b"own"))  # our own KID


# --- secrets never in reprs or messages ---------------------------------------------------------


def test_secrets_never_reach_reprs_or_error_messages() -> None:
    secret = bytes(range(100, 100 + NK))
    manager = _manager(secret=secret)
    ctx = SFrameContext(SUITE)
    ctx.add_send_key(5, KEY)
    ctx.add_recv_key(6, KEY)
    sframe_key, sframe_salt = derive_key_salt(SUITE, 5, KEY)
    secrets = [secret, KEY, sframe_key, sframe_salt]
    texts = [repr(manager), repr(ctx), repr(manager._ctx), repr(ctx._send[5]), repr(ctx._recv[6])]
    texts += [repr(state) for state in manager._epochs.values()]
    texts += [repr(RatchetSender(SUITE, KEY)), repr(RatchetReceiver(SUITE))]
    for call in (
        lambda: ctx.unprotect(ctx.protect(5, b"x")),
        lambda: manager.install_epoch(Exporter(b"\x01" * NK), 1, 0, 4),
        lambda: manager.unprotect(encode_header(mls_kid(1, 1, 0, 4, 2), 0) + bytes(20)),
    ):
        with pytest.raises(SFrameError) as info:
            call()
        texts += [str(info.value), repr(info.value)]
    for text in texts:
        for value in secrets:
            assert value.hex() not in text and repr(value)[2:-1] not in text and str(list(value))[1:-1] not in text


@pytest.mark.parametrize("bad", [b"", 32, None])
def test_bad_sender_key_keeps_the_current_generation(bad: object) -> None:
    sender = RatchetSender(SUITE, KEY, key_generation=1)
    receiver = RatchetReceiver(SUITE)
    receiver.set_sender_key(1, KEY)
    with pytest.raises(InvalidParameter):
        receiver.set_sender_key(1, bad)  # type: ignore[arg-type]
    assert receiver.unprotect(sender.protect(b"kept")).plaintext == b"kept"
