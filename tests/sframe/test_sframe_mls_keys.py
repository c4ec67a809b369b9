"""MLS-based SFrame key management (RFC 9605 §5.2) with a stand-in exporter."""

from __future__ import annotations

import hashlib

import pytest

from sframe import (
    AuthenticationFailure,
    SFrameCipherSuite,
    InvalidParameter,
    KeyManagementError,
    MLSKeyManager,
    ReplayDetected,
    SFrameContext,
    UnknownKID,
    decode_header,
    mls_kid,
    suite_params,
)
from sframe.mls_keys import BASE_KEY_LABEL, index_bits_for


class FakeExporter:
    """Stands in for an MLS group: a per-epoch secret and a label-bound export."""

    def __init__(self, group: str, epoch: int) -> None:
        self.secret = hashlib.sha512(f"{group}/{epoch}".encode()).digest()
        self.calls: list[tuple[bytes, bytes, int]] = []

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        self.calls.append((label, context, length))
        return hashlib.shake_256(self.secret + label + b"|" + context).digest(length)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def members(n: int, epoch: int = 1, group: str = "g", **kw: object) -> list[MLSKeyManager]:
    out = []
    for index in range(n):
        mgr = MLSKeyManager(**kw)  # type: ignore[arg-type]
        mgr.install_epoch(FakeExporter(group, epoch), epoch, index, n)
        out.append(mgr)
    return out


def advance(group: list[MLSKeyManager], epoch: int, *, switch_sender: bool = True,
            name: str = "g") -> None:
    for index, mgr in enumerate(group):
        mgr.install_epoch(FakeExporter(name, epoch), epoch, index, len(group),
                          switch_sender=switch_sender)


# -- KID layout --------------------------------------------------------------

@pytest.mark.parametrize(("epoch", "index", "context", "kid"), [
    (14, 3, 0, 0x3E), (14, 7, 0, 0x7E), (14, 20, 0, 0x14E), (15, 3, 0, 0x3F),
    (15, 5, 0, 0x5F), (16, 2, 2, 0x820), (16, 2, 3, 0xC20), (17, 33, 0, 0x211),
    (17, 51, 0, 0x331),
])
def test_rfc_kid_examples(epoch: int, index: int, context: int, kid: int) -> None:
    """RFC 9605 §5.2 figure: E=4, S=6."""
    assert mls_kid(epoch, index, context, 4, 6) == kid
    mgr = MLSKeyManager(epoch_bits=4, index_bits=6)
    mgr.install_epoch(FakeExporter("g", epoch), epoch, 0 if index else 1, 64)
    assert mgr.kid_for(epoch, index, context) == kid


def test_rfc_kid_on_the_wire() -> None:
    """Member 3 in epoch 14 of a 64-member group sends KID 0x3e (E=4, derived S=6)."""
    sender = MLSKeyManager()
    sender.install_epoch(FakeExporter("g", 14), 14, 3, 64)
    receiver = MLSKeyManager()
    receiver.install_epoch(FakeExporter("g", 14), 14, 0, 64)
    frame = sender.protect(b"media")
    assert decode_header(frame)[:2] == (0x3E, 0)
    got = receiver.unprotect(frame)
    assert (got.kid, got.epoch, got.sender_index, got.context, got.plaintext) == (
        0x3E, 14, 3, 0, b"media")
    ctx_frame = sender.protect(b"video", context=2)
    got = receiver.unprotect(ctx_frame)
    assert (got.kid, got.context, got.ctr) == (0x3E | (2 << 10), 2, 0)


@pytest.mark.parametrize(("size", "bits"), [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (64, 6), (65, 7)])
def test_index_bits_rule(size: int, bits: int) -> None:
    assert index_bits_for(size) == bits


def test_kid_field_limits() -> None:
    with pytest.raises(InvalidParameter):
        mls_kid(1, 64, 0, 4, 6)
    with pytest.raises(InvalidParameter):
        mls_kid(1, 0, 1 << 54, 4, 6)
    mgr = MLSKeyManager(index_bits=2)
    with pytest.raises(InvalidParameter):
        mgr.install_epoch(FakeExporter("g", 1), 1, 0, 5)
    with pytest.raises(InvalidParameter):
        mgr.install_epoch(FakeExporter("g", 1), 1, 4, 4)
    for bad in ({"epoch_bits": 0}, {"retain_epochs": 16}, {"retain_seconds": -1.0},
                {"index_bits": 61}, {"cipher_suite": 99}):
        with pytest.raises(InvalidParameter):
            MLSKeyManager(**bad)  # type: ignore[arg-type]


