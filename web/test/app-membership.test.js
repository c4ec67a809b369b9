/**
 * Call (web/app/call.js) as the driver of the membership machine
 * (web/app/membership.js): a scripted member (bob, JS MLS) adds the page's
 * participant (zoe) through a fake signaling client; the page shows chat by
 * its MLS-authenticated sender, raises trust warnings for a forged sender
 * and a ghost leaf, and after the signaling connection drops rejoins with
 * its log cursor (`since`) and stays in its group, or ends the call when
 * the server answers log_truncated.
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeWorker } from './fake-webrtc.js';
import { Call } from '../app/call.js';
import { ErrorCode, SignalingError } from '../app/signaling.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';
import { SFrameMLSSession } from '../sframe-transform.js';

/** Enough of RTCPeerConnection for a link that never negotiates (zoe answers, bob never offers here). */
globalThis.RTCPeerConnection ??= class {
  constructor() {
    this.localDescription = null;
    this.remoteDescription = null;
    this.connectionState = 'new';
  }

  close() {
    this.connectionState = 'closed';
  }
};

/** A scripted participant with its own MLS client. */
async function member(name) {
  const mls = new MLS(new MemoryStore());
  const clientId = (await mls.generateIdentity()).content;
  const credential = (await mls.generateCredential(name)).content;
  return { name, mls, clientId, credential, group: null };
}

/** The signaling client's part the page uses; a scripted room whose group bob created. */
class FakeSignalingClient {
  constructor(room) {
    this.room = room;
    this.onevent = null;
    this.connected = false;
    this.published = [];
    this.joins = [];
    /** what the next connect() does: 'ok', or a SignalingError code to throw */
    this.outcomes = [];
    this.lastSeq = 0;
  }

  async connect(catchUp = {}) {
    this.joins.push(catchUp);
    const outcome = this.outcomes.shift() ?? 'ok';
    if (outcome !== 'ok') throw new SignalingError(outcome, `join refused: ${outcome}`);
    this.connected = true;
    return { identity: 'zoe', members: ['bob'], group_id: this.room.groupId, epoch: this.room.epoch };
  }

  async publishKeyPackages(keyPackages) {
    this.published.push(...keyPackages);
    return { stored: keyPackages.length };
  }

  async signal() {}

  async leave() {
    this.connected = false;
  }

  close() {
    this.drop();
  }

  /** The connection ends (a server restart). */
  drop() {
    this.connected = false;
    this.onevent({ type: 'closed', code: 1006 });
  }

  deliver(event) {
    if (typeof event.seq === 'number') this.lastSeq = Math.max(this.lastSeq, event.seq);
    this.onevent(event);
  }
}

const calls = [];
after(async () => { for (const call of calls) await call.stop(); });

async function until(predicate, what) {
  for (let i = 0; i < 500 && !predicate(); i += 1) await new Promise((resolve) => { setTimeout(resolve, 10); });
  assert.ok(predicate(), `not reached: ${what}`);
}

/** bob's room with zoe's page added to the group (epoch 1); seq counts the log. */
async function zoeInBobsGroup() {
  const bob = await member('bob');
  bob.group = await bob.mls.groupCreate(bob.clientId, bob.credential);
  const room = { groupId: bob.group.groupId, epoch: 0, seq: 0 };
  const client = new FakeSignalingClient(room);
  const call = new Call({
    wsUrl: 'ws://127.0.0.1:9/ws', room: 'membership', token: 'unused', stream: null,
    options: { reconnectTimeout: 5 },
    mls: new MLS(new MemoryStore()), session: new SFrameMLSSession({ worker: new FakeWorker() }),
  });
  call.client = client;
  calls.push(call);
  await call.start();
  assert.equal(client.published.length, 1); // waiting to be added
  const output = await bob.group.add(client.published.at(-1));
  await bob.group.applyPendingCommit();
  const commit = { type: 'commit', seq: ++room.seq, from: 'bob', group_id: room.groupId, epoch: room.epoch, commit: output.commit };
  room.epoch += 1;
  client.deliver(commit);
  client.deliver({ type: 'welcome', seq: ++room.seq, from: 'bob', group_id: room.groupId, epoch: room.epoch, welcome: output.welcome });
  await until(() => call.verification !== null, 'zoe joined from the Welcome, its epoch installed');
  assert.deepEqual([...call.members.keys()].sort(), ['bob', 'zoe']);
  return { bob, room, client, call };
}

