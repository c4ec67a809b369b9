/**
 * Interop of the JS MLS Web API (web/mls, over ts-mls) with the Python `mls`
 * package: a Python process plays members of the same group, driven line
 * by line over stdin/stdout; every value crosses as RFC 9420 wire bytes.
 *
 * Python P creates the group and adds JS member J (J joins from P's
 * Welcome); J adds Python member Q (Q joins from J's Welcome, P processes
 * J's commit); application messages go every way; self-updates from both
 * sides; Q proposes to leave and J commits it; the SFrame exporter and the
 * epoch authenticator agree at every epoch.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MLS, MemoryStore } from '../mls/index.js';
import { PythonMlsPeer } from './python.js';

const SFRAME_LABEL = 'SFrame 1.0 Base Key';
const EMPTY = new Uint8Array(0);
const text = new TextDecoder();
const hex = (bytes) => Buffer.from(bytes).toString('hex');

describe('MLS interop: JS (ts-mls) and Python', () => {
  let peer;
  before(() => { peer = new PythonMlsPeer(); });
  after(() => peer.close());

  test('Python creates and adds JS; JS adds Python; messages, updates, leave; secrets agree', async () => {
    const P = peer.member('P');
    const Q = peer.member('Q');
    const js = new MLS(new MemoryStore());
    const jId = await js.generateIdentity();
    const jCred = await js.generateCredential('js-member');

    const pId = await P.mls('generate_identity');
    const pCred = await P.mls('generate_credential', new TextEncoder().encode('py-creator'));
    const qId = await Q.mls('generate_identity');
    const qCred = await Q.mls('generate_credential', new TextEncoder().encode('py-joiner'));

    const agree = async (jsView, pyMembers) => {
      const jsSecret = hex((await jsView.exportSecret(SFRAME_LABEL, EMPTY, 16)).secret);
      const jsAuth = hex(await jsView.epochAuthenticator());
      for (const m of pyMembers) {
        assert.equal(hex((await m.view('export_secret', SFRAME_LABEL, EMPTY, 16)).secret), jsSecret, 'SFrame base key equal');
        assert.equal(hex(await m.view('epoch_authenticator')), jsAuth, 'epoch authenticator equal');
        assert.equal(BigInt((await m.view('details')).epoch), jsView.epoch, 'same epoch');
      }
      const jsMembers = (await jsView.details()).members.map((x) => hex(x.clientId)).sort();
      for (const m of pyMembers) {
        const pyMembersList = (await m.view('details')).members.map((x) => hex(x.client_id)).sort();
        assert.deepEqual(pyMembersList, jsMembers, 'same roster and client identifiers');
      }
    };

    // 1. Python P creates the group and adds the JS member; JS joins from P's Welcome
    const created = await P.mls('group_create', pId, pCred);
    const jKp = await js.generateKeyPackage(jId, jCred);
    const co1 = await P.view('add', jKp);
    assert.ok(co1.welcome instanceof Uint8Array);
    await P.view('receive', co1.commit);
    const jv = await js.groupJoin(jId, co1.welcome); // the tree rides in the Welcome's ratchet_tree extension
    assert.deepEqual(jv.groupId, created.group_id);
    assert.equal(jv.epoch, 1n);
    await agree(jv, [P]);

    // 2. JS adds Python member Q; P processes JS's commit; Q joins from the ts-mls Welcome
    const qKp = await Q.mls('generate_key_package', qId, qCred);
    const co2 = await jv.add(qKp);
    const pr2 = await P.view('receive', co2.commit);
    assert.equal(BigInt(pr2.epoch), 2n);
    assert.equal((await jv.receive(co2.commit)).epoch, 2n);
    await Q.mls('group_join', qId, co2.welcome);
    await agree(jv, [P, Q]);

    // 3. application messages every way
    const fromJs = await jv.send('hello from the browser');
    for (const m of [P, Q]) {
      const r = await m.view('receive', fromJs);
      assert.equal(r.type, 'application-message-plaintext');
      assert.equal(text.decode(r.content), 'hello from the browser');
      assert.deepEqual([r.sender.leaf_index, hex(r.sender.credential)], [1, hex(jCred.content)], 'Python reads the JS sender');
    }
    const fromP = await P.view('send', new TextEncoder().encode('hello from aiortc'));
    const rp = await jv.receive(fromP);
    assert.equal(rp.type, 'application-message-plaintext');
    assert.equal(text.decode(rp.content), 'hello from aiortc');
    assert.deepEqual([rp.sender.leafIndex, hex(rp.sender.credential), hex(rp.sender.clientId)], [0, hex(pCred.content), hex(pId.content)],
      'JS reads the Python sender');
    assert.equal(text.decode((await Q.view('receive', fromP)).content), 'hello from aiortc');
    const fromQ = await Q.view('send', new TextEncoder().encode('and from Q'));
    assert.equal(text.decode((await jv.receive(fromQ)).content), 'and from Q');

    // 4. self-updates: Python's processed by JS, JS's processed by Python
    const up1 = await P.view('update');
    for (const m of [P, Q]) await m.view('receive', up1.commit);
    assert.equal((await jv.receive(up1.commit)).epoch, 3n);
    await agree(jv, [P, Q]);
    const up2 = await jv.update();
    assert.equal((await jv.receive(up2.commit)).epoch, 4n);
    for (const m of [P, Q]) await m.view('receive', up2.commit);
    await agree(jv, [P, Q]);

    // 5. Q proposes to leave; JS answers with the commit; everyone processes it
    const leave = await Q.view('propose_remove', qId);
    await P.view('receive', leave);
    const answer = await jv.receive(leave);
    assert.equal(answer.type, 'commit-output');
    const co5 = answer.commitOutput.commit;
    const qr = await Q.view('receive', co5);
    assert.equal(qr.removed, true, 'Q learns it left');
    await P.view('receive', co5);
    await jv.receive(co5);
    assert.equal(jv.epoch, 5n);
    await agree(jv, [P]);
    assert.equal((await jv.details()).members.length, 2);

    // 6. JS removes the Python creator; JS is alone, Python P knows it was removed
    const co6 = await jv.remove(pId);
    assert.equal((await P.view('receive', co6.commit)).removed, true);
    await jv.receive(co6.commit);
    assert.deepEqual((await jv.details()).members.map((x) => hex(x.clientId)), [hex(jId.content)]);
  });

  test('a Welcome without the ratchet_tree extension: JS joins with the tree given apart', async () => {
    const R = peer.member('R', { ratchet_tree_in_welcome: false });
    const rId = await R.mls('generate_identity');
    const created = await R.mls('group_create', rId, await R.mls('generate_credential', 'py-no-tree'));
    const js = new MLS(new MemoryStore());
    const jId = await js.generateIdentity();
    const kp = await js.generateKeyPackage(jId, await js.generateCredential('js'));
    const co = await R.view('add', kp);
    await R.view('receive', co.commit);
    await assert.rejects(js.groupJoin(jId, co.welcome), (err) => err.code === 'missingRatchetTree', 'no tree, no join');
    const jv = await js.groupJoin(jId, co.welcome, co.ratchet_tree);
    assert.deepEqual(jv.groupId, created.group_id);
    assert.equal(
      hex((await jv.exportSecret(SFRAME_LABEL, EMPTY, 16)).secret),
      hex((await R.view('export_secret', SFRAME_LABEL, EMPTY, 16)).secret),
    );
    const m = await jv.send('tree arrived apart');
    assert.equal(text.decode((await R.view('receive', m)).content), 'tree arrived apart');
  });
});
