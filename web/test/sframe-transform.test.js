/**
 * SFrameTransform and SFrameMLSSession (web/sframe-transform.js) with the
 * worker logic (web/sframe/worker-core.js), driven through a stand-in for
 * RTCRtpScriptTransform (test/fake-webrtc.js). Ciphertexts are checked
 * against SFrameContext / MLSKeyManager, which the vector and Python
 * cross-check tests pin down.
 */

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeAudioFrame, FakeVideoFrame, FakeWorker, cloneFrame } from './fake-webrtc.js';
import { testBytes } from './python.js';
import { SFrameMLSSession, SFrameTransform, SFrameTransformErrorEvent } from '../sframe-transform.js';
import { SFrameContext } from '../sframe/context.js';
import { MLSKeyManager } from '../sframe/mlskeys.js';
import { sealFrame } from '../sframe/framing.js';
import { concatBytes, toHex } from '../sframe/bytes.js';

const subtle = globalThis.crypto.subtle;
const rand = testBytes(3);
const bytesOf = (frame) => new Uint8Array(frame.data);
const hkdfKey = (raw) => subtle.importKey('raw', raw, 'HKDF', false, ['deriveBits', 'deriveKey']);

/** Everything opened, closed after the tests (open MessagePorts keep Node alive). */
const opened = [];
after(() => { for (const t of opened) t.close(); });
function transformOf(options) {
  const t = new SFrameTransform(options);
  opened.push(t);
  return t;
}
function sessionOf(options) {
  const session = new SFrameMLSSession(options);
  opened.push(session);
  return session;
}

function collectErrors(target) {
  const errors = [];
  target.onerror = (event) => errors.push(event);
  return errors;
}

/** Waits until `errors` has `n` events (they are posted from the worker side). */
async function waitFor(errors, n) {
  while (errors.length < n) await new Promise((resolve) => { setImmediate(resolve); });
}

