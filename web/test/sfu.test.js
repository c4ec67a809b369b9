/**
 * The page's SFU rules (app/sfu.js): the SDP rule of tests/contracts/sfu_sdp.json
 * (the audio-level header extension is never negotiated; the RTX rule is
 * aiortc's only), waiting for ICE gathering, and attribution of subscribed
 * streams by the KIDs of their frames (never the server's `from`), with the
 * worker's per-receiver sender counts driven through the
 * RTCRtpScriptTransform stand-in (test/fake-webrtc.js).
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { FakeAudioFrame, FakeVideoFrame, FakeWorker, cloneFrame } from './fake-webrtc.js';
import { testBytes } from './python.js';
import { SFrameMLSSession } from '../sframe-transform.js';
import { AUDIO_LEVEL_URI, StreamAttribution, iceGathered, sfuSdp, stripAudioLevel } from '../app/sfu.js';

const contract = JSON.parse(readFileSync(new URL('../../tests/contracts/sfu_sdp.json', import.meta.url), 'utf8'));
const sdpOf = (lines, ending) => lines.map((line) => `${line}${ending}`).join('');

// -- SDP -------------------------------------------------------------------------------

const audioLevelCases = contract.cases.filter((c) => c.strip.length === 1 && c.strip[0] === 'audio_level');

test('the contract has audio-level cases for the page (the RTX rule is for aiortc subscribers only)', () => {
  assert.ok(audioLevelCases.length >= 4, `${audioLevelCases.length} audio_level-only cases`);
});

for (const c of audioLevelCases) {
  test(`sfu_sdp.json: ${c.name}`, () => {
    assert.equal(stripAudioLevel(sdpOf(c.input, c.line_ending)), sdpOf(c.expected, c.line_ending));
  });
}

test('sfuSdp: no audio level, and in loopback mode no candidate off loopback', () => {
  const sdp = sdpOf([
    'v=0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host',
    'a=candidate:2 1 udp 2122194687 10.1.2.3 50001 typ host',
    `a=extmap:1 ${AUDIO_LEVEL_URI}`,
    `a=extmap:2 ${AUDIO_LEVEL_URI}-not`,
    'a=extmap:3 urn:ietf:params:rtp-hdrext:csrc-audio-level',
  ], '\r\n');
  const loopback = sfuSdp(sdp, true);
  assert.ok(!loopback.includes('10.1.2.3'));
  assert.ok(loopback.includes('127.0.0.1 50000'));
  assert.ok(!loopback.includes(`a=extmap:1 ${AUDIO_LEVEL_URI}\r\n`));
  assert.ok(loopback.includes(`a=extmap:2 ${AUDIO_LEVEL_URI}-not\r\n`)); // only the exact URI goes
  assert.ok(loopback.includes('csrc-audio-level'));
  const open = sfuSdp(sdp, false);
  assert.ok(open.includes('10.1.2.3'));
  assert.ok(!open.includes(`a=extmap:1 ${AUDIO_LEVEL_URI}`));
});

/** An RTCPeerConnection's gathering state only. */
class GatheringPc extends EventTarget {
  constructor(state) {
    super();
    this.iceGatheringState = state;
  }

  set(state) {
    this.iceGatheringState = state;
    this.dispatchEvent(new Event('icegatheringstatechange'));
  }
}

test('iceGathered waits for gathering to complete, or for its bound', async () => {
  assert.equal(await iceGathered(new GatheringPc('complete')), undefined);
  const pc = new GatheringPc('new');
  let done = false;
  const waiting = iceGathered(pc, 60000).then(() => { done = true; });
  pc.set('gathering');
  await new Promise((resolve) => { setImmediate(resolve); });
  assert.equal(done, false);
  pc.set('complete');
  await waiting;
  assert.equal(done, true);
  const stuck = new GatheringPc('gathering');
  await iceGathered(stuck, 20); // resolves with what it has
  assert.equal(stuck.iceGatheringState, 'gathering');
});

// -- attribution -----------------------------------------------------------------------

const leaves = new Map([[0, 'page'], [1, 'alice'], [2, 'bob'], [3, 'alice']]);
const identityOf = (index) => leaves.get(index) ?? null;
const receiver = (label, bySender, first = Number(Object.keys(bySender)[0]), last = first) => ({
  label, firstSenderIndex: first, senderIndex: last, framesBySender: bySender,
});

