/**
 * Call (web/app/call.js) and the server's `group_reset` event
 * (docs/protocol.md, abandoned rooms): a newcomer waiting to be added to a
 * group none of whose members is left starts afresh when the server drops
 * that group: the smallest identity present creates the new group, the
 * others publish a fresh KeyPackage for it.
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeWorker } from './fake-webrtc.js';
import { Call } from '../app/call.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';
import { SFrameMLSSession } from '../sframe-transform.js';

const OLD_GROUP = new Uint8Array([1, 2, 3]);

/** The signaling client's part a waiting newcomer uses; records KeyPackages published. */
class FakeSignalingClient {
  constructor(identity) {
    this.identity = identity;
    this.onevent = null;
    this.published = [];
  }

  async connect() {
    return { identity: this.identity, group_id: OLD_GROUP, epoch: 4, members: [] };
  }

  async publishKeyPackages(keyPackages) {
    this.published.push(...keyPackages);
    return { stored: keyPackages.length, available: this.published.length };
  }

  async createGroup(groupId, epoch, groupInfo) {
    this.created = { groupId, epoch, groupInfo };
    return { epoch };
  }

  async leave() {}
}

const calls = [];
after(async () => { for (const call of calls) await call.stop(); });

async function waitingCall(identity) {
  const call = new Call({
    wsUrl: 'ws://127.0.0.1:9/ws', room: 'reset', token: 'unused', stream: null,
    mls: new MLS(new MemoryStore()), session: new SFrameMLSSession({ worker: new FakeWorker() }),
  });
  call.client = new FakeSignalingClient(identity);
  calls.push(call);
  await call.start();
  return call;
}

async function until(predicate) {
  for (let i = 0; i < 500 && !predicate(); i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(predicate(), 'condition not reached');
}

test('a lone newcomer waiting for an abandoned group creates the new one on group_reset', async () => {
  const call = await waitingCall('bob');
  assert.equal(call.group, null);
  assert.deepEqual(call.roomGroup, OLD_GROUP);
  assert.equal(call.client.published.length, 1); // to be added to the old group
  call.client.onevent({ type: 'group_reset' });
  await until(() => call.group !== null);
  assert.equal(call.group.epoch, 0n);
  // the new group is registered with the server: its GroupInfo (an MLSMessage, wire format 4)
  assert.deepEqual(call.roomGroup, call.group.groupId);
  assert.deepEqual(call.client.created.groupId, call.group.groupId);
  assert.equal(call.client.created.epoch, 0);
  assert.deepEqual([...call.client.created.groupInfo.subarray(0, 4)], [0, 1, 0, 4]);
});

test('on group_reset a newcomer that is not the smallest identity present publishes a fresh KeyPackage', async () => {
  const call = await waitingCall('dave');
  call.present.add('carol'); // carol creates the new group and adds dave
  call.client.onevent({ type: 'group_reset' });
  await until(() => call.client.published.length === 2);
  assert.equal(call.group, null);
  assert.equal(call.roomGroup, null);
});
