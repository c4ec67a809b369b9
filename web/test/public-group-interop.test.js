/**
 * The delivery service's keyless view (Python `mls.PublicGroup`, RFC 9420
 * §12.4.2) follows a group of Python members and members of the browser's
 * MLS Web API (web/mls, over ts-mls) through adds, removes, updates,
 * proposals by reference and an external join. Every commit goes to the
 * view first (it must accept it), then to the members. After each step the
 * view's epoch, tree hash and confirmed transcript hash equal every
 * member's: Python members' from their GroupInfo, JS members' from their
 * ts-mls state, and the GroupContext a JS committer signs in its GroupInfo.
 * The view is kept as `PublicGroup.to_bytes()` between steps, as the server
 * stores it, so every step also restores it.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MLS, MemoryStore } from '../mls/index.js';
import { groupKey } from '../mls/records.js';
import { PythonMlsPeer, runPython } from './python.js';

const hex = (bytes) => Buffer.from(bytes).toString('hex');
/** Base64 of bytes, or of an MLSBytes-shaped result ({type, content}). */
const b64 = (value) => Buffer.from(value instanceof Uint8Array ? value : value.content).toString('base64');

/** One call into the stored public view: JSON in (base64 bytes), JSON out. */
const SERVER = String.raw`
import base64, json, sys
from mls import CommitProcessed, PublicGroup

request = json.load(sys.stdin)
raw = lambda name: base64.b64decode(request[name]) if request.get(name) is not None else None
out = lambda data: base64.b64encode(data).decode()

def facts(view):
    return {"epoch": view.epoch, "tree_hash": view.tree_hash.hex(), "confirmed": view.confirmed_transcript_hash.hex(),
            "group_context": view.group_context.hex(), "members": [[m.leaf_index, m.credential.hex()] for m in view.members()]}

op = request["op"]
if op == "create":
    view = PublicGroup.from_group_info(raw("group_info"), raw("ratchet_tree"))
    print(json.dumps({"state": out(view.to_bytes()), "facts": facts(view)}))
elif op == "process":
    view = PublicGroup.from_bytes(raw("state"))
    try:
        result = view.process(raw("message"))
    except Exception as err:
        print(json.dumps({"error": type(err).__name__, "state": request["state"]}))
    else:
        summary = {"kind": "commit" if isinstance(result, CommitProcessed) else "proposal", "epoch": result.epoch}
        if isinstance(result, CommitProcessed):
            summary.update(committer=result.committer, external=result.external,
                           added=[m.leaf_index for m in result.added], removed=[m.leaf_index for m in result.removed])
        print(json.dumps({"state": out(view.to_bytes()), "facts": facts(view), "result": summary}))
elif op == "context_of":  # a member's signed GroupInfo, checked as a joiner checks it
    print(json.dumps(facts(PublicGroup.from_group_info(raw("group_info"), raw("ratchet_tree")))))
`;

/** The server: the stored view, fed every handshake message. */
class Server {
  async create(groupInfo, ratchetTree) {
    const reply = await runPython(SERVER, { op: 'create', group_info: b64(groupInfo), ratchet_tree: ratchetTree && b64(ratchetTree) });
    this.state = reply.state;
    this.facts = reply.facts;
  }

  /** Processes a message; the view must accept it. */
  async accept(message) {
    const reply = await runPython(SERVER, { op: 'process', state: this.state, message: b64(message) });
    assert.equal(reply.error, undefined, `the public view refused a valid message: ${reply.error}`);
    this.state = reply.state;
    this.facts = reply.facts;
    return reply.result;
  }

  /** Processes a message the view must refuse; the stored state is unchanged. */
  async refuse(message) {
    const reply = await runPython(SERVER, { op: 'process', state: this.state, message: b64(message) });
    assert.notEqual(reply.error, undefined, 'the public view accepted an invalid message');
    assert.equal(reply.state, this.state);
    return reply.error;
  }
}

/** The GroupContext (and roster) of a member's GroupInfo, the tree in it or apart. */
async function contextOf(groupInfo, ratchetTree) {
  return runPython(SERVER, { op: 'context_of', group_info: b64(groupInfo), ratchet_tree: ratchetTree && b64(ratchetTree) });
}

