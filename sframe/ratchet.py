"""Sender keys with a forward ratchet (RFC 9605 §5.1).

Each sender distributes its own ``base_key`` over an existing E2E-secure
channel.  ``KID = (key_generation << R) + (ratchet_step % (1 << R))``; a
ratchet step replaces the key by
``HKDF-Expand(HKDF-Extract("", base_key), "SFrame 1.0 Ratchet", Nh)`` so that
receivers added later cannot read earlier media.  Receivers know which
sender a frame is from by other means (e.g. the SSRC): one
:class:`RatchetReceiver` per sender.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .context import SFrameContext, UnprotectResult, _as_bytes
from .errors import AuthenticationFailure, InvalidArgumentType, InvalidParameter, UnknownKID
from .header import MAX_KID, decode_header
from .suites import suite_params

RATCHET_LABEL = b"SFrame 1.0 Ratchet"


def ratchet_base_key(cipher_suite: int, base_key: bytes) -> bytes:
    """``base_key[i+1]`` from ``base_key[i]`` (§5.1), Nh bytes."""
    params = suite_params(cipher_suite)
    secret = HKDF.extract(params.hash(), b"", _as_bytes(base_key, "base_key"))
    return HKDFExpand(params.hash(), params.nh, RATCHET_LABEL).derive(secret)


def sender_key_kid(key_generation: int, ratchet_step: int, ratchet_bits: int) -> int:
    """``KID = (key_generation << R) + (ratchet_step % (1 << R))`` (§5.1)."""
    if not all(isinstance(v, int) for v in (key_generation, ratchet_step, ratchet_bits)):
        raise InvalidArgumentType("key_generation, ratchet_step and ratchet_bits must be ints")
    if key_generation < 0 or ratchet_step < 0:
        raise InvalidParameter("generation and ratchet step are unsigned")
    kid = (key_generation << ratchet_bits) | (ratchet_step & ((1 << ratchet_bits) - 1))
    if kid > MAX_KID:
        raise InvalidParameter("key generation does not fit in 64 - R bits")
    return kid


def _check_bits(ratchet_bits: int) -> None:
    if not isinstance(ratchet_bits, int) or not 1 <= ratchet_bits <= 16:
        raise InvalidParameter("ratchet_bits (R) must be in 1 .. 16")


class RatchetSender:
    """The sending side of one sender key (§5.1).

    :meth:`ratchet` moves to the next ratchet step and forgets the previous
    key; :meth:`rekey` starts a new key generation with a fresh base key.
    """

    def __init__(self, cipher_suite: int, base_key: bytes, *, key_generation: int = 0,
                 ratchet_bits: int = 4) -> None:
        _check_bits(ratchet_bits)
        self._suite = suite_params(cipher_suite).suite
        self._bits = ratchet_bits
        self._ctx = SFrameContext(self._suite)
        self._install(key_generation, 0, base_key)

    def __repr__(self) -> str:
        return (f"RatchetSender({self._suite.name}, generation={self._generation}, "
                f"step={self._step})")

    def _install(self, generation: int, step: int, base_key: bytes) -> None:
        kid = sender_key_kid(generation, step, self._bits)
        self._ctx = SFrameContext(self._suite)
        self._ctx.add_send_key(kid, base_key)
        self._generation, self._step, self._kid, self._base_key = generation, step, kid, base_key

    @property
    def kid(self) -> int:
        return self._kid

    @property
    def key_generation(self) -> int:
        return self._generation

    @property
    def ratchet_step(self) -> int:
        return self._step

    def ratchet(self) -> int:
        """Advance one ratchet step; returns the new KID."""
        self._install(self._generation, self._step + 1,
                      ratchet_base_key(self._suite, self._base_key))
        return self._kid

    def rekey(self, base_key: bytes) -> int:
        """Start the next key generation with a fresh ``base_key`` (to be sent
        to the receivers); returns the new KID."""
        self._install(self._generation + 1, 0, base_key)
        return self._kid

    def protect(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """Encrypt under the current KID."""
        return self._ctx.protect(self._kid, plaintext, metadata)


class _Generation:
    __slots__ = ("step", "base_key", "kids")

    def __init__(self, step: int, base_key: bytes) -> None:
        self.step = step  # the newest ratchet step reached
        self.base_key = base_key
        self.kids: dict[int, int] = {}  # KID -> ratchet step, at most 2^R of them

    def __repr__(self) -> str:
        return f"_Generation(step={self.step})"


class RatchetReceiver:
    """The receiving side of one sender's keys (§5.1).

    A KID whose low R bits are not a retained step ratchets the key forward
    (at most 2^R steps; a KID naming the oldest retained step is also tried
    as the step 2^R above it); the new step is kept only if the frame
    authenticates, so a forged KID cannot destroy keys.  At most 2^R
    consecutive steps stay active per generation, and ``keep_generations``
    generations are kept.
    """

    def __init__(self, cipher_suite: int, *, ratchet_bits: int = 4, keep_generations: int = 2,
                 replay_window: int | None = None) -> None:
        _check_bits(ratchet_bits)
        if keep_generations < 1:
            raise InvalidParameter("keep_generations must be >= 1")
        self._suite = suite_params(cipher_suite).suite
        self._bits = ratchet_bits
        self._keep = keep_generations
        self._replay_window = replay_window
        self._ctx = SFrameContext(self._suite, replay_window=replay_window)
        self._generations: dict[int, _Generation] = {}

    def __repr__(self) -> str:
        return f"RatchetReceiver({self._suite.name}, generations={sorted(self._generations)})"

    def set_sender_key(self, key_generation: int, base_key: bytes, ratchet_step: int = 0) -> None:
        """Install a sender key received over the E2E-secure channel."""
        kid = sender_key_kid(key_generation, ratchet_step, self._bits)
        base_key = _as_bytes(base_key, "base_key")
        if not base_key:  # checked before the old generation's keys go
            raise InvalidParameter("base_key must be non-empty bytes")
        old = self._generations.pop(key_generation, None)
        if old is not None:
            for stale in old.kids:
                self._ctx.remove_key(stale)
        gen = _Generation(ratchet_step, base_key)
        self._ctx.add_recv_key(kid, gen.base_key)
        gen.kids[kid] = ratchet_step
        self._generations[key_generation] = gen
        for drop in sorted(self._generations)[: -self._keep]:
            for stale in self._generations.pop(drop).kids:
                self._ctx.remove_key(stale)

    def unprotect(self, ciphertext: bytes, metadata: bytes = b"") -> UnprotectResult:
        """Decrypt a frame of this sender, ratcheting forward if needed."""
        if type(ciphertext) is not bytes:
            ciphertext = _as_bytes(ciphertext, "ciphertext")
        kid, _, _ = decode_header(ciphertext)
        gen = self._generations.get(kid >> self._bits)
        if gen is None:
            raise UnknownKID(kid, "unknown key generation")
        mask = (1 << self._bits) - 1
        old_step = gen.kids.get(kid)
        if old_step is not None:
            try:
                return self._ctx.unprotect(ciphertext, metadata)
            except AuthenticationFailure:
                if old_step == gen.step:
                    raise
            target = old_step + (1 << self._bits)  # the low bits wrapped onto an old step
        else:
            target = gen.step + (((kid & mask) - gen.step) & mask)
        chain = [gen.base_key]  # base keys of steps gen.step .. target
        for _ in range(target - gen.step):
            chain.append(ratchet_base_key(self._suite, chain[-1]))
        base_key = chain[-1]
        trial = SFrameContext(self._suite)
        trial.add_recv_key(kid, base_key)
        result = trial.unprotect(ciphertext, metadata)  # raises before any state change
        self._advance(gen, kid >> self._bits, chain)
        if self._replay_window is not None:
            self._ctx.unprotect(ciphertext, metadata)  # records the CTR in the new window
        return result

    def _advance(self, gen: _Generation, generation: int, chain: list[bytes]) -> None:
        """Move ``gen`` to the last step of ``chain``, keeping receive keys for
        the skipped steps (late frames) and at most 2^R steps in all."""
        first = gen.step
        gen.step, gen.base_key = first + len(chain) - 1, chain[-1]
        for step in range(max(first + 1, gen.step - (1 << self._bits) + 1), gen.step + 1):
            kid = sender_key_kid(generation, step, self._bits)
            self._ctx.remove_key(kid)
            self._ctx.add_recv_key(kid, chain[step - first])
            gen.kids[kid] = step
        for stale, stale_step in list(gen.kids.items()):
            if stale_step <= gen.step - (1 << self._bits):
                del gen.kids[stale]
                self._ctx.remove_key(stale)