test('a stream is its frames\' KID sender\'s, whatever the server says; a wrong `from` is flagged once', () => {
  const a = new StreamAttribution();
  a.setStreams([
    { mid: '0', feed: 11, from: 'alice', kind: 'audio' },
    { mid: '1', feed: 11, from: 'alice', kind: 'video' },
    { mid: '2', feed: 12, from: 'alice', kind: 'video' }, // the server lies: bob's
  ]);
  const label = (mid, feed) => StreamAttribution.label(mid, feed);
  assert.deepEqual(a.observe([receiver(label('0', 11), { 1: 5 })], identityOf), []);
  assert.equal(a.identityOf(label('0', 11)), 'alice');
  assert.equal(a.identityOf(label('1', 11)), null); // no frame yet

  const flags = a.observe([receiver(label('2', 12), { 2: 3 })], identityOf);
  assert.deepEqual(flags.map((f) => [f.kind, f.identity, f.from, f.feed, f.leafIndex]), [['from_mismatch', 'bob', 'alice', 12, 2]]);
  assert.equal(a.identityOf(label('2', 12)), 'bob');
  assert.equal(a.flagged(label('2', 12)), true);
  assert.equal(a.flagged(label('0', 11)), false);
  assert.deepEqual(a.observe([receiver(label('2', 12), { 2: 9 })], identityOf), []); // once
  assert.deepEqual(a.counters, { kidChanged: 0, fromMismatch: 1 });
  assert.deepEqual([...a.streams.get(label('2', 12)).framesBy], [['bob', 9]]);
});

test('frames under another member\'s KID than the first are flagged and attributed by KID', () => {
  const a = new StreamAttribution();
  a.setStreams([{ mid: '1', feed: 11, from: 'alice', kind: 'video' }]);
  const label = StreamAttribution.label('1', 11);
  assert.deepEqual(a.observe([receiver(label, { 1: 40 })], identityOf), []);
  const flags = a.observe([receiver(label, { 1: 40, 2: 7 }, 1, 2)], identityOf);
  assert.deepEqual(flags.map((f) => [f.kind, f.identity, f.firstIdentity]).sort(),
    [['from_mismatch', 'bob', 'alice'], ['kid_changed', 'bob', 'alice']]);
  assert.equal(a.identityOf(label), 'bob');
  assert.deepEqual(Object.fromEntries(a.streams.get(label).framesBy), { alice: 40, bob: 7 });
  // back to alice's KID: attributed to her again, nothing new to flag
  assert.deepEqual(a.observe([receiver(label, { 1: 41, 2: 7 }, 1, 1)], identityOf), []);
  assert.equal(a.identityOf(label), 'alice');
  assert.deepEqual(a.counters, { kidChanged: 1, fromMismatch: 1 });
});

test('the same member under another leaf (it rejoined the group) is not flagged', () => {
  const a = new StreamAttribution();
  a.setStreams([{ mid: '0', feed: 11, from: 'alice', kind: 'audio' }]);
  const label = StreamAttribution.label('0', 11);
  assert.deepEqual(a.observe([receiver(label, { 1: 3, 3: 4 }, 1, 3)], identityOf), []);
  assert.equal(a.identityOf(label), 'alice');
  assert.deepEqual(Object.fromEntries(a.streams.get(label).framesBy), { alice: 7 });
});

test('a leaf not in our view yet is attributed later, not flagged', () => {
  const a = new StreamAttribution();
  a.setStreams([{ mid: '0', feed: 11, from: 'dave', kind: 'audio' }]);
  const label = StreamAttribution.label('0', 11);
  const view = new Map(leaves);
  assert.deepEqual(a.observe([receiver(label, { 4: 2 })], (i) => view.get(i) ?? null), []);
  assert.equal(a.identityOf(label), null);
  view.set(4, 'dave');
  assert.deepEqual(a.observe([receiver(label, { 4: 5 })], (i) => view.get(i) ?? null), []);
  assert.equal(a.identityOf(label), 'dave');
});

test('streams follow the subscribe acks: an m-line given to another feed is another stream', () => {
  const a = new StreamAttribution();
  a.setStreams([
    { mid: '0', feed: 11, from: 'alice', kind: 'audio' }, null, { mid: 3, feed: 1, kind: 'audio' },
    { mid: '5', feed: 'x', kind: 'audio' }, { mid: '6', feed: 1, kind: 'data' },
  ]);
  assert.deepEqual([...a.streams.keys()], ['sfu/0/11']);
  a.observe([receiver('sfu/0/11', { 1: 2 })], identityOf);
  a.setStreams([{ mid: '0', feed: 11, from: 'alice', kind: 'audio' }, { mid: '1', feed: 12, from: 'bob', kind: 'audio' }]);
  assert.equal(a.identityOf('sfu/0/11'), 'alice'); // kept
  a.setStreams([{ mid: '0', feed: 13, from: 'bob', kind: 'audio' }]);
  assert.deepEqual([...a.streams.keys()], ['sfu/0/13']);
  assert.equal(a.identityOf('sfu/0/13'), null);
  a.observe([receiver('sfu/0/13', { 2: 5 })], identityOf);
  // counts never go back: frames of streams no longer subscribed stay counted
  const totals = (m) => Object.fromEntries([...m].map(([identity, kinds]) => [identity, Object.fromEntries(kinds)]));
  assert.deepEqual(totals(a.framesByIdentity()), { alice: { audio: 2 }, bob: { audio: 5 } });
  a.setStreams([]);
  assert.deepEqual(totals(a.framesByIdentity()), { alice: { audio: 2 }, bob: { audio: 5 } });
  // receivers of other labels (a mesh link, a closed stream) are not this attribution's
  assert.deepEqual(a.observe([receiver('sfu/0/11', { 1: 9 }), receiver('bob/audio', { 2: 1 })], identityOf), []);
  assert.equal(a.identityOf('sfu/0/13'), null);
});