/** The ts-mls state of a JS member (test introspection of its stored record). */
async function jsState(mls, view) {
  const key = groupKey(view.groupId, view.clientId);
  const record = await mls._records.get(key);
  return mls._records.open(key, record.state);
}

/** The view agrees with every member: epoch, tree hash, confirmed transcript hash, roster. */
async function agree(server, jsMembers, pyMembers) {
  const { facts } = server;
  for (const { mls, view } of jsMembers) {
    const state = await jsState(mls, view);
    assert.equal(Number(state.groupContext.epoch), facts.epoch, 'JS epoch');
    assert.equal(hex(state.groupContext.treeHash), facts.tree_hash, 'JS tree hash');
    assert.equal(hex(state.groupContext.confirmedTranscriptHash), facts.confirmed, 'JS confirmed transcript hash');
    const roster = (await view.details()).members.map((m) => [m.leafIndex, hex(m.credential)]);
    assert.deepEqual(roster, facts.members, 'JS roster');
  }
  for (const p of pyMembers) {
    const context = await contextOf(await p.view('group_info'));
    assert.equal(context.group_context, facts.group_context, `${p.name} GroupContext`);
    const details = await p.view('details');
    assert.deepEqual(details.members.map((m) => [m.leaf_index, hex(m.credential)]), facts.members, `${p.name} roster`);
  }
  return facts.epoch;
}

