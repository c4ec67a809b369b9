"""Sender keys with a forward ratchet (RFC 9605 §5.1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sframe import (
    AuthenticationFailure,
    SFrameCipherSuite,
    InvalidParameter,
    RatchetReceiver,
    RatchetSender,
    ReplayDetected,
    UnknownKID,
    ratchet_base_key,
    sender_key_kid,
)

SUITE = SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_80
KEY = bytes(range(16))


def test_ratchet_step_is_hkdf() -> None:
    expected = HKDF(hashes.SHA256(), 32, b"", b"SFrame 1.0 Ratchet").derive(KEY)
    assert ratchet_base_key(SUITE, KEY) == expected
    assert len(ratchet_base_key(SFrameCipherSuite.AES_256_GCM_SHA512_128, KEY)) == 64


def test_kid_layout() -> None:
    assert sender_key_kid(3, 5, 4) == 0x35
    assert sender_key_kid(3, 21, 4) == 0x35  # only the low R bits are sent
    with pytest.raises(InvalidParameter):
        sender_key_kid(1 << 60, 0, 4)


def test_receiver_follows_ratchet_and_rekey() -> None:
    sender = RatchetSender(SUITE, KEY, ratchet_bits=2)
    receiver = RatchetReceiver(SUITE, ratchet_bits=2)
    receiver.set_sender_key(0, KEY)
    assert receiver.unprotect(sender.protect(b"s0")).plaintext == b"s0"
    late = sender.protect(b"late s0")
    for step in range(1, 7):  # wraps the 2-bit step several times
        sender.ratchet()
        got = receiver.unprotect(sender.protect(b"x"))
        assert got.kid == sender.kid == step % 4 and got.plaintext == b"x"
    with pytest.raises(AuthenticationFailure):
        receiver.unprotect(late)  # step 0 is gone: forward secrecy
    sender.rekey(b"n" * 16)
    assert sender.kid == 1 << 2
    with pytest.raises(UnknownKID):
        receiver.unprotect(sender.protect(b"gen 1"))
    receiver.set_sender_key(1, b"n" * 16)
    assert receiver.unprotect(sender.protect(b"gen 1")).plaintext == b"gen 1"


def test_out_of_order_within_window() -> None:
    sender = RatchetSender(SUITE, KEY, ratchet_bits=3)
    receiver = RatchetReceiver(SUITE, ratchet_bits=3)
    receiver.set_sender_key(0, KEY)
    frames = []
    for _ in range(3):
        frames.append(sender.protect(b"f"))
        sender.ratchet()
    for frame in reversed(frames):  # newest first, then older steps
        assert receiver.unprotect(frame).plaintext == b"f"


def test_forged_kid_does_not_advance() -> None:
    sender = RatchetSender(SUITE, KEY, ratchet_bits=2)
    receiver = RatchetReceiver(SUITE, ratchet_bits=2)
    receiver.set_sender_key(0, KEY)
    frame = sender.protect(b"ok")
    forged = bytes([0x20]) + frame[1:]  # KID 2: would ratchet two steps
    with pytest.raises(AuthenticationFailure):
        receiver.unprotect(forged)
    assert receiver.unprotect(frame).plaintext == b"ok"


def test_replay_window_across_ratchet() -> None:
    sender = RatchetSender(SUITE, KEY)
    receiver = RatchetReceiver(SUITE, replay_window=8)
    receiver.set_sender_key(0, KEY)
    sender.ratchet()
    frame = sender.protect(b"x")
    receiver.unprotect(frame)
    with pytest.raises(ReplayDetected):
        receiver.unprotect(frame)


def test_repr_hides_keys() -> None:
    sender = RatchetSender(SUITE, KEY)
    assert KEY.hex() not in repr(sender) and repr(KEY) not in repr(sender)
    with pytest.raises(InvalidParameter):
        RatchetSender(SUITE, KEY, ratchet_bits=0)