# -- keys from the exporter --------------------------------------------------------

@pytest.mark.parametrize("suite", list(SFrameCipherSuite), ids=lambda s: s.name)
def test_two_members_derive_the_same_keys(suite: SFrameCipherSuite) -> None:
    alice, bob = members(2, cipher_suite=suite)
    for sender, receiver, index in ((alice, bob, 0), (bob, alice, 1)):
        got = receiver.unprotect(sender.protect(b"hello", b"md"), b"md")
        assert (got.plaintext, got.sender_index, got.epoch) == (b"hello", index, 1)
    exporter = FakeExporter("g", 1)
    MLSKeyManager(suite).install_epoch(exporter, 1, 0, 2)
    assert exporter.calls == [(BASE_KEY_LABEL, b"", suite_params(suite).nk)]
    assert BASE_KEY_LABEL == b"SFrame 1.0 Base Key"


def test_base_key_matches_a_plain_context() -> None:
    """The manager is §5.2 on top of §4.4: a context keyed with the exported base key agrees."""
    alice, _ = members(2)
    base_key = FakeExporter("g", 1).export_secret(BASE_KEY_LABEL, b"", 16)
    ctx = SFrameContext()
    ctx.add_recv_key(mls_kid(1, 0, 0, 4, 1), base_key)
    assert ctx.unprotect(alice.protect(b"x")).plaintext == b"x"


def test_other_group_cannot_decrypt() -> None:
    alice, _ = members(2, group="a")
    _, mallory = members(2, group="b")
    with pytest.raises(AuthenticationFailure):
        mallory.unprotect(alice.protect(b"secret"))


def test_unknown_epoch_and_own_and_foreign_index() -> None:
    alice, bob, carol = members(3)
    future = MLSKeyManager()
    future.install_epoch(FakeExporter("g", 2), 2, 0, 3)
    with pytest.raises(UnknownKID) as info:
        alice.unprotect(future.protect(b"x"))
    assert not isinstance(info.value, AuthenticationFailure)
    with pytest.raises(UnknownKID):
        alice.unprotect(alice.protect(b"x"))  # own KIDs are send-only
    outsider = SFrameContext()
    outsider.add_send_key(mls_kid(1, 3, 0, 4, 2), b"k" * 16)  # index 3 in a group of 3
    with pytest.raises(UnknownKID):
        alice.unprotect(outsider.protect(mls_kid(1, 3, 0, 4, 2), b"x"))
    assert bob.unprotect(carol.protect(b"ok")).plaintext == b"ok"


def test_no_sending_epoch_yet() -> None:
    with pytest.raises(KeyManagementError):
        MLSKeyManager().protect(b"x")
    with pytest.raises(KeyManagementError):
        MLSKeyManager().switch_sender()


def test_exporter_output_length_checked() -> None:
    class Short:
        def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
            return b"\x00" * (length - 1)

    with pytest.raises(KeyManagementError):
        MLSKeyManager().install_epoch(Short(), 1, 0, 2)


def test_exporter_output_object_with_secret() -> None:
    class Output:
        def __init__(self, secret: bytes) -> None:
            self.secret = secret

    class WebApiLike(FakeExporter):
        def export_secret(self, label: bytes, context: bytes, length: int) -> Output:  # type: ignore[override]
            return Output(super().export_secret(label, context, length))

    a, b = MLSKeyManager(), MLSKeyManager()
    a.install_epoch(WebApiLike("g", 1), 1, 0, 2)
    b.install_epoch(FakeExporter("g", 1), 1, 1, 2)
    assert b.unprotect(a.protect(b"x")).plaintext == b"x"


# -- epochs: retention, collisions, transitions --------------------------------------

def test_stale_and_duplicate_epochs() -> None:
    (alice,) = members(1, epoch=5)
    alice.install_epoch(FakeExporter("g", 5), 5, 0, 1)  # same secret: no-op
    with pytest.raises(KeyManagementError):
        alice.install_epoch(FakeExporter("other", 5), 5, 0, 1)
    with pytest.raises(KeyManagementError):
        alice.install_epoch(FakeExporter("g", 4), 4, 0, 1)
    assert alice.epochs == (5,)