// -- the worker's sender counts ----------------------------------------------------------

const subtle = globalThis.crypto.subtle;
const rand = testBytes(16);
const opened = [];
after(() => { for (const s of opened) s.close(); });
const exporter = {
  async exportSecret(label, context, length) {
    const digest = await subtle.digest('SHA-512', new TextEncoder().encode(`${label}|sfu`));
    return { secret: new Uint8Array(digest, 0, length) };
  },
};

async function member(index) {
  const session = new SFrameMLSSession({ cipherSuite: 1, worker: new FakeWorker() });
  opened.push(session);
  await session.installEpoch(exporter, 2, index, 3);
  return session;
}

test('a receiver counts who sent its frames by KID; relabelReceiver counts afresh', async () => {
  const [page, alice, bob] = [await member(0), await member(1), await member(2)];
  const sealed = async (session, frames) => {
    const sender = new RTCRtpSender();
    session.protectSender(sender, { label: 'sfu/audio' });
    return (await sender.run(frames)).map(cloneFrame);
  };
  const fromAlice = await sealed(alice, [new FakeAudioFrame(rand(40)), new FakeAudioFrame(rand(40))]);
  const fromBob = await sealed(bob, [new FakeAudioFrame(rand(40))]);
  const incoming = new RTCRtpReceiver();
  page.protectReceiver(incoming, { label: 'sfu/0/11' });
  assert.equal((await incoming.run([...fromAlice, ...fromBob])).length, 3);
  let record = (await page.stats()).receivers[0];
  assert.equal(record.firstSenderIndex, 1);
  assert.equal(record.senderIndex, 2);
  assert.deepEqual(record.framesBySender, { 1: 2, 2: 1 });

  await page.relabelReceiver('sfu/0/11', 'sfu/0/12');
  record = (await page.stats()).receivers[0];
  assert.equal(record.label, 'sfu/0/12');
  assert.equal(record.firstSenderIndex, null);
  assert.deepEqual(record.framesBySender, {});
  assert.equal(record.framesDecrypted, 3); // the other counters go on
  assert.equal((await incoming.run(await sealed(bob, [new FakeAudioFrame(rand(40))]))).length, 1);
  record = (await page.stats()).receivers[0];
  assert.equal(record.firstSenderIndex, 2);
  assert.deepEqual(record.framesBySender, { 2: 1 });

  // frames that do not open count no sender
  const video = new RTCRtpReceiver();
  page.protectReceiver(video, { label: 'sfu/1/11' });
  assert.equal((await video.run([new FakeVideoFrame(rand(60))])).length, 0);
  record = (await page.stats()).receivers.find((r) => r.label === 'sfu/1/11');
  assert.equal(record.firstSenderIndex, null);
  assert.deepEqual(record.framesBySender, {});
});

test('the page says why an SFU stream shows nothing: the media server, or the subscribing connection', async () => {
  const { missingMediaReason } = await import('../app/ui.js');
  const status = (sfu) => ({ present: ['alice'], members: ['alice', 'page'], epoch: 3, links: {}, sfu });
  assert.equal(missingMediaReason(status({ interrupted: true, subscriber: null }), 'alice', 'idle'), 'media server interrupted');
  assert.equal(missingMediaReason(status({ interrupted: false, subscriber: null }), 'alice', 'idle'), 'connecting');
  assert.equal(missingMediaReason(status({ interrupted: false, subscriber: { state: 'failed', ice: 'failed' } }), 'alice', 'idle'),
    'ICE failed');
  assert.equal(missingMediaReason(status({ interrupted: false, subscriber: { state: 'connected', ice: 'connected' } }), 'alice', 'idle'),
    'no media');
  assert.equal(missingMediaReason(status({ interrupted: true, subscriber: null }), 'alice', 'ok'), null);
});
