/**
 * The MLS Web API (web/mls) in JavaScript only: three members, each with its
 * own MLS object and store, through the whole life of a group; then errors,
 * persistence (memory and IndexedDB stores), and the SFrame key manager fed
 * from exportSecret.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { IDBFactory } from 'fake-indexeddb';
import { decodeMlsMessage } from 'ts-mls';

import {
  IndexedDBStore, KEY_PACKAGE_BACKDATE_SECONDS, MLS, MLSError, MemoryStore,
} from '../mls/index.js';
import { MLSKeyManager } from '../sframe/mlskeys.js';

const text = new TextDecoder();
const EMPTY = new Uint8Array(0);
const SFRAME_LABEL = 'SFrame 1.0 Base Key';

const hex = (bytes) => Buffer.from(bytes).toString('hex');

/** A member: own MLS object and store (one browser each), identity, credential. */
async function member(name, store = new MemoryStore()) {
  const mls = new MLS(store);
  const id = await mls.generateIdentity();
  const cred = await mls.generateCredential(name);
  return { name, mls, store, id, cred };
}

/** Delivers a commit to every view, as the delivery service fans it out (the committer included). */
async function deliver(commit, views) {
  return Promise.all(views.map((v) => v.receive(commit)));
}

async function exporter(view) {
  return hex((await view.exportSecret(SFRAME_LABEL, EMPTY, 16)).secret);
}

async function assertAgree(views) {
  const epochs = new Set(views.map((v) => v.epoch));
  assert.equal(epochs.size, 1, 'all members at one epoch');
  const secrets = new Set(await Promise.all(views.map(exporter)));
  assert.equal(secrets.size, 1, 'exporter equal across members');
  const auths = new Set(await Promise.all(views.map(async (v) => hex(await v.epochAuthenticator()))));
  assert.equal(auths.size, 1, 'epoch authenticator equal across members');
  const rosters = await Promise.all(views.map(async (v) => (await v.details()).members.map((m) => hex(m.clientId)).sort().join()));
  assert.equal(new Set(rosters).size, 1, 'same membership');
}

function decode(bytes) {
  const [message, end] = decodeMlsMessage(bytes, 0);
  assert.equal(end, bytes.length);
  return message;
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => err instanceof MLSError && err.code === code);
}

