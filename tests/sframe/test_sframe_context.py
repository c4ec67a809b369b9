"""SFrameContext, header codec and cipher suites (RFC 9605 §4.3-§4.5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sframe import (
    AuthenticationFailure,
    SFrameCipherSuite,
    CounterExhausted,
    InvalidArgumentType,
    InvalidParameter,
    KeyManagementError,
    MalformedHeader,
    ReplayDetected,
    SFrameContext,
    SFrameError,
    SFrameHeader,
    UnknownKID,
    UnsupportedCipherSuite,
    decode_header,
    encode_header,
    suite_params,
)

SUITES = list(SFrameCipherSuite)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
BASE_KEY = bytes(range(16))


def pair(suite: SFrameCipherSuite, kid: int = 0x123, **kw: int) -> tuple[SFrameContext, SFrameContext]:
    sender, receiver = SFrameContext(suite), SFrameContext(suite, **kw)
    sender.add_send_key(kid, BASE_KEY)
    receiver.add_recv_key(kid, BASE_KEY)
    return sender, receiver


# -- header (§4.3) -------------------------------------------------------------

@given(U64, U64)
def test_header_round_trip(kid: int, ctr: int) -> None:
    encoded = encode_header(kid, ctr)
    assert decode_header(encoded + b"tail") == (kid, ctr, len(encoded))
    assert SFrameHeader.decode(encoded) == (SFrameHeader(kid, ctr), len(encoded))
    assert len(encoded) == 1 + (kid >= 8) * ((kid.bit_length() + 7) // 8) + (
        ctr >= 8) * ((ctr.bit_length() + 7) // 8)


def test_header_examples() -> None:
    assert encode_header(0, 255) == bytes.fromhex("08ff")
    assert encode_header(0x123, 0x4567) == bytes.fromhex("9901234567")
    assert encode_header(2**64 - 1, 2**64 - 1) == b"\xff" + b"\xff" * 16


@pytest.mark.parametrize("data", [
    b"", b"\x80", b"\x08", b"\x99\x01\x23\x45", b"\xf0" + b"\xff" * 7,
    b"\x80\x07",        # KID 7 must sit in the config byte
    b"\x90\x00\x10",    # leading zero byte in the KID
    b"\x08\x05",        # CTR 5 must sit in the config byte
    b"\x09\x00\xff",    # leading zero byte in the CTR
])
def test_malformed_headers(data: bytes) -> None:
    with pytest.raises(MalformedHeader):
        decode_header(data)


@pytest.mark.parametrize(("kid", "ctr"), [(-1, 0), (0, -1), (2**64, 0), (0, 2**64)])
def test_header_range(kid: int, ctr: int) -> None:
    with pytest.raises(InvalidParameter):
        encode_header(kid, ctr)
    with pytest.raises(InvalidParameter):
        SFrameHeader(kid, ctr)


# -- suites (§4.5) -------------------------------------------------------------

def test_suite_constants() -> None:
    table = {s: (p.nh, p.nka, p.nk, p.nn, p.nt, p.in_rfc9605)
             for s, p in ((s, suite_params(s)) for s in SUITES)}
    assert table == {
        SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_80: (32, 16, 48, 12, 10, True),
        SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_64: (32, 16, 48, 12, 8, True),
        SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_32: (32, 16, 48, 12, 4, True),
        SFrameCipherSuite.AES_128_GCM_SHA256_128: (32, 0, 16, 12, 16, True),
        SFrameCipherSuite.AES_256_GCM_SHA512_128: (64, 0, 32, 12, 16, True),
        SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_80: (64, 32, 96, 12, 10, False),
        SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_64: (64, 32, 96, 12, 8, False),
        SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_32: (64, 32, 96, 12, 4, False),
    }


@pytest.mark.parametrize("suite", [0, 9, 0xF000, -1])
def test_unsupported_suite(suite: int) -> None:
    with pytest.raises(UnsupportedCipherSuite):
        SFrameContext(suite)


# -- protect / unprotect (§4.4) ------------------------------------------------

@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(kid=U64, plaintext=st.binary(max_size=300), metadata=st.binary(max_size=40))
def test_round_trip(suite: SFrameCipherSuite, kid: int, plaintext: bytes, metadata: bytes) -> None:
    sender, receiver = pair(suite, kid)
    for ctr in range(3):
        ct = sender.protect(kid, plaintext, metadata)
        assert len(ct) == len(encode_header(kid, ctr)) + len(plaintext) + suite_params(suite).nt
        assert receiver.unprotect(ct, metadata) == (kid, ctr, plaintext)
        assert receiver.unprotect(bytearray(ct), metadata).plaintext == plaintext


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=64), metadata=st.binary(max_size=16), data=st.data())
def test_bit_flip_fails(suite: SFrameCipherSuite, plaintext: bytes, metadata: bytes,
                        data: st.DataObject) -> None:
    sender, receiver = pair(suite)
    ct = bytearray(sender.protect(0x123, plaintext, metadata))
    bit = data.draw(st.integers(0, len(ct) * 8 - 1))
    ct[bit // 8] ^= 1 << (bit % 8)
    # a flipped header bit may yield another KID or a malformed header
    with pytest.raises((AuthenticationFailure, UnknownKID, MalformedHeader)) as info:
        receiver.unprotect(bytes(ct), metadata)
    if bit >= 8 * len(encode_header(0x123, 0)):
        assert info.type is AuthenticationFailure


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=64), data=st.data())
def test_truncation_fails(suite: SFrameCipherSuite, plaintext: bytes, data: st.DataObject) -> None:
    sender, receiver = pair(suite)
    ct = sender.protect(0x123, plaintext)
    cut = data.draw(st.integers(0, len(ct) - 1))
    expected = MalformedHeader if cut < len(encode_header(0x123, 0)) else AuthenticationFailure
    with pytest.raises(expected):
        receiver.unprotect(ct[:cut])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=64), metadata=st.binary(max_size=16),
       other=st.binary(max_size=16))
def test_metadata_change_fails(suite: SFrameCipherSuite, plaintext: bytes, metadata: bytes,
                               other: bytes) -> None:
    if other == metadata:
        other = metadata + b"\x00"
    sender, receiver = pair(suite)
    with pytest.raises(AuthenticationFailure):
        receiver.unprotect(sender.protect(0x123, plaintext, metadata), other)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@settings(max_examples=100, deadline=None)
@given(junk=st.binary(max_size=80), kid_low=st.integers(0, 7))
def test_random_bytes_raise_only_sframe_errors(suite: SFrameCipherSuite, junk: bytes, kid_low: int) -> None:
    receiver = SFrameContext(suite, replay_window=16)
    receiver.add_recv_key(kid_low, BASE_KEY)
    for data in (junk, bytes([kid_low << 4]) + junk):
        with pytest.raises(SFrameError) as info:
            receiver.unprotect(data)
        assert isinstance(info.value, (MalformedHeader, UnknownKID, AuthenticationFailure))


def test_unknown_kid_is_distinct() -> None:
    sender, _ = pair(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    stranger = SFrameContext(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    with pytest.raises(UnknownKID) as info:
        stranger.unprotect(sender.protect(0x123, b"x"))
    assert info.value.kid == 0x123
    assert not isinstance(info.value, AuthenticationFailure)
    with pytest.raises(UnknownKID):
        stranger.protect(0x123, b"x")


def test_counter_is_monotonic_per_kid() -> None:
    ctx = SFrameContext(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    ctx.add_send_key(1, BASE_KEY)
    ctx.add_send_key(2, BASE_KEY)
    ctrs = [decode_header(ctx.protect(kid, b""))[:2] for kid in (1, 1, 2, 1, 2)]
    assert ctrs == [(1, 0), (1, 1), (2, 0), (1, 2), (2, 1)]


def test_sealer_is_protect_bound_to_one_send_key() -> None:
    sender, receiver = pair(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    seal = sender.sealer(0x123)
    frames = [seal(b"a", b"md"), sender.protect(0x123, b"b", b"md"), seal(b"c", b"")]
    assert [decode_header(f)[:2] for f in frames] == [(0x123, 0), (0x123, 1), (0x123, 2)]  # one CTR
    assert receiver.unprotect(frames[0], b"md").plaintext == b"a"
    assert receiver.unprotect(frames[2]).plaintext == b"c"
    with pytest.raises(AuthenticationFailure):
        receiver.unprotect(seal(b"d", b"md"), b"other")
    with pytest.raises(InvalidArgumentType):
        seal("text", b"")  # type: ignore[arg-type]
    assert decode_header(seal(b"e", b""))[1] == 5  # the refused calls used CTRs 3 and 4 (store-before-use)
    sender.remove_key(0x123)
    assert receiver.unprotect(seal(b"f")).plaintext == b"f"  # it keeps its key
    with pytest.raises(UnknownKID):
        sender.sealer(0x123)
    with pytest.raises(UnknownKID):
        receiver.sealer(0x123)  # a receive key never seals
    with pytest.raises(InvalidArgumentType):
        sender.sealer("1")  # type: ignore[arg-type]


def test_counter_exhaustion_never_wraps() -> None:
    sender, receiver = pair(SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_32)
    sender.remove_key(0x123)
    sender.add_send_key(0x123, BASE_KEY, initial_counter=2**64 - 2)
    for ctr in (2**64 - 2, 2**64 - 1):
        assert receiver.unprotect(sender.protect(0x123, b"f")).ctr == ctr
    for _ in range(2):
        with pytest.raises(CounterExhausted):
            sender.protect(0x123, b"f")
    with pytest.raises(InvalidParameter):
        sender.add_send_key(7, BASE_KEY, initial_counter=2**64)


def test_key_usage_is_exclusive() -> None:
    ctx = SFrameContext()
    ctx.add_send_key(5, BASE_KEY)
    with pytest.raises(KeyManagementError):
        ctx.add_recv_key(5, BASE_KEY)
    with pytest.raises(KeyManagementError):
        ctx.add_send_key(5, BASE_KEY)
    ctx.add_recv_key(6, BASE_KEY)
    with pytest.raises(KeyManagementError):
        ctx.add_send_key(6, BASE_KEY)
    assert ctx.send_kids == {5} and ctx.recv_kids == {6}
    ctx.remove_key(6)
    assert ctx.recv_kids == frozenset()


@pytest.mark.parametrize(("kid", "key"), [(-1, BASE_KEY), (2**64, BASE_KEY), (1, b""), (1, "str")])
def test_bad_key_parameters(kid: int, key: bytes) -> None:
    with pytest.raises(InvalidParameter):
        SFrameContext().add_recv_key(kid, key)


def test_replay_window() -> None:
    sender, receiver = pair(SFrameCipherSuite.AES_128_GCM_SHA256_128, replay_window=4)
    frames = [sender.protect(0x123, bytes([i])) for i in range(10)]
    assert receiver.unprotect(frames[5]).ctr == 5
    assert receiver.unprotect(frames[3]).ctr == 3  # late but inside the window
    for replayed in (frames[5], frames[3]):
        with pytest.raises(ReplayDetected):
            receiver.unprotect(replayed)
    with pytest.raises(ReplayDetected):
        receiver.unprotect(frames[1])  # older than the window
    assert receiver.unprotect(frames[9]).ctr == 9
    with pytest.raises(ReplayDetected):
        receiver.unprotect(frames[5])
    assert receiver.unprotect(frames[6]).ctr == 6


def test_replay_window_ignores_forgeries() -> None:
    sender, receiver = pair(SFrameCipherSuite.AES_128_GCM_SHA256_128, replay_window=8)
    frame = sender.protect(0x123, b"x")
    with pytest.raises(AuthenticationFailure):
        receiver.unprotect(frame[:-1] + bytes([frame[-1] ^ 1]))
    assert receiver.unprotect(frame).plaintext == b"x"  # the forgery recorded nothing


def test_replay_off_by_default() -> None:
    sender, receiver = pair(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    frame = sender.protect(0x123, b"x")
    assert receiver.unprotect(frame) == receiver.unprotect(frame)


def test_reprs_hold_no_secrets() -> None:
    key = bytes(range(100, 116))
    ctx = SFrameContext(SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_80)
    ctx.add_send_key(1, key)
    text = repr(ctx) + repr(ctx._send[1]) + repr(ctx._send[1].aead) + repr(ctx.sealer(1))
    assert key.hex() not in text and repr(key) not in text
    assert "AES_128_CTR_HMAC_SHA256_80" in repr(ctx)

