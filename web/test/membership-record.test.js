/**
 * The membership machine's persisted client record (web/app/membership.js,
 * docs/membership.md "The persisted client record"): in the page's
 * IndexedDB store (fake-indexeddb here), a machine created again after a
 * reload reuses its signature key and remembers the keys it has seen (trust
 * on first use), so a participant coming back with another key raises
 * key_changed; the record is the same JSON as Python's ClientRecord.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IDBFactory } from 'fake-indexeddb';

import { runPython } from './python.js';
import { Membership, RECORD_NAMESPACE } from '../app/membership.js';
import { toHex } from '../mls/bytes.js';
import { MLS } from '../mls/mls.js';
import { IndexedDBStore } from '../mls/store.js';

async function keyPackageOf(name) {
  const mls = new MLS(new IndexedDBStore({ name: `peer-${name}-${Math.random()}`, indexedDB: new IDBFactory() }));
  const clientId = (await mls.generateIdentity()).content;
  const credential = (await mls.generateCredential(name)).content;
  return { clientId, keyPackage: (await mls.generateKeyPackage(clientId, credential)).content };
}

/** alice alone with bob: creates the group and adds `bob` (a KeyPackage); the actions of the add's acceptance. */
async function aliceAddsBob(machine, bob) {
  const [create] = await machine.handle({ type: 'room_joined', identity: 'alice', present: ['bob'], groupId: null, epoch: null });
  assert.equal(create.type, 'create_group');
  const claim = (await machine.handle({ type: 'request_accepted', request: create.request, epoch: 0 }))
    .find((a) => a.type === 'claim_key_packages');
  const submit = (await machine.handle({ type: 'key_packages_claimed', request: claim.request, keyPackages: [['bob', [bob.keyPackage]]] }))
    .find((a) => a.type === 'submit_commit');
  return machine.handle({ type: 'request_accepted', request: submit.request, epoch: 1 });
}

const PYTHON = String.raw`
import json, sys
from media.membership import ClientRecord
record = ClientRecord.decode(json.load(sys.stdin).encode())
print(json.dumps({"identity": record.identity, "client_id": record.client_id.hex(),
                  "known_keys": record.known_keys, "encoded": record.encode().decode()}))
`;

test('a reloaded page keeps its signature key and the keys it has seen; a changed key is a warning', async () => {
  const factory = new IDBFactory();
  const open = () => new IndexedDBStore({ name: 'page', indexedDB: factory });
  const bob = await keyPackageOf('bob');

  const store = open();
  const first = new Membership(new MLS(store), { store });
  const installed = await aliceAddsBob(first, bob);
  assert.ok(installed.some((a) => a.type === 'install_epoch' && a.members.join() === 'alice,bob'));
  assert.ok(!installed.some((a) => a.type === 'trust_warning'));
  const ownClientId = toHex(first.record.clientId);
  await store.close();

  // the page is reloaded (a new IndexedDB connection); the room was started afresh
  const reopened = open();
  const second = new Membership(new MLS(reopened), { store: reopened });
  const restarted = await keyPackageOf('bob'); // bob comes back with another signature key
  const actions = await aliceAddsBob(second, restarted);
  assert.equal(toHex(second.record.clientId), ownClientId);
  const warning = actions.find((a) => a.type === 'trust_warning');
  assert.deepEqual({ kind: warning.kind, identity: warning.identity, leafIndex: warning.leafIndex },
    { kind: 'key_changed', identity: 'bob', leafIndex: 1 });
  assert.deepEqual(actions.find((a) => a.type === 'install_epoch').blockedSenders, [1]);
  assert.deepEqual([...second.members().keys()].sort(), ['alice', 'bob']);

  const accepted = await second.handle({ type: 'key_accepted', identity: 'bob' });
  assert.deepEqual(accepted.map((a) => [a.type, a.blockedSenders]), [['media_trust', []]]);
  const stored = await reopened.get(`${RECORD_NAMESPACE}/alice`);
  const python = await runPython(PYTHON, stored);
  assert.equal(python.encoded, stored); // byte for byte what Python writes
  assert.deepEqual(python.known_keys, { alice: ownClientId, bob: toHex(restarted.clientId) });
});

test('a page reloaded with a commit of its own still pending drops it when the room is at that epoch', async () => {
  const factory = new IDBFactory();
  const open = () => new IndexedDBStore({ name: 'page', indexedDB: factory });
  const store = open();
  const first = new Membership(new MLS(store), { store });
  await aliceAddsBob(first, await keyPackageOf('bob'));
  const [update] = await first.handle({ type: 'self_update_wanted' });
  assert.deepEqual([update.type, update.purpose, update.epoch], ['submit_commit', 'update', 1]);
  assert.equal(await first.group.hasPendingCommit(), true);
  const groupId = first.group.groupId;
  await store.close(); // reloaded before the answer came

  const reopened = open();
  const second = new Membership(new MLS(reopened), { store: reopened });
  const actions = await second.handle({ type: 'room_joined', identity: 'alice', present: ['bob'], groupId, epoch: 1 });
  const install = actions.find((a) => a.type === 'install_epoch');
  assert.deepEqual([install.epoch, install.cause, install.members], [1, 'welcome', ['alice', 'bob']]);
  assert.equal(await second.group.hasPendingCommit(), false);
  const chat = await second.handle({ type: 'send_chat', text: 'back' });
  assert.deepEqual(chat.map((a) => [a.type, a.epoch]), [['send_application', 1]]);
});

test('the queries clientId and keyPackagesPublished', async () => {
  const factory = new IDBFactory();
  const store = new IndexedDBStore({ name: 'page', indexedDB: factory });
  const machine = new Membership(new MLS(store), { store, config: { keyPackageInterval: 1.0 } });
  assert.deepEqual(machine.clientId, new Uint8Array(0)); // before joining
  assert.equal(machine.keyPackagesPublished, 0);
  const joined = await machine.handle({ type: 'room_joined', identity: 'bob', present: ['alice'], groupId: new Uint8Array([7]), epoch: 3 });
  assert.deepEqual(joined.map((a) => a.type), ['publish_key_package']);
  assert.equal(machine.clientId.length > 0, true);
  assert.deepEqual(machine.clientId, machine.record.clientId);
  assert.equal(machine.keyPackagesPublished, 1);
  await machine.handle({ type: 'tick', now: 0.5 }); // before key_package_interval: none
  assert.equal(machine.keyPackagesPublished, 1);
  const ticked = await machine.handle({ type: 'tick', now: 1.0 });
  assert.equal(ticked.filter((a) => a.type === 'publish_key_package').length, 1);
  assert.equal(machine.keyPackagesPublished, 2);
});