describe('MLS Web API: three members', () => {
  test('create, add, join, messages, remove, self-update, persistence, deleteState', async () => {
    const alice = await member('alice');
    const bob = await member('bob');
    const carol = await member('carol');

    // Bob creates the group and adds Alice
    const gb = await bob.mls.groupCreate(bob.id, bob.cred);
    assert.equal(gb.epoch, 0n);
    const akp = await alice.mls.generateKeyPackage(alice.id, alice.cred);
    assert.equal(akp.type, 'key-package');
    const co1 = await gb.add(akp);
    assert.equal(co1.type, 'commit-output');
    assert.equal(decode(co1.commit).wireformat, 'mls_public_message', 'commits travel as PublicMessage');
    assert.equal(decode(co1.welcome).wireformat, 'mls_welcome');
    assert.equal(decode(co1.groupInfo).wireformat, 'mls_group_info');
    assert.equal(gb.epoch, 0n, 'a commit waits to be received back');
    const r1 = await gb.receive(co1.commit);
    assert.equal(r1.type, 'commit-processed');
    assert.equal(r1.epoch, 1n);
    assert.deepEqual(r1.groupEpoch, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1]));

    // Alice joins from the Welcome alone: the ratchet tree travels inside it
    const ga = await alice.mls.groupJoin(alice.id, co1.welcome);
    assert.deepEqual(ga.groupId, gb.groupId);
    assert.equal(ga.epoch, 1n);
    await assertAgree([ga, gb]);

    const m1 = await gb.send('Hello Alice!');
    assert.equal(m1.type, 'application-message-ciphertext');
    assert.equal(decode(m1.content).wireformat, 'mls_private_message');
    const p1 = await ga.receive(m1);
    assert.equal(p1.type, 'application-message-plaintext');
    assert.equal(text.decode(p1.content), 'Hello Alice!');

    // Alice adds Carol; everyone processes the commit
    const co2 = await ga.add(await carol.mls.generateKeyPackage(carol.id, carol.cred));
    await deliver(co2.commit, [ga, gb]);
    const gc = await carol.mls.groupJoin(carol.id, co2.welcome);
    await assertAgree([ga, gb, gc]);
    assert.equal((await gc.details()).members.length, 3);

    const m2 = await gc.send(new TextEncoder().encode('Hi all'));
    assert.equal(text.decode((await ga.receive(m2.content)).content), 'Hi all');
    assert.equal(text.decode((await gb.receive(m2.content)).content), 'Hi all');
    const m3 = await ga.send('from alice');
    assert.equal(text.decode((await gc.receive(m3)).content), 'from alice');

    // self-update by Bob moves everyone to a new epoch with a new exporter
    const before = await exporter(ga);
    const up = await gb.update();
    assert.equal(up.welcome, null);
    await deliver(up.commit, [ga, gb, gc]);
    await assertAgree([ga, gb, gc]);
    assert.notEqual(await exporter(ga), before);

    // the state survives a fresh MLS object on the same store
    const bobAgain = new MLS(bob.store);
    const gb2 = await bobAgain.groupGet(gb.groupId, bob.id);
    assert.ok(gb2 !== null);
    assert.equal(gb2.epoch, gb.epoch);
    assert.equal(await exporter(gb2), await exporter(ga));
    const m4 = await gb2.send('after reload');
    assert.equal(text.decode((await gc.receive(m4)).content), 'after reload');

    // Carol removes Bob
    const co3 = await gc.remove(bob.id);
    const [ra, rb, rc] = await deliver(co3.commit, [ga, gb2, gc]);
    assert.equal(ra.removed, false);
    assert.equal(rb.removed, true, 'Bob learns he was removed');
    assert.equal(rc.epoch, ra.epoch);
    await assertAgree([ga, gc]);
    assert.notEqual(await exporter(ga), await exporter(gb2), 'the removed member has no key of the new epoch');
    const members = (await ga.details()).members.map((m) => hex(m.clientId));
    assert.ok(!members.includes(hex(bob.id.content)));
    await rejectsWith(gb2.send('still here?'), 'groupInactive');

    // deleteState of a view, then of the whole store
    await gb2.deleteState();
    assert.equal(await bobAgain.groupGet(gb.groupId, bob.id), null);
    await alice.mls.deleteState();
    assert.equal(await alice.mls.groupGet(ga.groupId, alice.id), null);
    await rejectsWith(alice.mls.generateKeyPackage(alice.id, alice.cred), 'unknownIdentity');
  });

  test('explainer flow: proposals answered with commits, proposeAdd, close', async () => {
    // one MLS object for everyone, as in the explainer's examples
    const mls = new MLS(new MemoryStore());
    const id = async (name) => ({ id: await mls.generateIdentity(), cred: await mls.generateCredential(name) });
    const a = await id('alice');
    const b = await id('bob');
    const c = await id('charlie');
    const gb = await mls.groupCreate(b.id, b.cred, 'call-42');
    assert.equal(text.decode(gb.groupId), 'call-42');
    const co1 = await gb.add(await mls.generateKeyPackage(a.id, a.cred));
    await gb.receive(co1.commit);
    const ga = await mls.groupJoin(a.id, co1.welcome);
    const co2 = await ga.add(await mls.generateKeyPackage(c.id, c.cred));
    await deliver(co2.commit, [ga, gb]);
    const gc = await mls.groupJoin(c.id, co2.welcome);

    // Alice proposes to leave; Charlie answers with a commit
    const p4 = await ga.proposeRemove(a.id);
    assert.equal(p4.type, 'proposal');
    assert.equal(decode(p4.content).wireformat, 'mls_public_message');
    const own = await ga.receive(p4);
    assert.equal(own.type, 'proposal', 'nobody commits their own removal');
    const co4 = await gc.receive(p4);
    assert.equal(co4.type, 'commit-output');
    const rb = await gb.receive(p4);
    assert.equal(rb.type, 'commit-output', 'Bob too offers a commit; the delivery service keeps one');
    assert.equal(rb.sender.leafIndex, 1, 'the authenticated proposer: Alice');
    assert.deepEqual(rb.sender.clientId, a.id.content);
    // the delivery service sequences Charlie's commit; Bob's is dropped
    const [ra4, rb4, rc4] = await deliver(co4.commitOutput.commit, [ga, gb, gc]);
    assert.equal(ra4.removed, true);
    assert.equal(rb4.removed, false);
    assert.equal(rc4.epoch, 3n);
    await assertAgree([gb, gc]);
    await rejectsWith(gb.receive(rb.commitOutput.commit), 'staleCommit');

    // Delphine joins through a proposal of Bob, committed by Charlie
    const d = await id('delphine');
    const p5 = await gb.proposeAdd(await mls.generateKeyPackage(d.id, d.cred));
    const r5 = await gc.receive(p5);
    assert.equal(r5.type, 'commit-output');
    assert.ok(r5.commitOutput.welcome instanceof Uint8Array);
    assert.equal((await gb.receive(p5)).own, true);
    await deliver(r5.commitOutput.commit, [gb, gc]);
    const gd = await mls.groupJoin(d.id, r5.commitOutput.welcome);
    await assertAgree([gb, gc, gd]);
    const details = await gd.details();
    assert.equal(details.members.length, 3);
    assert.deepEqual(details.groupEpoch, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 4]));

    // Charlie closes the group: everyone else removed
    const co6 = await gc.close();
    const results = await deliver(co6.commit, [gb, gc, gd]);
    assert.deepEqual(results.map((r) => r.removed), [true, false, true]);
    assert.deepEqual((await gc.details()).members.map((m) => hex(m.clientId)), [hex(c.id.content)]);
  });

  test('applyPendingCommit, and a competing commit winning over a pending one', async () => {
    const alice = await member('alice');
    const bob = await member('bob');
    const ga = await alice.mls.groupCreate(alice.id, alice.cred);
    await rejectsWith(ga.applyPendingCommit(), 'noPendingCommit');
    const co1 = await ga.add(await bob.mls.generateKeyPackage(bob.id, bob.cred));
    const applied = await ga.applyPendingCommit();
    assert.equal(applied.type, 'commit-processed');
    assert.equal(ga.epoch, 1n);
    const gb = await bob.mls.groupJoin(bob.id, co1.welcome);
    await assertAgree([ga, gb]);

    // both commit in epoch 1; the delivery service sequences Bob's
    const coA = await ga.update();
    const coB = await gb.update();
    await deliver(coB.commit, [ga, gb]);
    await assertAgree([ga, gb]);
    assert.equal(ga.epoch, 2n);
    await rejectsWith(ga.receive(coA.commit), 'staleCommit');
    await rejectsWith(ga.applyPendingCommit(), 'noPendingCommit');

    // an old-epoch application message still decrypts after a commit
    const late = await ga.send('sent in epoch 2');
    const co3 = await ga.commit();
    await deliver(co3.commit, [ga, gb]);
    assert.equal(text.decode((await gb.receive(late)).content), 'sent in epoch 2');
  });
});

