/**
 * MLSGroupView.addMany (Python's add_many: several Adds in one commit, one
 * Welcome), hasPendingCommit and discardPendingCommit.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MLSError } from '../mls/errors.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';

async function client(name) {
  const mls = new MLS(new MemoryStore());
  const clientId = (await mls.generateIdentity()).content;
  const credential = (await mls.generateCredential(name)).content;
  return { mls, clientId, credential };
}

test('addMany commits every Add at once and one Welcome lets each join', async () => {
  const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map(client));
  const group = await alice.mls.groupCreate(alice.clientId, alice.credential);
  const packages = [];
  for (const c of [bob, carol]) packages.push((await c.mls.generateKeyPackage(c.clientId, c.credential)).content);
  const output = await group.addMany(packages);
  assert.equal(await group.hasPendingCommit(), true);
  assert.ok(output.welcome instanceof Uint8Array);
  const received = await group.receive(output.commit);
  assert.equal(received.own, true);
  assert.equal(received.epoch, 1n);
  assert.equal(await group.hasPendingCommit(), false);
  const details = await group.details();
  assert.deepEqual(details.members.map((m) => m.leafIndex), [0, 1, 2]);
  const secret = (await group.exportSecret('SFrame 1.0 Base Key', '', 16)).secret;
  for (const c of [bob, carol]) {
    const joined = await c.mls.groupJoin(c.clientId, output.welcome);
    assert.equal(joined.epoch, 1n);
    assert.deepEqual((await joined.exportSecret('SFrame 1.0 Base Key', '', 16)).secret, secret);
  }
});

test('addMany refuses an empty list and bad KeyPackages without changing state', async () => {
  const alice = await client('alice');
  const group = await alice.mls.groupCreate(alice.clientId, alice.credential);
  await assert.rejects(group.addMany([]), (err) => err instanceof MLSError && err.code === 'invalidArgument');
  await assert.rejects(group.addMany([new Uint8Array([1, 2, 3])]), (err) => err instanceof MLSError);
  assert.equal(await group.hasPendingCommit(), false);
  assert.equal(group.epoch, 0n);
});

test('discardPendingCommit drops the pending commit: the group stays and can commit again', async () => {
  const [alice, bob] = await Promise.all(['alice', 'bob'].map(client));
  const group = await alice.mls.groupCreate(alice.clientId, alice.credential);
  const keyPackage = (await bob.mls.generateKeyPackage(bob.clientId, bob.credential)).content;
  await group.add(keyPackage);
  await assert.rejects(group.update(), (err) => err instanceof MLSError && err.code === 'commitPending');
  await group.discardPendingCommit();
  assert.equal(await group.hasPendingCommit(), false);
  assert.equal(group.epoch, 0n);
  await group.discardPendingCommit(); // nothing pending: nothing to do, as Python's
  const output = await group.addMany([keyPackage]);
  await group.applyPendingCommit();
  assert.equal(group.epoch, 1n);
  assert.equal((await bob.mls.groupJoin(bob.clientId, output.welcome)).epoch, 1n);
});