test('chat shows the MLS-authenticated sender; a forged one and a ghost leaf are trust warnings', async () => {
  const { bob, room, client, call } = await zoeInBobsGroup();
  const status = await call.status();
  assert.equal(status.epoch, 1);
  assert.deepEqual(status.epochs.map((e) => e.cause), ['welcome']);
  assert.equal(status.verification.length > 0, true);

  const hello = (await bob.group.send('hello')).content;
  client.deliver({ type: 'application', seq: ++room.seq, from: 'mallory', epoch: room.epoch, ciphertext: hello });
  await until(() => call.messages.length === 1, 'the chat message shown');
  assert.deepEqual({ from: call.messages[0].from, text: call.messages[0].text, leafIndex: call.messages[0].leafIndex },
    { from: 'bob', text: 'hello', leafIndex: 0 });
  assert.deepEqual(call.warnings.map((w) => [w.kind, w.identity, w.leafIndex]), [['sender_mismatch', 'bob', 0]]);

  // bob's commit gives bob a second leaf (another client of the same identity): a ghost
  const ghost = await member('bob');
  const output = await bob.group.add((await ghost.mls.generateKeyPackage(ghost.clientId, ghost.credential)).content);
  await bob.group.applyPendingCommit();
  client.deliver({ type: 'commit', seq: ++room.seq, from: 'bob', group_id: room.groupId, epoch: room.epoch, commit: output.commit });
  room.epoch += 1;
  await until(() => call.warnings.length === 2, 'the ghost leaf warned about');
  assert.deepEqual(call.warnings.map((w) => [w.kind, w.identity, w.leafIndex])[1], ['duplicate_identity', 'bob', 2]);
  const view = await call.status();
  assert.equal(view.epoch, 2);
  assert.deepEqual(view.members, ['bob', 'zoe']);
  assert.deepEqual(view.blockedSenders, [2]);
  assert.deepEqual(view.leaves.map((l) => l.flag), ['', '', 'duplicate_identity']);
  assert.equal(call.trusted('bob'), true); // a ghost is not shown; bob's own leaf keeps its media
});

test('after the connection drops the page rejoins with its log cursor and stays in its group', async () => {
  const { bob, room, client, call } = await zoeInBobsGroup();
  const before = await call.status();
  client.outcomes.push(ErrorCode.CLOSED); // the server is still down on the first attempt
  client.drop();
  await until(() => call.reconnects === 1, 'rejoined');
  assert.deepEqual(client.joins.slice(1), [{ since: room.seq }, { since: room.seq }]);
  assert.equal(call.ended, false);
  // the log goes on after the restart: the page follows bob's next commit
  const output = await bob.group.update();
  await bob.group.applyPendingCommit();
  client.deliver({ type: 'commit', seq: ++room.seq, from: 'bob', group_id: room.groupId, epoch: room.epoch, commit: output.commit });
  await until(() => call.epochs.length === 2, 'the commit after the rejoin processed, its epoch installed');
  const view = await call.status();
  assert.equal(view.groupId, before.groupId);
  assert.deepEqual(view.members, ['bob', 'zoe']);
  assert.deepEqual(view.epochs.map((e) => e.cause), ['welcome', 'commit']);
});

test('a rejoin refused with log_truncated ends the call', async () => {
  const { client, call } = await zoeInBobsGroup();
  client.outcomes.push(ErrorCode.LOG_TRUNCATED);
  client.drop();
  await until(() => call.ended, 'the call ended');
  assert.equal(call.endReason, 'log_truncated');
  assert.equal(call.reconnects, 0);
});