describe('MLS Web API: wire format and keys', () => {
  test('KeyPackage: suite 1, basic credential, lifetime from an hour ago', async () => {
    const alice = await member('alice');
    const kp = decode((await alice.mls.generateKeyPackage(alice.id, alice.cred)).content);
    assert.equal(kp.wireformat, 'mls_key_package');
    const { keyPackage } = kp;
    assert.equal(keyPackage.cipherSuite, 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519');
    assert.equal(keyPackage.leafNode.credential.credentialType, 'basic');
    assert.equal(text.decode(keyPackage.leafNode.credential.identity), 'alice');
    const now = BigInt(Math.floor(Date.now() / 1000));
    const { notBefore, notAfter } = keyPackage.leafNode.lifetime;
    assert.ok(notBefore <= now - KEY_PACKAGE_BACKDATE_SECONDS + 5n && notBefore >= now - KEY_PACKAGE_BACKDATE_SECONDS - 5n);
    assert.ok(notAfter > now);
  });

  test('the signature key is a non-extractable CryptoKey, named by a hash of the public key', async () => {
    const store = new MemoryStore();
    const mls = new MLS(store);
    const id = await mls.generateIdentity();
    assert.equal(id.type, 'client-identifier');
    assert.equal(id.content.length, 32);
    const record = await store.get(`identity/${hex(id.content)}`);
    assert.ok(record.privateKey instanceof CryptoKey);
    assert.equal(record.privateKey.extractable, false);
    assert.equal(record.privateKey.type, 'private');
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', record.publicKey));
    assert.deepEqual(digest, id.content);
    const cred = await mls.generateCredential('alice');
    const kp = decode((await mls.generateKeyPackage(id, cred)).content).keyPackage;
    assert.deepEqual(kp.leafNode.signaturePublicKey, record.publicKey);
    // the group state at rest is sealed: no plaintext group id in it
    const view = await mls.groupCreate(id, cred, 'visible-group-id');
    const sealed = await store.get(`group/${hex(view.groupId)}/${hex(id.content)}`);
    assert.ok(!Buffer.from(sealed.state.ciphertext).includes(Buffer.from('visible-group-id')));
  });
});

describe('MLS Web API: bad input changes nothing', () => {
  test('typed errors, state unchanged afterwards', async () => {
    const alice = await member('alice');
    const bob = await member('bob');
    const ga = await alice.mls.groupCreate(alice.id, alice.cred);
    const co = await ga.add(await bob.mls.generateKeyPackage(bob.id, bob.cred));
    await ga.receive(co.commit);
    const gb = await bob.mls.groupJoin(bob.id, co.welcome);
    const secret = await exporter(gb);

    const msg = (await ga.send('intact')).content;
    const tampered = msg.slice();
    tampered[tampered.length - 3] ^= 1;
    await rejectsWith(gb.receive(tampered), 'cryptoFailure');
    await rejectsWith(gb.receive(msg.subarray(0, 10)), 'malformed');
    await rejectsWith(gb.receive(new Uint8Array([0, 1, 0, 5, 1])), 'malformed');
    await rejectsWith(gb.receive('not bytes'), 'invalidInput');
    await rejectsWith(gb.receive(co.welcome), 'invalidMessage');
    await rejectsWith(gb.receive(co.commit), 'staleCommit');
    assert.equal(gb.epoch, 1n);
    assert.equal(await exporter(gb), secret);
    assert.equal(text.decode((await gb.receive(msg)).content), 'intact', 'the genuine message still decrypts');

    // a message of another group
    const other = await alice.mls.groupCreate(alice.id, alice.cred);
    const co2 = await other.add(await bob.mls.generateKeyPackage(bob.id, bob.cred));
    await rejectsWith(gb.receive(co2.commit), 'wrongGroup');

    await rejectsWith(ga.remove(alice.id), 'invalidOperation');
    await rejectsWith(ga.remove(new Uint8Array(32)), 'notMember');
    await rejectsWith(ga.add(co.commit), 'invalidMessage');
    await rejectsWith(ga.exportSecret(SFRAME_LABEL, EMPTY, 70000), 'invalidArgument');
    await rejectsWith(alice.mls.groupJoin(alice.id, co.welcome), 'unknownKeyPackage');
    await rejectsWith(bob.mls.groupJoin(bob.id, co.welcome), 'unknownKeyPackage', 'a KeyPackage serves one join');
    await rejectsWith(alice.mls.groupCreate(alice.id, alice.cred, ga.groupId), 'invalidOperation');
    await rejectsWith(alice.mls.generateKeyPackage(new Uint8Array(32), alice.cred), 'unknownIdentity');
    await rejectsWith(alice.mls.generateKeyPackage(alice.id, new Uint8Array([9, 9])), 'malformed');
    assert.equal(await alice.mls.groupGet(new Uint8Array([1, 2, 3]), alice.id), null);
    assert.equal(ga.epoch, 1n);
    assert.equal(await exporter(ga), secret);
  });
});

describe('MLS Web API: IndexedDB store', () => {
  test('state and non-extractable keys persist in IndexedDB across MLS objects', async () => {
    const factory = new IDBFactory();
    const store = new IndexedDBStore({ name: 'alice', indexedDB: factory });
    const alice = await member('alice', store);
    const bob = await member('bob');
    const ga = await alice.mls.groupCreate(alice.id, alice.cred);
    const co = await ga.add(await bob.mls.generateKeyPackage(bob.id, bob.cred));
    await ga.receive(co.commit);
    const gb = await bob.mls.groupJoin(bob.id, co.welcome);
    await store.close();

    // a new page load: a new store object on the same database
    const reopened = new IndexedDBStore({ name: 'alice', indexedDB: factory });
    const identity = await reopened.get(`identity/${hex(alice.id.content)}`);
    assert.ok(identity.privateKey instanceof CryptoKey);
    assert.equal(identity.privateKey.extractable, false);
    const mls2 = new MLS(reopened);
    const ga2 = await mls2.groupGet(ga.groupId, alice.id);
    assert.equal(ga2.epoch, 1n);
    assert.equal(await exporter(ga2), await exporter(gb));
    const m = await ga2.send('signed with a stored CryptoKey');
    assert.equal(text.decode((await gb.receive(m)).content), 'signed with a stored CryptoKey');
    const up = await ga2.update();
    await deliver(up.commit, [ga2, gb]);
    await assertAgree([ga2, gb]);

    assert.equal(await reopened.add('x', 1), true);
    assert.equal(await reopened.add('x', 2), false, 'add() does not overwrite');
    assert.equal(await reopened.get('x'), 1);
    await mls2.deleteState();
    assert.equal(await reopened.get(`identity/${hex(alice.id.content)}`), undefined);
    assert.equal(await mls2.groupGet(ga.groupId, alice.id), null);
    await reopened.close();
  });
});

describe('MLS Web API feeding SFrame keys', () => {
  test('MLSKeyManager.installEpoch from two views: frames decrypt across members', async () => {
    const alice = await member('alice');
    const bob = await member('bob');
    const ga = await alice.mls.groupCreate(alice.id, alice.cred);
    const co = await ga.add(await bob.mls.generateKeyPackage(bob.id, bob.cred));
    await ga.receive(co.commit);
    const gb = await bob.mls.groupJoin(bob.id, co.welcome);
    assert.notEqual(ga.leafIndex, gb.leafIndex);
    assert.equal(ga.leafCount, 2);

    const ka = new MLSKeyManager();
    const kb = new MLSKeyManager();
    await ka.installEpoch(ga, ga.epoch, ga.leafIndex, ga.leafCount);
    await kb.installEpoch(gb, gb.epoch, gb.leafIndex, gb.leafCount);
    const frame = new TextEncoder().encode('an encoded video frame');
    const sealed = await ka.protect(frame);
    assert.deepEqual((await kb.unprotect(sealed)).plaintext, frame);
  });
});
