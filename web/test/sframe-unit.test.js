/**
 * Unit tests: header edge cases (RFC 9605 §4.3), unknown KID vs
 * authentication errors (§4.4.4), counters (§4.3, §9.1), replay window
 * (§9.3), key roles (§4.4.1), MLS key management (§5.2) and the H.264
 * emulation prevention of the codec-aware framing.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { fromHex, toHex } from '../sframe/bytes.js';
import { ERROR_KINDS, PYTHON_ERROR_CLASS } from '../sframe/errors.js';
import { decodeHeader, encodeHeader } from '../sframe/header.js';
import { SFrameContext } from '../sframe/context.js';
import { MLSKeyManager, indexBitsFor, mlsKid } from '../sframe/mlskeys.js';
import { escapeEmulation, frameCodec, isKeyframe, openFrame, sealFrame, splitAnnexB, unescapeEmulation } from '../sframe/framing.js';
import { getCipherSuite } from '../sframe/suites.js';
import { testBytes } from './python.js';

const rand = testBytes(5);
const U64_MAX = (1n << 64n) - 1n;

describe('SFrame header (RFC 9605 §4.3)', () => {
  const malformed = {
    'empty': '',
    'KID length 2, 1 byte present': '9001',
    'CTR length 8, 7 bytes present': '0f01020304050607',
    'extended KID below 8': '8007',
    'extended CTR below 8': '0807',
    'KID with a leading zero byte': '900012',
    'CTR with a leading zero byte': '09000f',
  };
  for (const [name, hex] of Object.entries(malformed)) {
    test(`rejects ${name} as "syntax"`, () => {
      assert.throws(() => decodeHeader(fromHex(hex)), { name: 'SFrameError', kind: 'syntax' });
    });
  }

  test('boundaries 7/8, 255/256 and 2^64-1 round-trip with minimal lengths', () => {
    const cases = [[7n, 7n, '77'], [8n, 0n, '8008'], [0n, 8n, '0808'], [255n, 256n, '89ff0100'],
      [U64_MAX, 0n, `f0${'ff'.repeat(8)}`], [0n, U64_MAX, `0f${'ff'.repeat(8)}`]];
    for (const [kid, ctr, hex] of cases) {
      assert.equal(toHex(encodeHeader(kid, ctr)), hex);
      const decoded = decodeHeader(fromHex(`${hex}abcdef`));
      assert.deepEqual([decoded.kid, decoded.ctr, decoded.length], [kid, ctr, hex.length / 2]);
    }
  });

  test('out-of-range and non-integer KID/CTR are "invalidParameter"', () => {
    for (const [kid, ctr] of [[-1n, 0n], [1n << 64n, 0n], [0n, 1n << 64n], [1.5, 0], [2 ** 53, 0], ['1', 0]]) {
      assert.throws(() => encodeHeader(kid, ctr), { kind: 'invalidParameter' });
    }
  });
});

describe('errors', () => {
  test('every kind names a Python exception class', () => {
    assert.equal(ERROR_KINDS.length, 10);
    for (const kind of ERROR_KINDS) assert.match(PYTHON_ERROR_CLASS[kind], /^[A-Z][A-Za-z]+$/);
  });
});

describe('SFrameContext', () => {
  const key = rand(16);

  test('unknown KID ("keyID", with the KID) is told apart from forgery ("authentication")', async () => {
    const tx = new SFrameContext(1);
    await tx.addSendKey(42n, key);
    const rx = new SFrameContext(1);
    const ct = await tx.protect(42n, rand(30), Uint8Array.of(1, 2));
    await assert.rejects(rx.unprotect(ct, Uint8Array.of(1, 2)), (err) => err.kind === 'keyID' && err.keyID === 42n);
    await rx.addRecvKey(42n, key);
    assert.equal((await rx.unprotect(ct, Uint8Array.of(1, 2))).kid, 42n);
    await assert.rejects(rx.unprotect(ct, Uint8Array.of(1, 3)), { kind: 'authentication' }); // metadata is AAD
    const tampered = ct.slice(); tampered[3] ^= 1;
    await assert.rejects(rx.unprotect(tampered, Uint8Array.of(1, 2)), { kind: 'authentication' });
    await assert.rejects(rx.unprotect(ct.subarray(0, 5), Uint8Array.of(1, 2)), { kind: 'authentication' }); // shorter than the tag
    const wrongKey = new SFrameContext(1);
    await wrongKey.addRecvKey(42n, rand(16));
    await assert.rejects(wrongKey.unprotect(ct, Uint8Array.of(1, 2)), { kind: 'authentication' });
  });

  test('counters: per KID, from 0, concurrent calls never share a CTR, never wrap', async () => {
    const tx = new SFrameContext(4);
    await tx.addSendKey(1n, key);
    await tx.addSendKey(2n, key, { initialCounter: 100n });
    const cts = await Promise.all([...Array(10)].map(() => tx.protect(1n, rand(10))));
    assert.deepEqual(cts.map((ct) => decodeHeader(ct).ctr), [...Array(10).keys()].map(BigInt));
    assert.equal(decodeHeader(await tx.protect(2n, rand(10))).ctr, 100n);
    await tx.addSendKey(3n, key, { initialCounter: U64_MAX });
    assert.equal(decodeHeader(await tx.protect(3n, rand(10))).ctr, U64_MAX);
    await assert.rejects(tx.protect(3n, rand(10)), { kind: 'counter' });
    await assert.rejects(tx.protect(3n, rand(10)), { kind: 'counter' });
    await assert.rejects(tx.protect(9n, rand(10)), { kind: 'keyID' });
  });

  test('a KID is a send key or a receive key, never both (§4.4.1)', async () => {
    const ctx = new SFrameContext(4);
    await ctx.addSendKey(1n, key);
    await assert.rejects(ctx.addSendKey(1n, key), { kind: 'keyManagement' });
    await assert.rejects(ctx.addRecvKey(1n, key), { kind: 'keyManagement' });
    await ctx.addRecvKey(2n, key);
    await assert.rejects(ctx.addSendKey(2n, key), { kind: 'keyManagement' });
    await ctx.addRecvKey(2n, rand(16)); // replacing a receive key is allowed
    ctx.removeKey(1n);
    assert.deepEqual([...ctx.sendKids], []);
    assert.deepEqual([...ctx.recvKids], [2n]);
    await assert.rejects(ctx.addSendKey(5n, new Uint8Array(0)), { kind: 'invalidParameter' });
    assert.deepEqual([...ctx.sendKids], []); // no state change on failure
    assert.throws(() => new SFrameContext(9), { kind: 'cipherSuite' });
    assert.equal(new SFrameContext('AES_256_GCM_SHA512_128').cipherSuite, 5);
  });

  test('derived keys are non-extractable CryptoKeys, cached per KID', async () => {
    for (const suite of [1, 4]) {
      const ctx = new SFrameContext(suite);
      await ctx.addSendKey(1n, key);
      const entry = ctx.send.get(1n);
      const ready = entry.ready;
      const { aead } = await ready;
      const keys = suite === 1 ? [aead.encKey, aead.authKey] : [aead.key];
      for (const k of keys) {
        assert.ok(k instanceof CryptoKey);
        assert.equal(k.extractable, false);
      }
      await ctx.protect(1n, rand(5));
      assert.equal(ctx.send.get(1n).ready, ready);
    }
  });

  test('replay window: duplicates and too-old CTRs are "replay", after authentication only', async () => {
    const tx = new SFrameContext(4);
    await tx.addSendKey(7n, key);
    const rx = new SFrameContext(4, { replayWindow: 4 });
    await rx.addRecvKey(7n, key);
    const cts = [];
    for (let i = 0; i < 8; i += 1) cts.push(await tx.protect(7n, rand(8)));
    await rx.unprotect(cts[6]);
    await rx.unprotect(cts[4]); // reordered, inside the window
    await assert.rejects(rx.unprotect(cts[4]), { kind: 'replay' });
    await assert.rejects(rx.unprotect(cts[2]), { kind: 'replay' }); // 6 - 2 >= 4
    const forged = cts[7].slice(); forged[forged.length - 1] ^= 1;
    await assert.rejects(rx.unprotect(forged), { kind: 'authentication' });
    await rx.unprotect(cts[7]); // the forgery did not burn CTR 7
    await rx.unprotect(cts[5]);
    assert.throws(() => new SFrameContext(4, { replayWindow: 0 }), { kind: 'invalidParameter' });
  });
});

describe('MLSKeyManager (RFC 9605 §5.2)', () => {
  const exporter = (tag) => ({ exportSecret: (label, context, length) => new Uint8Array(length).fill(tag) });

  test('KID layout: the RFC 9605 Figure 9 examples (E=4, S=6)', () => {
    assert.equal(mlsKid(14, 3, 0, 4, 6), 0x3en);
    assert.equal(mlsKid(14, 20, 0, 4, 6), 0x14en);
    assert.equal(mlsKid(16, 2, 2, 4, 6), 0x820n);
    assert.equal(mlsKid(17, 51, 0, 4, 6), 0x331n);
    assert.throws(() => mlsKid(1, 64, 0, 4, 6), { kind: 'invalidParameter' });
    assert.throws(() => mlsKid(1, 0, 1n << 60n, 4, 6), { kind: 'invalidParameter' });
    assert.deepEqual([1, 2, 3, 5, 64, 65].map(indexBitsFor), [0, 1, 2, 3, 6, 7]);
  });

  test('epochs: E-bit collision evicts, count and time retention, re-install rules', async () => {
    let now = 0;
    const m = new MLSKeyManager(4, { epochBits: 2, retainEpochs: 2, retainSeconds: 5, clock: () => now });
    await m.installEpoch(exporter(1), 1, 0, 3);
    await m.installEpoch(exporter(2), 2, 0, 3);
    await m.installEpoch(exporter(3), 3, 0, 3);
    assert.deepEqual(m.epochs, [1n, 2n, 3n]);
    await m.installEpoch(exporter(2), 2, 0, 3); // same epoch, same secret: no-op
    await assert.rejects(m.installEpoch(exporter(9), 2, 0, 3), { kind: 'keyManagement' });
    await assert.rejects(m.installEpoch(exporter(0), 0, 0, 3), { kind: 'keyManagement' }); // older
    await m.installEpoch(exporter(5), 5, 0, 3); // 5 % 4 == 1: epoch 1 goes; 5 - 2 > 2: epoch 2 goes
    assert.deepEqual(m.epochs, [3n, 5n]);
    now = 5.5; // epoch 3 was superseded at t=0
    assert.deepEqual(m.epochs, [5n]);
    await assert.rejects(m.installEpoch(exporter(6), 6, 3, 3), { kind: 'invalidParameter' });
    await assert.rejects(m.installEpoch({ exportSecret: () => new Uint8Array(3) }, 6, 0, 3), { kind: 'keyManagement' });
    assert.deepEqual(m.epochs, [5n]);
  });

  test('transition: send under the old epoch until switchSender; receivers accept both', async () => {
    const alice = new MLSKeyManager(1, { clock: () => 0 });
    const bob = new MLSKeyManager(1, { clock: () => 0 });
    await alice.installEpoch(exporter(1), 1, 0, 2);
    await bob.installEpoch(exporter(1), 1, 1, 2);
    assert.equal(alice.sendKeyChanged(), true);
    assert.equal(alice.sendKeyChanged(), false);
    await alice.installEpoch(exporter(2), 2, 0, 2, { switchSender: false });
    assert.equal(alice.inTransition, true);
    assert.equal(alice.sendingEpoch, 1n);
    const old = await alice.protect(rand(20));
    assert.equal((await bob.unprotect(old)).epoch, 1n);
    await bob.installEpoch(exporter(2), 2, 1, 2, { switchSender: false });
    assert.equal((await bob.unprotect(await alice.protect(rand(20)))).epoch, 1n); // still epoch 1
    alice.switchSender();
    assert.equal(alice.inTransition, false);
    assert.equal(alice.sendKeyChanged(), true); // time for a keyframe
    const fresh = await alice.protect(rand(20), Uint8Array.of(9), { context: 3 });
    const r = await bob.unprotect(fresh, Uint8Array.of(9));
    assert.deepEqual([r.epoch, r.senderIndex, r.context], [2n, 0, 3n]);
    assert.equal((await bob.unprotect(old)).epoch, 1n); // the old epoch is retained
    assert.throws(() => alice.switchSender(1), { kind: 'keyManagement' });
  });

  test('own KIDs are send-only; indexes beyond the group and missing epochs are "keyID"', async () => {
    const m = new MLSKeyManager(4, { clock: () => 0 });
    await assert.rejects(m.protect(rand(4)), { kind: 'keyManagement' });
    await m.installEpoch(exporter(1), 1, 2, 3);
    const own = await m.protect(rand(10));
    await assert.rejects(m.unprotect(own), { kind: 'keyID' });
    const stranger = new MLSKeyManager(4, { clock: () => 0 });
    await stranger.installEpoch(exporter(1), 1, 3, 4); // index 3 is outside a group of 3
    const frame = await stranger.protect(rand(10));
    await assert.rejects(m.unprotect(frame), { kind: 'keyID' });
    const later = new MLSKeyManager(4, { clock: () => 0 });
    await later.installEpoch(exporter(2), 2, 0, 3);
    await assert.rejects(m.unprotect(await later.protect(rand(3))), (err) => err.kind === 'keyID' && typeof err.keyID === 'bigint');
    assert.equal(m.kidFor(1, 1), mlsKid(1, 1, 0, 4, 2));
    assert.throws(() => m.kidFor(2, 1), { kind: 'keyManagement' });
  });
});

describe('codec-aware framing', () => {
  test('emulation prevention: no start code pattern survives, and it inverts', () => {
    for (let i = 0; i < 50; i += 1) {
      const data = rand(64, { zeroRuns: true });
      const escaped = escapeEmulation(data);
      for (let j = 0; j + 2 < escaped.length; j += 1) {
        assert.ok(!(escaped[j] === 0 && escaped[j + 1] === 0 && escaped[j + 2] <= 2), `00 00 0${escaped[j + 2]} at ${j}`);
      }
      assert.equal(toHex(unescapeEmulation(escaped)), toHex(data));
    }
    assert.equal(toHex(escapeEmulation(fromHex('0000000000'))), '00000300000300');
  });

  test('Annex B split, keyframe detection, codec names, malformed frames', async () => {
    const units = splitAnnexB(fromHex('000000016742000001680000000165aa0000'));
    assert.deepEqual(units.map(toHex), ['6742', '68', '65aa']);
    assert.equal(isKeyframe('h264', fromHex('0000000165aa')), true);
    assert.equal(isKeyframe('h264', fromHex('0000000141aa')), false);
    assert.equal(isKeyframe('vp8', Uint8Array.of(0x10)), true);
    assert.equal(isKeyframe('vp8', Uint8Array.of(0x11)), false);
    assert.deepEqual(['video/VP8', 'VIDEO/h264', 'audio/opus'].map(frameCodec), ['vp8', 'h264', 'audio']);
    assert.throws(() => frameCodec('video/VP9'), { kind: 'unsupportedCodec' });
    const seal = (p, m) => Uint8Array.of(...m, ...p);
    await assert.rejects(sealFrame('vp8', Uint8Array.of(0x10, 1, 2)), { kind: 'malformedFrame' });
    await assert.rejects(sealFrame('h264', fromHex('65aa'), seal), { kind: 'malformedFrame' });
    await assert.rejects(openFrame('vp8', Uint8Array.of(0x11, 1, 2), seal), { kind: 'malformedFrame' });
    await assert.rejects(openFrame('h264', fromHex('0000000165aa'), seal), { kind: 'malformedFrame' });
  });

  test('the clear bytes are authenticated', async () => {
    const tx = new SFrameContext(getCipherSuite('AES_128_CTR_HMAC_SHA256_32').id);
    const key = rand(16);
    await tx.addSendKey(1n, key);
    const receiver = new SFrameContext(3);
    await receiver.addRecvKey(1n, key);
    const frame = rand(100); frame[0] &= 0xfe;
    const wire = await sealFrame('vp8', frame, (p, m) => tx.protect(1n, p, m));
    const open = async (c, m) => (await receiver.unprotect(c, m)).plaintext;
    assert.equal(toHex(await openFrame('vp8', wire, open)), toHex(frame));
    const changed = wire.slice(); changed[5] ^= 1; // a clear byte
    await assert.rejects(openFrame('vp8', changed, open), { kind: 'authentication' });
  });
});
