/**
 * An MLS endpoint's senders send a remote only what it can open
 * (remoteKeysFrom: nothing before it is a member, then only under the epoch
 * its Welcome starts or later), and video resumes with a keyframe; driven
 * through the RTCRtpScriptTransform stand-in (test/fake-webrtc.js).
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeAudioFrame, FakeVideoFrame, FakeWorker } from './fake-webrtc.js';
import { testBytes } from './python.js';
import { SFrameMLSSession } from '../sframe-transform.js';

const subtle = globalThis.crypto.subtle;
const rand = testBytes(5);
const opened = [];
after(() => { for (const s of opened) s.close(); });

const exporterFor = (epoch) => ({
  async exportSecret(label, context, length) {
    const digest = await subtle.digest('SHA-512', new TextEncoder().encode(`${label}|${epoch}`));
    return { secret: new Uint8Array(digest, 0, length) };
  },
});
const delta = () => new FakeVideoFrame(rand(120));
const key = () => new FakeVideoFrame(rand(120), { type: 'key' });

test('a sender withholds frames its remote cannot open, then resumes with a keyframe', async () => {
  const worker = new FakeWorker();
  const alice = new SFrameMLSSession({ cipherSuite: 1, worker });
  opened.push(alice);
  await alice.installEpoch(exporterFor(3), 3, 0, 2);
  const video = new RTCRtpSender();
  const audio = new RTCRtpSender();
  alice.protectSender(video, { context: 1, label: 'bob/video' });
  alice.protectSender(audio, { context: 0, label: 'bob/audio' });
  const other = new RTCRtpSender();
  alice.protectSender(other, { context: 1, label: 'carol/video' });

  await alice.remoteKeysFrom('bob/video', null); // bob is no member
  await alice.remoteKeysFrom('bob/audio', null);
  assert.deepEqual(await video.run([key(), delta()]), []);
  assert.deepEqual(await audio.run([new FakeAudioFrame(rand(30))]), []);
  assert.equal((await other.run([delta()])).length, 1); // carol's stream is not gated

  await alice.remoteKeysFrom('bob/video', 4); // a member from epoch 4: we still send under 3
  await alice.remoteKeysFrom('bob/audio', 4);
  assert.deepEqual(await video.run([delta()]), []);
  assert.equal(video.transformer.keyFramesGenerated, 0);
  await alice.installEpoch(exporterFor(4), 4, 0, 2);
  await alice.switchSender(4);
  // open now: a delta frame waits for the keyframe asked for, which goes out
  assert.deepEqual(await video.run([delta()]), []);
  assert.equal(video.transformer.keyFramesGenerated, 1);
  const sent = await video.run([key(), delta()]);
  assert.equal(sent.length, 2);
  assert.equal(sent[0].type, 'key');
  assert.equal(video.transformer.keyFramesGenerated, 1); // not asked again for the key switch
  assert.equal((await audio.run([new FakeAudioFrame(rand(30))])).length, 1);

  const stats = await alice.stats();
  const bobVideo = stats.senders.find((s) => s.label === 'bob/video');
  assert.equal(bobVideo.framesWithheld, 4);
  assert.equal(bobVideo.framesEncrypted, 2);
  assert.equal(bobVideo.epoch, 4n);
  assert.equal(stats.senders.find((s) => s.label === 'bob/audio').framesWithheld, 1);
  assert.equal(stats.senders.find((s) => s.label === 'carol/video').framesWithheld, 0);
});