describe('SFrameTransform (W3C API over RTCRtpScriptTransform)', () => {
  test('encrypts frames as SFrameContext does and decrypts them back', async () => {
    const worker = new FakeWorker();
    const raw = rand(16);
    const key = await hkdfKey(raw);
    assert.equal(key.extractable, false);
    const encrypter = transformOf({ cipherSuite: 'AES_128_GCM_SHA256_128', worker });
    const decrypter = transformOf({ cipherSuite: 'AES_128_GCM_SHA256_128', worker });
    await encrypter.setEncryptionKey(key, 5n);
    await decrypter.setEncryptionKey(key, 5); // before attach: role comes from the receiver
    const sender = new RTCRtpSender();
    const receiver = new RTCRtpReceiver();
    encrypter.attach(sender);
    decrypter.attach(receiver);
    assert.equal(sender.transform, encrypter.transform);
    assert.equal(encrypter.role, 'encrypt');
    assert.equal(decrypter.role, 'decrypt');

    const frames = [new FakeVideoFrame(rand(500), { type: 'key' }), new FakeVideoFrame(rand(80)), new FakeAudioFrame(rand(60))];
    const clear = frames.map((f) => bytesOf(f));
    const sealed = await sender.run(frames.map(cloneFrame));
    assert.equal(sealed.length, 3);

    const reference = new SFrameContext(4);
    await reference.addSendKey(5n, raw);
    for (const [i, frame] of sealed.entries()) {
      assert.equal(toHex(bytesOf(frame)), toHex(await reference.protect(5n, clear[i])), `frame ${i}`);
    }
    const opened = await receiver.run(sealed.map(cloneFrame));
    assert.deepEqual(opened.map((f) => toHex(bytesOf(f))), clear.map(toHex));
    assert.equal(opened[0].type, 'key');
  });

  test('errors: keyID (with the KID), authentication, syntax; bad frames are dropped', async () => {
    const worker = new FakeWorker();
    const decrypter = transformOf({ authenticationSize: 10, role: 'decrypt', worker });
    assert.equal(decrypter.cipherSuite, 'AES_128_CTR_HMAC_SHA256_80');
    const errors = collectErrors(decrypter);
    const raw = rand(16);
    await decrypter.setEncryptionKey(await hkdfKey(raw), 1n);
    const receiver = new RTCRtpReceiver();
    decrypter.attach(receiver);

    const sender = new SFrameContext(1);
    await sender.addSendKey(1n, raw);
    await sender.addSendKey(300n, raw);
    const good = await sender.protect(1n, rand(40));
    const unknown = await sender.protect(300n, rand(40));
    const forged = (await sender.protect(1n, rand(40))).slice();
    forged[forged.length - 1] ^= 0x80;
    const truncated = Uint8Array.of(0x99, 0x01); // KID and CTR lengths 2, one byte present

    const out = await receiver.run([good, unknown, forged, truncated].map((b) => new FakeVideoFrame(b)));
    assert.equal(out.length, 1);
    await waitFor(errors, 3);
    assert.deepEqual(errors.map((e) => e.errorType), ['keyID', 'authentication', 'syntax']);
    assert.ok(errors.every((e) => e instanceof SFrameTransformErrorEvent));
    assert.equal(errors[0].keyID, 300n);
    assert.equal(errors[1].keyID, null);
    assert.equal(errors[0].frame.byteLength, unknown.length);
  });

  test('setEncryptionKey: RangeError, TypeError, InvalidModificationError', async () => {
    const worker = new FakeWorker();
    const t = transformOf({ role: 'encrypt', worker });
    const key = await hkdfKey(rand(16));
    await assert.rejects(t.setEncryptionKey(key, 1n << 64n), RangeError);
    await assert.rejects(t.setEncryptionKey(key, -1n), RangeError);
    await assert.rejects(t.setEncryptionKey(key, 1.5), TypeError);
    await assert.rejects(t.setEncryptionKey(rand(16), 1n), TypeError);
    const aesKey = await subtle.importKey('raw', rand(16), 'AES-GCM', false, ['encrypt']);
    await assert.rejects(t.setEncryptionKey(aesKey, 1n), { name: 'InvalidModificationError' });
    await t.setEncryptionKey(key, (1n << 64n) - 1n);
    assert.throws(() => new SFrameTransform({ cipherSuite: 'AES_512_FOO', worker }), { kind: 'cipherSuite' });
    assert.throws(() => new SFrameTransform({ authenticationSize: 12, worker }), TypeError);
    assert.throws(() => new SFrameTransform({ role: 'both', worker }), TypeError);
    assert.throws(() => new SFrameTransform({ compatibilityMode: 'VP9', worker }), TypeError);
  });

  test('encrypt: frames sent under the last keyID; no key means dropped, never clear', async () => {
    const worker = new FakeWorker();
    const t = transformOf({ cipherSuite: 'AES_128_CTR_HMAC_SHA256_32', worker });
    const sender = new RTCRtpSender();
    t.attach(sender);
    assert.deepEqual(await sender.run([new FakeAudioFrame(rand(30))]), []);
    assert.equal(sender.record.framesDropped, 1);
    const raw = rand(16);
    await t.setEncryptionKey(await hkdfKey(raw), 7n);
    await t.setEncryptionKey(await hkdfKey(raw), 9n);
    const [a] = await sender.run([new FakeAudioFrame(rand(30))]);
    assert.equal(toHex(bytesOf(a).subarray(0, 2)), '8009'); // KID 9, CTR 0
    await t.setEncryptionKey(await hkdfKey(raw), 9n); // same KID again: CTR continues
    const [b] = await sender.run([new FakeAudioFrame(rand(30))]);
    assert.equal(toHex(bytesOf(b).subarray(0, 2)), '8109');
    assert.throws(() => t.attach(new RTCRtpSender()), { name: 'InvalidStateError' });
  });

  test('compatibilityMode "auto": codec-aware clear bytes (VP8, H.264, Opus)', async () => {
    const worker = new FakeWorker();
    const raw = rand(16);
    const t = transformOf({ cipherSuite: 4, compatibilityMode: 'auto', worker });
    await t.setEncryptionKey(await hkdfKey(raw), 2n);
    const sender = new RTCRtpSender();
    t.attach(sender);
    const vp8 = rand(200); vp8[0] &= 0xfe;
    const h264 = concatBytes(Uint8Array.of(0, 0, 0, 1, 0x67), rand(20).map((b) => b | 1), Uint8Array.of(0, 0, 0, 1, 0x65), rand(300).map((b) => b | 1));
    const frames = [
      new FakeVideoFrame(vp8, { type: 'key' }),
      new FakeVideoFrame(h264, { type: 'key', mimeType: 'video/H264' }),
      new FakeAudioFrame(rand(50)),
    ];
    const codecs = ['vp8', 'h264', 'audio'];
    const clear = frames.map(bytesOf);
    const sealed = await sender.run(frames.map(cloneFrame));
    const reference = new SFrameContext(4);
    await reference.addSendKey(2n, raw);
    for (const [i, frame] of sealed.entries()) {
      const expected = await sealFrame(codecs[i], clear[i], (p, m) => reference.protect(2n, p, m));
      assert.equal(toHex(bytesOf(frame)), toHex(expected), codecs[i]);
    }
    assert.equal(toHex(bytesOf(sealed[0]).subarray(0, 10)), toHex(vp8.subarray(0, 10)));
  });
});