def test_duplicate_install_keeps_counters() -> None:
    alice, bob = members(2)
    bob.unprotect(alice.protect(b"a"))
    alice.install_epoch(FakeExporter("g", 1), 1, 0, 2)
    assert bob.unprotect(alice.protect(b"b")).ctr == 1


def test_old_epoch_inside_count_window() -> None:
    clock = FakeClock()
    alice, bob = members(2, clock=clock)
    old_frames = [alice.protect(bytes([i])) for i in range(6)]
    for epoch in range(2, 6):  # epochs 2..5: epoch 1 is 4 behind, still retained
        advance([alice, bob], epoch)
        assert bob.unprotect(old_frames[epoch]).epoch == 1
    assert bob.epochs == (1, 2, 3, 4, 5)
    new = alice.protect(b"new")
    assert bob.unprotect(new).epoch == 5
    advance([alice, bob], 6)  # epoch 1 is now 5 behind
    with pytest.raises(UnknownKID):
        bob.unprotect(old_frames[0])
    assert bob.epochs == (2, 3, 4, 5, 6)


def test_time_window_with_injected_clock() -> None:
    clock = FakeClock()
    alice, bob = members(2, clock=clock, retain_seconds=10.0)
    frames = [alice.protect(bytes([i])) for i in range(3)]
    advance([alice, bob], 2)
    clock.now += 9.5
    assert bob.unprotect(frames[0]).epoch == 1
    clock.now += 0.5  # exactly 10 s: still inside
    assert bob.unprotect(frames[1]).epoch == 1
    clock.now += 0.01
    with pytest.raises(UnknownKID):
        bob.unprotect(frames[2])
    assert bob.epochs == (2,)
    assert bob.unprotect(alice.protect(b"now")).epoch == 2


def test_zero_retention() -> None:
    alice, bob = members(2, retain_epochs=0)
    frame = alice.protect(b"x")
    advance([alice, bob], 2)
    with pytest.raises(UnknownKID):
        bob.unprotect(frame)


def test_collision_in_low_epoch_bits_evicts() -> None:
    clock = FakeClock()
    alice, bob = members(2, epoch_bits=2, retain_epochs=3, clock=clock)
    frame_e1 = alice.protect(b"e1")
    advance([alice, bob], 4)  # skips ahead: 4 % 4 == 0, no collision with 1 yet
    assert bob.epochs == (1, 4)
    assert bob.unprotect(frame_e1).epoch == 1
    frame_e1b = alice.protect(b"e4")
    advance([alice, bob], 5)  # 5 % 4 == 1 collides with epoch 1
    assert bob.epochs == (4, 5)
    with pytest.raises(AuthenticationFailure):
        bob.unprotect(frame_e1)  # same KID, now epoch 5's key
    assert bob.unprotect(frame_e1b).epoch == 4


def test_transition_keeps_sending_previous_epoch() -> None:
    alice, bob = members(2)
    assert alice.send_key_changed() is True  # first key: start with a keyframe
    assert alice.send_key_changed() is False
    advance([alice, bob], 2, switch_sender=False)
    assert alice.in_transition and alice.sending_epoch == 1 and alice.newest_epoch == 2
    assert alice.send_key_changed() is False
    in_transition = alice.protect(b"still 1")
    assert bob.unprotect(in_transition).epoch == 1
    # bob already decrypts epoch 2 (receivers get the key at once)
    bob.switch_sender()
    assert alice.unprotect(bob.protect(b"bob on 2")).epoch == 2
    alice.switch_sender()
    assert not alice.in_transition and alice.sending_epoch == 2
    assert alice.send_key_changed() is True
    assert alice.send_key_changed(context=1) is True
    assert alice.send_key_changed() is False
    assert bob.unprotect(alice.protect(b"on 2")).epoch == 2


