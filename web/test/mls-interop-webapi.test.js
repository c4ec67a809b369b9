/**
 * Interop of the browser's MLS Web API (web/mls, over ts-mls) with the
 * Python `mls` package, the group created on the JS side: JS J1 creates the
 * group and adds Python P; P adds JS J2 and Python Q in one commit; proposals
 * made on one side are committed by the other (J1's MLS answers received
 * proposals with a commit, as the explainer's flow does, and once loses the
 * race to a Python commit); self-updates and removes from both sides; a
 * Python client joins by external Commit from the JS GroupInfo. After every epoch change the SFrame base key,
 * another exporter, the epoch authenticator and the roster are equal on
 * every member; application messages go every way.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MLS, MemoryStore } from '../mls/index.js';
import { PythonMlsPeer } from './python.js';

const SFRAME_LABEL = 'SFrame 1.0 Base Key';
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const text = new TextDecoder();
const hex = (bytes) => Buffer.from(bytes).toString('hex');

async function agree(jsViews, pyMembers) {
  const [first] = jsViews;
  const base = hex((await first.exportSecret(SFRAME_LABEL, EMPTY, 48)).secret);
  const other = hex((await first.exportSecret('interop check', 'ctx', 20)).secret);
  const auth = hex(await first.epochAuthenticator());
  const roster = JSON.stringify((await first.details()).members.map((m) => [hex(m.clientId), m.leafIndex]));
  for (const v of jsViews) {
    assert.equal(v.epoch, first.epoch, 'JS epoch');
    assert.equal(hex((await v.exportSecret(SFRAME_LABEL, EMPTY, 48)).secret), base, 'JS SFrame base key');
    assert.equal(hex((await v.exportSecret('interop check', 'ctx', 20)).secret), other, 'JS exporter');
    assert.equal(hex(await v.epochAuthenticator()), auth, 'JS epoch authenticator');
    assert.equal(JSON.stringify((await v.details()).members.map((m) => [hex(m.clientId), m.leafIndex])), roster);
  }
  for (const p of pyMembers) {
    const details = await p.view('details');
    assert.equal(BigInt(details.epoch), first.epoch, `${p.name} epoch`);
    assert.equal(hex((await p.view('export_secret', SFRAME_LABEL, EMPTY, 48)).secret), base, `${p.name} SFrame base key`);
    assert.equal(hex((await p.view('export_secret', 'interop check', 'ctx', 20)).secret), other, `${p.name} exporter`);
    assert.equal(hex(await p.view('epoch_authenticator')), auth, `${p.name} epoch authenticator`);
    assert.equal(JSON.stringify(details.members.map((m) => [hex(m.client_id), m.leaf_index])), roster, `${p.name} roster`);
  }
  return first.epoch;
}

async function everyoneSpeaks(jsViews, pyMembers, tag) {
  const speakers = [...jsViews.map((v) => ({ js: v })), ...pyMembers.map((p) => ({ py: p }))];
  for (const speaker of speakers) {
    const words = `${tag} from ${speaker.js ? hex(speaker.js.clientId).slice(0, 6) : speaker.py.name}`;
    const message = speaker.js ? (await speaker.js.send(words)).content : await speaker.py.view('send', utf8.encode(words));
    for (const v of jsViews) {
      if (v === speaker.js) continue;
      const r = await v.receive(message);
      assert.equal(r.type, 'application-message-plaintext');
      assert.equal(text.decode(r.content), words);
    }
    for (const p of pyMembers) {
      if (p === speaker.py) continue;
      assert.equal(text.decode((await p.view('receive', message)).content), words, `${p.name} reads ${words}`);
    }
  }
}

describe('MLS interop: the JS Web API creates the group, Python joins', () => {
  let peer;
  before(() => { peer = new PythonMlsPeer(); });
  after(() => peer.close());

  test('JS creates and adds Python; Python adds JS; proposals, updates, removes both ways', async () => {
    const js1 = new MLS(new MemoryStore()); // answers proposals it receives with a commit
    const js2 = new MLS(new MemoryStore(), { commitReceivedProposals: false });
    const P = peer.member('W-P');
    const Q = peer.member('W-Q');
    const j1 = await js1.generateIdentity();
    const j2 = await js2.generateIdentity();
    const pId = await P.mls('generate_identity');
    const qId = await Q.mls('generate_identity');
    const pKp = await P.mls('generate_key_package', pId, await P.mls('generate_credential', 'py-P'));
    const qKp = await Q.mls('generate_key_package', qId, await Q.mls('generate_credential', 'py-Q'));

    // 1. the JS Web API creates the group and adds Python P
    const v1 = await js1.groupCreate(j1, await js1.generateCredential('js-creator'));
    const c1 = await v1.add(pKp);
    await v1.receive(c1.commit);
    const joined = await P.mls('group_join', pId, c1.welcome);
    assert.equal(hex(joined.group_id), hex(v1.groupId));
    assert.equal(await agree([v1], [P]), 1n);
    await everyoneSpeaks([v1], [P], 'epoch 1');

    // 2. Python adds the JS member J2 and Python Q in one commit
    const j2Kp = await js2.generateKeyPackage(j2, await js2.generateCredential('js-second'));
    const c2 = await P.view('add_many', [j2Kp.content, qKp]);
    assert.equal((await v1.receive(c2.commit)).epoch, 2n);
    await P.view('receive', c2.commit);
    const v2 = await js2.groupJoin(j2, c2.welcome);
    await Q.mls('group_join', qId, c2.welcome);
    assert.equal(await agree([v1, v2], [P, Q]), 2n);
    await everyoneSpeaks([v1, v2], [P, Q], 'epoch 2');

    // 3. self-updates from each side
    const c3 = await v2.update();
    for (const p of [P, Q]) await p.view('receive', c3.commit);
    await v1.receive(c3.commit);
    await v2.receive(c3.commit);
    assert.equal(await agree([v1, v2], [P, Q]), 3n);
    const c4 = await Q.view('update');
    await v1.receive(c4.commit);
    await v2.receive(c4.commit);
    for (const p of [P, Q]) await p.view('receive', c4.commit);
    assert.equal(await agree([v1, v2], [P, Q]), 4n);

    // 4. Python P proposes an Update; J1's MLS answers with a commit covering it
    const proposal = await P.view('propose_update');
    for (const p of [P, Q]) await p.view('receive', proposal);
    assert.equal((await v2.receive(proposal)).type, 'proposal');
    const answer = await v1.receive(proposal);
    assert.equal(answer.type, 'commit-output');
    const c5 = answer.commitOutput.commit;
    for (const p of [P, Q]) await p.view('receive', c5);
    await v2.receive(c5);
    await v1.receive(c5);
    assert.equal(await agree([v1, v2], [P, Q]), 5n);

    // 5. JS J2 proposes removing Python Q; J1 and Python P both answer with a commit:
    //    the delivery service keeps P's, J1's pending commit loses the race and is dropped
    const removeQ = await v2.proposeRemove(qId);
    const answerP = await P.view('receive', removeQ.content);
    assert.equal(answerP.type, 'commit-output', 'Python answers with a commit too (GroupConfig.commit_received_proposals)');
    assert.equal(answerP.sender.leaf_index, 2, 'the authenticated proposer: J2');
    assert.equal((await Q.view('receive', removeQ.content)).type, 'proposal', 'Q does not commit its own removal');
    const lost = await v1.receive(removeQ.content);
    assert.equal(lost.type, 'commit-output');
    const c6 = answerP.commit_output;
    assert.equal((await Q.view('receive', c6.commit)).removed, true, 'Q learns it was removed');
    await P.view('receive', c6.commit);
    await v2.receive(c6.commit);
    assert.equal((await v1.receive(c6.commit)).epoch, 6n);
    await assert.rejects(P.view('receive', lost.commitOutput.commit), /StaleCommitError|WrongEpochError/);
    await assert.rejects(v1.applyPendingCommit(), (err) => err.code === 'noPendingCommit');
    assert.equal(await agree([v1, v2], [P]), 6n);
    await everyoneSpeaks([v1, v2], [P], 'epoch 6');

    // 6. Python removes the JS creator; the JS member removes Python P
    const c7 = await P.view('remove', j1.content);
    assert.equal((await v1.receive(c7.commit)).removed, true, 'the JS creator learns it was removed');
    await v2.receive(c7.commit);
    await P.view('receive', c7.commit);
    assert.equal(await agree([v2], [P]), 7n);
    const c8 = await v2.remove(pId);
    assert.equal((await P.view('receive', c8.commit)).removed, true);
    await v2.receive(c8.commit);
    assert.deepEqual((await v2.details()).members.map((m) => hex(m.clientId)), [hex(j2.content)]);

    // 7. Python R joins by external Commit (§12.4.3.2) from the GroupInfo of the JS commit output
    //    (its external_pub in the RFC encoding, and the ratchet tree)
    const R = peer.member('W-R');
    const rId = await R.mls('generate_identity');
    const [, external] = await R.mls('group_join_external', rId, await R.mls('generate_credential', 'py-R'),
      c8.groupInfo, c8.ratchetTree);
    assert.equal((await v2.receive(external.commit)).epoch, 9n);
    assert.equal(await agree([v2], [R]), 9n);
    await everyoneSpeaks([v2], [R], 'epoch 9');
  });
});