describe('SFrameMLSSession (MLS-keyed transforms)', () => {
  const exporterFor = (epoch) => ({
    async exportSecret(label, context, length) {
      const digest = await subtle.digest('SHA-512', new TextEncoder().encode(`${label}|${epoch}`));
      return { secret: new Uint8Array(digest, 0, length) };
    },
  });

  test('members exchange frames; transitions, keyframes, stats and failures', async () => {
    const worker = new FakeWorker();
    const alice = sessionOf({ cipherSuite: 1, worker });
    const bob = sessionOf({ cipherSuite: 1, worker });
    const bobErrors = collectErrors(bob);
    assert.deepEqual((await alice.installEpoch(exporterFor(1), 1, 0, 2)).sendingEpoch, 1n); // first epoch: at once
    await bob.installEpoch(exporterFor(1), 1, 1, 2);
    const video = new RTCRtpSender();
    const audio = new RTCRtpSender();
    alice.protectSender(video, { context: 1 });
    alice.protectSender(audio, { context: 0 });
    const receiver = new RTCRtpReceiver();
    bob.protectReceiver(receiver);

    const vp8 = () => { const f = rand(150); f[0] |= 1; return new FakeVideoFrame(f); };
    const first = [vp8(), vp8()];
    const sealed1 = await video.run(first.map(cloneFrame));
    assert.deepEqual((await receiver.run(sealed1.map(cloneFrame))).map((f) => toHex(bytesOf(f))), first.map((f) => toHex(bytesOf(f))));

    // The same frames through MLSKeyManager give the same bytes (Python-checked elsewhere).
    const twin = new MLSKeyManager(1);
    await twin.installEpoch(exporterFor(1), 1, 0, 2);
    for (const [i, f] of first.entries()) {
      const expected = await sealFrame('vp8', bytesOf(f), (p, m) => twin.protect(p, m, { context: 1 }));
      assert.equal(toHex(bytesOf(sealed1[i])), toHex(expected));
    }

    // Transition: epoch 2 decrypts at once, Alice keeps sending under 1 until switchSender.
    await alice.installEpoch(exporterFor(2), 2, 0, 2);
    await bob.installEpoch(exporterFor(2), 2, 1, 2);
    assert.equal(alice.state.sendingEpoch, 1n);
    await receiver.run(await video.run([vp8()]));
    assert.equal(video.transformer.keyFramesGenerated, 0);
    await alice.switchSender();
    assert.equal(alice.state.sendingEpoch, 2n);
    const [afterSwitch] = await video.run([vp8()]);
    assert.equal(video.transformer.keyFramesGenerated, 1); // a keyframe under the new key
    assert.equal(audio.transformer.keyFramesGenerated, 0);
    await receiver.run([afterSwitch]);
    await audio.run([new FakeAudioFrame(rand(40))]);

    // A frame of an epoch Bob can never have (epoch 12's KID bits read as 6 epochs
    // behind his epoch 2; a next epoch's frames would be held): keyID failure, keyframe request.
    const carol = new MLSKeyManager(1);
    await carol.installEpoch(exporterFor(12), 12, 0, 2);
    const stray = await sealFrame('vp8', bytesOf(vp8()), (p, m) => carol.protect(p, m));
    assert.deepEqual(await receiver.run([new FakeVideoFrame(stray)]), []);
    await waitFor(bobErrors, 1);
    assert.equal(bobErrors[0].errorType, 'keyID');
    assert.equal(receiver.transformer.keyFrameRequests, 1);

    const a = await alice.stats();
    assert.equal(a.framesEncrypted, 5);
    assert.equal(a.senders.find((s) => s.kind === 'video').keyframesForced, 1);
    assert.equal(a.senders.find((s) => s.kind === 'video').epoch, 2n);
    const b = await bob.stats();
    assert.equal(b.framesDecrypted, 4);
    assert.deepEqual(b.failures, { keyID: 1, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 });
    assert.deepEqual(b.receivers[0].framesByEpoch, { 1: 3, 2: 1 });
    assert.deepEqual(b.epochs, [1n, 2n]);
    alice.close();
    bob.close();
  });

  test('a sender without an epoch drops frames; bad exporter output is refused', async () => {
    const worker = new FakeWorker();
    const session = sessionOf({ worker });
    const sender = new RTCRtpSender();
    session.protectSender(sender);
    assert.deepEqual(await sender.run([new FakeAudioFrame(rand(10))]), []);
    assert.equal((await session.stats()).senders[0].framesDropped, 1);
    const short = { exportSecret: async () => new Uint8Array(5) };
    await assert.rejects(session.installEpoch(short, 1, 0, 2), { kind: 'keyManagement' });
    await assert.rejects(session.installEpoch(exporterFor(1), 1, 2, 2), { kind: 'invalidParameter' });
    session.close();
  });
});
