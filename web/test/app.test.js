/**
 * The call page's pure parts: the verification code's argument check (its
 * values: tests/contracts/verification_code.json, contracts-shared.test.js),
 * loopback candidate filtering (against media.loopback), credential and
 * KeyPackage identities, and the stream indicator's states. The page as a
 * whole runs in tests/web/test_web_call.py.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { runPython } from './python.js';
import { credentialIdentity, keyPackageIdentity } from '../app/membership.js';
import { filterSdp, isLoopbackCandidate, loopbackMode } from '../app/loopback.js';
import { streamState } from '../app/ui.js';
import { verificationCode } from '../app/verification.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';

const PYTHON = String.raw`
import json, sys
from media.loopback import filter_sdp, is_loopback_candidate
job = json.load(sys.stdin)
print(json.dumps({
    "loopback": [is_loopback_candidate(c) for c in job["candidates"]],
    "sdp": filter_sdp(job["sdp"]),
}))
`;

const CANDIDATES = [
  'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0',
  'candidate:2 1 udp 2122260223 192.168.1.20 50001 typ host generation 0',
  'a=candidate:3 1 udp 2122260223 ::1 50002 typ host',
  'candidate:4 1 udp 2122260223 5d1c1e1a-9f4e-4c42-8a0b-1f1ad1c1e1a1.local 50003 typ host',
  'candidate:5 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active',
  'candidate:6 1 udp 1686052607 203.0.113.7 50004 typ srflx raddr 127.0.0.1 rport 50000',
  'candidate:7 1 udp 2122260223 127.9.8.7 50005 typ host',
  'candidate:8 1 udp 2122260223 [::1] 50006 typ host',
  'candidate:9 1 udp',
];

const SDP = [
  'v=0', 'o=- 1 1 IN IP4 0.0.0.0', 's=-', 't=0 0', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'c=IN IP4 0.0.0.0',
  ...CANDIDATES.slice(0, 8).map((c) => (c.startsWith('a=') ? c : `a=${c}`)), 'a=end-of-candidates', '',
].join('\r\n');

test('loopback candidates and SDP filtering equal Python\'s', async () => {
  const python = await runPython(PYTHON, { candidates: CANDIDATES, sdp: SDP });
  assert.deepEqual(CANDIDATES.map(isLoopbackCandidate), python.loopback);
  assert.deepEqual(python.loopback, [true, false, true, false, true, false, true, true, false]);
  assert.equal(filterSdp(SDP), python.sdp);
  assert.ok(!filterSdp(SDP).includes('192.168.1.20') && filterSdp(SDP).includes('a=end-of-candidates'));
});

test('the verification code refuses what is not bytes', async () => {
  await assert.rejects(verificationCode('not bytes'), TypeError);
});

test('loopback mode: from a loopback host, or as the query string says', () => {
  const at = (hostname, search = '') => loopbackMode({ hostname, search });
  assert.equal(at('127.0.0.1'), true);
  assert.equal(at('localhost'), true);
  assert.equal(at('[::1]'), true);
  assert.equal(at('call.example.org'), false);
  assert.equal(at('call.example.org', '?loopback=1'), true);
  assert.equal(at('127.0.0.1', '?room=a&loopback=0'), false);
});

test('identities of credentials and KeyPackages; garbage gives null', async () => {
  const mls = new MLS(new MemoryStore());
  const clientId = await mls.generateIdentity();
  const credential = await mls.generateCredential('carla');
  const keyPackage = await mls.generateKeyPackage(clientId, credential);
  assert.equal(credentialIdentity(credential.content), 'carla');
  assert.equal(keyPackageIdentity(keyPackage.content), 'carla');
  assert.equal(credentialIdentity(new Uint8Array([0, 1, 0xff])), null);
  assert.equal(keyPackageIdentity(keyPackage.content.subarray(0, 40)), null);
  assert.equal(keyPackageIdentity(credential.content), null);
});

test('stream indicator: green on decrypted frames, amber on unknown keys, red on failures for a while', () => {
  const counters = (decrypted, { keyID = 0, authentication = 0, syntax = 0, replay = 0 } = {}) => ({
    decrypted, failures: { keyID, authentication, syntax, replay },
  });
  assert.equal(streamState(undefined, undefined, null, 0).state, 'idle');
  assert.equal(streamState(undefined, counters(0, { keyID: 5 }), null, 0).state, 'wait');
  assert.equal(streamState(counters(0, { keyID: 5 }), counters(10, { keyID: 5 }), null, 500).state, 'ok');
  const failed = streamState(counters(10), counters(12, { authentication: 1 }), null, 1000);
  assert.deepEqual(failed, { state: 'bad', lastFailureAt: 1000 });
  // red holds for a while after the last failure, even while other frames decrypt
  assert.equal(streamState(counters(12, { authentication: 1 }), counters(20, { authentication: 1 }), 1000, 3500).state, 'bad');
  assert.equal(streamState(counters(20, { authentication: 1 }), counters(30, { authentication: 1 }), 1000, 4500).state, 'ok');
  assert.equal(streamState(counters(30), counters(30, { syntax: 1 }), null, 5000).state, 'bad');
  assert.equal(streamState(counters(30), counters(30), null, 5000).state, 'idle');
});