def test_sender_follows_the_sending_key() -> None:
    alice, bob = members(2)
    first = alice.sender()
    assert (first.epoch, first.generation, first.kid) == (1, alice.send_key_generation, alice.kid_for(1, 0))
    assert alice.sender() == first  # the same KID and seal while the key stands
    frames = [first.seal(b"a", b"md"), alice.protect(b"b", b"md"), first.seal(b"c", b"md")]
    assert [bob.unprotect(f, b"md").ctr for f in frames] == [0, 1, 2]  # one CTR sequence
    video = alice.sender(context=1)
    assert video.kid == alice.kid_for(1, 0, context=1) != first.kid
    advance([alice, bob], 2, switch_sender=False)
    assert alice.sender() == first  # in transition: still epoch 1
    alice.switch_sender()
    second = alice.sender()
    assert second.epoch == 2 and second.generation == alice.send_key_generation != first.generation
    assert bob.unprotect(second.seal(b"d", b"")).epoch == 2
    assert bob.unprotect(first.seal(b"late", b"")).epoch == 1  # a stale seal keeps its key
    with pytest.raises(KeyManagementError):
        MLSKeyManager().sender()


def test_transition_send_key_survives_retention() -> None:
    clock = FakeClock()
    alice, bob = members(2, clock=clock)
    advance([alice, bob], 2, switch_sender=False)
    clock.now += 60
    generation = alice.send_key_generation
    frame = alice.protect(b"late")  # epoch 1 expired for receiving, still sending
    assert alice.sending_epoch == 1 and alice.send_key_generation == generation
    with pytest.raises(UnknownKID):
        bob.unprotect(frame)
    alice.switch_sender()
    assert bob.unprotect(alice.protect(b"x")).epoch == 2


def test_collision_forces_sender_off_evicted_epoch() -> None:
    alice, bob = members(2, epoch_bits=1, retain_epochs=1)
    advance([alice, bob], 3, switch_sender=False)  # 3 % 2 == 1 % 2: epoch 1 evicted
    assert alice.sending_epoch == 3 and bob.epochs == (3,)
    assert bob.unprotect(alice.protect(b"x")).epoch == 3


def test_switch_sender_checks() -> None:
    alice, bob = members(2)
    advance([alice, bob], 2, switch_sender=False)
    advance([alice, bob], 3, switch_sender=False)
    alice.switch_sender(2)
    assert alice.sending_epoch == 2
    with pytest.raises(KeyManagementError):
        alice.switch_sender(1)
    with pytest.raises(KeyManagementError):
        alice.switch_sender(9)
    alice.switch_sender()
    assert bob.unprotect(alice.protect(b"x")).epoch == 3


def test_counters_per_context_and_epoch() -> None:
    alice, bob = members(2)
    got = [bob.unprotect(alice.protect(b"", context=c)) for c in (0, 1, 0, 1, 0)]
    assert [(g.context, g.ctr) for g in got] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    advance([alice, bob], 2)
    assert bob.unprotect(alice.protect(b"")).ctr == 0  # a new key: CTR restarts


def test_group_growth_changes_index_bits() -> None:
    alice, bob = members(2)
    big = [alice, bob] + [MLSKeyManager() for _ in range(3)]
    for index, mgr in enumerate(big):
        mgr.install_epoch(FakeExporter("g", 2), 2, index, 5)
    got = big[1].unprotect(big[4].protect(b"x"))
    assert (got.sender_index, got.kid) == (4, mls_kid(2, 4, 0, 4, 3))


def test_replay_window_optional() -> None:
    alice, bob = members(2, replay_window=32)
    frame = alice.protect(b"x")
    bob.unprotect(frame)
    with pytest.raises(ReplayDetected):
        bob.unprotect(frame)
    _, carol = members(2)
    carol_frame = members(2)[0].protect(b"y")
    assert carol.unprotect(carol_frame) == carol.unprotect(carol_frame)


def test_repr_hides_base_key() -> None:
    exporter = FakeExporter("g", 1)
    mgr = MLSKeyManager()
    mgr.install_epoch(exporter, 1, 0, 2)
    base_key = exporter.export_secret(BASE_KEY_LABEL, b"", 16)
    text = repr(mgr) + repr(mgr._epochs)
    assert base_key.hex() not in text and repr(base_key) not in text


def test_collision_with_expired_sending_epoch() -> None:
    clock = FakeClock()
    alice, bob = members(2, epoch_bits=2, retain_epochs=3, clock=clock)
    advance([alice, bob], 2, switch_sender=False)
    clock.now += 11
    assert alice.sending_epoch == 1 and bob.epochs == (2,)  # 1 kept only for sending
    advance([alice, bob], 5, switch_sender=False)  # 5 % 4 == 1: the sending KIDs would collide
    assert alice.sending_epoch == 2 and bob.epochs == (2, 5)
    assert bob.unprotect(alice.protect(b"x")).epoch == 2