describe('PublicGroup follows a mixed Python / ts-mls group', () => {
  let peer;
  before(() => { peer = new PythonMlsPeer(); });
  after(() => peer.close());

  test('adds, removes, updates, proposals by reference, an external join: every commit accepted', async () => {
    const server = new Server();
    // members commit when the test says so: the server sees each proposal before its commit
    const manual = { commit_received_proposals: false };
    const P = peer.member('PG-P', manual);
    const Q = peer.member('PG-Q', manual);
    const js1 = new MLS(new MemoryStore()); // answers proposals it receives with a commit
    const js2 = new MLS(new MemoryStore(), { commitReceivedProposals: false });
    const pId = await P.mls('generate_identity');
    const qId = await Q.mls('generate_identity');
    const j1 = await js1.generateIdentity();
    const j2 = await js2.generateIdentity();

    // 0. Python P creates the group; the server's view starts from its GroupInfo
    const created = await P.mls('group_create', pId, await P.mls('generate_credential', 'py-P'));
    assert.equal(created.epoch, 0);
    await server.create(await P.view('group_info'));
    assert.equal(await agree(server, [], [P]), 0);

    // 1. P adds the JS member J1 and Python Q in one commit
    const j1Kp = await js1.generateKeyPackage(j1, await js1.generateCredential('js-1'));
    const qKp = await Q.mls('generate_key_package', qId, await Q.mls('generate_credential', 'py-Q'));
    const c1 = await P.view('add_many', [j1Kp.content, qKp]);
    assert.deepEqual((await server.accept(c1.commit)).added, [1, 2]);
    await P.view('receive', c1.commit);
    const v1 = await js1.groupJoin(j1, c1.welcome);
    await Q.mls('group_join', qId, c1.welcome);
    const J1 = { mls: js1, view: v1 };
    assert.equal(await agree(server, [J1], [P, Q]), 1);

    // 2. the JS member adds JS J2 (a ts-mls commit); its GroupInfo's GroupContext is the view's
    const j2Kp = await js2.generateKeyPackage(j2, await js2.generateCredential('js-2'));
    const c2 = await v1.add(j2Kp.content);
    const added = await server.accept(c2.commit);
    assert.deepEqual([added.committer, added.added], [1, [3]]);
    const signed = await contextOf(c2.groupInfo, c2.ratchetTree);
    assert.equal(signed.group_context, server.facts.group_context, 'JS committer GroupContext');
    assert.deepEqual(signed.members, server.facts.members, 'JS committer tree');
    await v1.receive(c2.commit);
    for (const p of [P, Q]) await p.view('receive', c2.commit);
    const v2 = await js2.groupJoin(j2, c2.welcome);
    const J2 = { mls: js2, view: v2 };
    assert.equal(await agree(server, [J1, J2], [P, Q]), 2);

    // 3. self-updates: JS J2, then Python Q
    const c3 = await v2.update();
    await server.accept(c3.commit);
    for (const v of [v1, v2]) await v.receive(c3.commit);
    for (const p of [P, Q]) await p.view('receive', c3.commit);
    assert.equal(await agree(server, [J1, J2], [P, Q]), 3);
    const c4 = await Q.view('update');
    await server.accept(c4.commit);
    for (const v of [v1, v2]) await v.receive(c4.commit);
    for (const p of [P, Q]) await p.view('receive', c4.commit);
    assert.equal(await agree(server, [J1, J2], [P, Q]), 4);

    // 4. Python Q proposes an Update; the JS member J1 answers with a commit of it by reference.
    //    (Q, not P: ts-mls 1.6.4 stores a proposal's sender with an optional encoder that takes
    //    leaf 0 for absent, so a reopened JS state cannot commit an Update from leaf 0.)
    const update = await Q.view('propose_update');
    assert.equal((await server.accept(update)).kind, 'proposal');
    await v2.receive(update);
    const answer = await v1.receive(update);
    assert.equal(answer.type, 'commit-output');
    for (const p of [P, Q]) await p.view('receive', update);
    const c5 = answer.commitOutput;
    const updated = await server.accept(c5.commit);
    assert.deepEqual([updated.committer, updated.added, updated.removed], [1, [], []]);
    for (const v of [v1, v2]) await v.receive(c5.commit);
    for (const p of [P, Q]) await p.view('receive', c5.commit);
    assert.equal(await agree(server, [J1, J2], [P, Q]), 5);

    // 5. JS J2 proposes removing Q (by reference); J1 and Python P both answer with a commit,
    //    the server takes P's first and refuses J1's, which lost the race
    const removeQ = await v2.proposeRemove(qId);
    assert.equal((await server.accept(removeQ.content)).kind, 'proposal');
    const lost = await v1.receive(removeQ.content);
    assert.equal(lost.type, 'commit-output');
    for (const p of [P, Q]) await p.view('receive', removeQ.content);
    const c6 = await P.view('commit');
    assert.deepEqual((await server.accept(c6.commit)).removed, [2]);
    for (const v of [v1, v2]) await v.receive(c6.commit);
    assert.equal((await Q.view('receive', c6.commit)).removed, true);
    await P.view('receive', c6.commit);
    assert.equal(await agree(server, [J1, J2], [P]), 6);
    assert.equal(await server.refuse(lost.commitOutput.commit), 'StaleCommitError');

    // 6. the JS member J1 removes Python P; the stale commit P would replay is refused
    const c7 = await v1.remove(pId);
    assert.deepEqual((await server.accept(c7.commit)).removed, [0]);
    for (const v of [v1, v2]) await v.receive(c7.commit);
    assert.equal((await P.view('receive', c7.commit)).removed, true);
    assert.equal(await agree(server, [J1, J2], []), 7);
    assert.equal(await server.refuse(c5.commit), 'StaleCommitError');

    // 7. Python R joins by external Commit from the JS commit output's GroupInfo and tree
    const R = peer.member('PG-R', manual);
    const rId = await R.mls('generate_identity');
    const [, external] = await R.mls('group_join_external', rId, await R.mls('generate_credential', 'py-R'),
      c7.groupInfo, c7.ratchetTree);
    const joined = await server.accept(external.commit);
    assert.deepEqual([joined.external, joined.committer, joined.added], [true, 0, [0]]);
    for (const v of [v1, v2]) await v.receive(external.commit);
    assert.equal(await agree(server, [J1, J2], [R]), 8);

    // 8. garbage and an application message are refused without changing the stored view
    assert.equal(await server.refuse(new Uint8Array([0, 1, 0, 1, 9])), 'DecodeError');
    assert.equal(await server.refuse((await v1.send('hello')).content), 'ValidationError');
  });
});
