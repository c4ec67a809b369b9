/**
 * Call#send (web/app/call.js): an MLS application message goes out with the
 * epoch of the state that encrypted it, read from its PrivateMessage header
 * (RFC 9420 §6.3.1), even when the group view has moved to a later epoch by
 * the time the envelope is written. The envelope is checked against the
 * server's MLS header cross-check (signaling.mls_header, in Python).
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeWorker } from './fake-webrtc.js';
import { runPython } from './python.js';
import { Call, privateMessageEpoch } from '../app/call.js';
import { MLSError } from '../mls/errors.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';
import { toHex } from '../sframe/bytes.js';
import { SFrameMLSSession } from '../sframe-transform.js';

const CROSS_CHECK = String.raw`
import json, sys
from mls.inspection import ContentType
from signaling.errors import SignalingError
from signaling.mls_header import check_mls_header
out = []
for item in json.load(sys.stdin):
    try:
        check_mls_header(bytes.fromhex(item["ciphertext"]), "ciphertext", ContentType.APPLICATION, item["epoch"])
        out.append("accepted")
    except SignalingError as err:
        out.append(err.message)
print(json.dumps(out))
`;

/** The signaling client's part a lone first participant uses; records application envelopes. */
class FakeSignalingClient {
  constructor() {
    this.onevent = null;
    this.connected = true;
    this.applications = [];
  }

  async connect() {
    return { identity: 'alice', group_id: null, members: [] };
  }

  async sendApplication(epoch, ciphertext) {
    this.applications.push({ epoch, ciphertext });
    return this.applications.length;
  }

  async createGroup(groupId, epoch) {
    return { epoch };
  }

  async leave() {
    this.connected = false;
  }
}

const calls = [];
after(async () => { for (const call of calls) await call.stop(); });

async function startedCall() {
  const call = new Call({
    wsUrl: 'ws://127.0.0.1:9/ws', room: 'send', token: 'unused', stream: null,
    mls: new MLS(new MemoryStore()), session: new SFrameMLSSession({ worker: new FakeWorker() }),
  });
  call.client = new FakeSignalingClient();
  calls.push(call);
  await call.start();
  return call;
}

test('an application message carries the epoch it was encrypted in, not the view\'s later one', async () => {
  const call = await startedCall();
  const { group } = call;
  assert.equal(group.epoch, 0n);
  const send = group.send.bind(group);
  // a commit of this member is applied between encrypting and writing the envelope
  group.send = async (message) => {
    const out = await send(message);
    await group.update();
    await group.applyPendingCommit();
    return out;
  };
  await call.sendMessage('hello at epoch 0');
  assert.equal(group.epoch, 1n);
  delete group.send;
  await call.sendMessage('hello at epoch 1');

  const [early, late] = call.client.applications;
  assert.equal(early.epoch, 0);
  assert.equal(late.epoch, 1);
  assert.equal(privateMessageEpoch(early.ciphertext), 0);
  assert.deepEqual(call.messages.map((m) => m.text), ['hello at epoch 0', 'hello at epoch 1']);

  const verdicts = await runPython(CROSS_CHECK, [
    { ciphertext: toHex(early.ciphertext), epoch: early.epoch },
    { ciphertext: toHex(late.ciphertext), epoch: late.epoch },
    { ciphertext: toHex(early.ciphertext), epoch: Number(group.epoch) }, // what reading the view gave
  ]);
  assert.deepEqual(verdicts.slice(0, 2), ['accepted', 'accepted']);
  assert.match(verdicts[2], /the MLS header is for epoch 0, the envelope says 1/);
});

test('privateMessageEpoch refuses what is not a PrivateMessage', async () => {
  const mls = new MLS(new MemoryStore());
  const clientId = await mls.generateIdentity();
  const credential = await mls.generateCredential('dora');
  const keyPackage = await mls.generateKeyPackage(clientId, credential);
  assert.throws(() => privateMessageEpoch(keyPackage.content), MLSError);
  assert.throws(() => privateMessageEpoch(new Uint8Array([0, 1, 0, 2])), MLSError);
  const group = await mls.groupCreate(clientId, credential);
  const message = await group.send('x');
  assert.equal(privateMessageEpoch(message.content), 0);
  const commit = await group.update(); // a PublicMessage
  assert.throws(() => privateMessageEpoch(commit.commit), MLSError);
});
