/**
 * The membership machine's trace files (tests/contracts/membership/, format
 * in docs/membership.md) against the JS port (web/app/membership.js), as
 * tests/membership/test_membership_traces.py runs them against Python's: the scripted
 * participants are played with the JS MLS Web API (one MLS object each), the
 * delivery service's part (the room's group and epoch, sequence numbers,
 * fan-out, Welcome routing) by this harness, and the actions the machine
 * returns are matched by type and named fields.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import { repoRoot } from './helpers.js';
import { Membership, credentialIdentity } from '../app/membership.js';
import { MLSError } from '../mls/errors.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';

const TRACES = path.join(repoRoot, 'tests', 'contracts', 'membership');
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const utf8 = new TextDecoder();

/** The fields a trace may name (snake_case), derived ones added. */
function actionFields(action) {
  const out = {};
  for (const [key, value] of Object.entries(action)) {
    if (key !== 'type') out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = value;
  }
  if (action.type === 'submit_commit') out.welcomes_to = action.welcomes.map((w) => w.to);
  if (action.type === 'chat_received') out.text = utf8.decode(action.text);
  return out;
}

function matches(pattern, action) {
  if (action.type !== pattern.action) return false;
  const values = actionFields(action);
  return Object.entries(pattern).every(([key, want]) => key === 'action' || (key in values && isDeepStrictEqual(values[key], want)));
}

/** A compact view of actions for failure messages (no bytes). */
function describe(actions) {
  return JSON.stringify(actions.map((a) => Object.fromEntries(Object.entries(actionFields(a))
    .filter(([, v]) => !(v instanceof Uint8Array) && !(v !== null && typeof v === 'object' && !Array.isArray(v)))
    .concat([['action', a.type]]))));
}

/** Another participant, played with real MLS. */
class ScriptedPeer {
  static async create(name) {
    const peer = new ScriptedPeer();
    peer.name = name;
    peer.mls = new MLS(new MemoryStore());
    peer.clientId = (await peer.mls.generateIdentity()).content;
    peer.credential = (await peer.mls.generateCredential(name)).content;
    peer.group = null;
    return peer;
  }

  async keyPackage() {
    return (await this.mls.generateKeyPackage(this.clientId, this.credential)).content;
  }
}

class Harness {
  constructor(trace) {
    this.me = trace.me;
    const config = {};
    let denied = null;
    for (const [key, value] of Object.entries(trace.config ?? {})) {
      if (key === 'deny') denied = new Set(value);
      else config[camel(key)] = value;
    }
    if (denied !== null) config.admit = (identity) => !denied.has(identity);
    const store = new MemoryStore();
    this.machine = new Membership(new MLS(store), { config, store });
    /** @type {Map<string, ScriptedPeer>} */
    this.peers = new Map();
    this.roomGroup = null;
    this.roomEpoch = 0;
    this.seq = 0;
    /** the newest action of each type the machine returned */
    this.last = new Map();
    /** the machine's accepted commits: {seq, epoch, commit} */
    this.accepted = [];
    this.held = [];
  }

  async peer(name) {
    if (!this.peers.has(name)) this.peers.set(name, await ScriptedPeer.create(name));
    return this.peers.get(name);
  }

  async feed(event) {
    const actions = await this.machine.handle(event);
    for (const action of actions) this.last.set(action.type, action);
    return actions;
  }

  nextSeq() {
    this.seq += 1;
    return this.seq;
  }

  // -- the delivery service's part -------------------------------------------------

  /** An accepted commit reaches every scripted member but its sender. */
  async fanOut(commit, sender) {
    for (const peer of this.peers.values()) {
      if (peer.name !== sender && peer.group !== null && this.#isRoomGroup(peer.group.groupId)) {
        const received = await peer.group.receive(commit);
        if (received.removed) {
          await peer.group.deleteState();
          peer.group = null;
        }
      }
    }
    this.roomEpoch += 1;
  }

  #isRoomGroup(groupId) {
    return this.roomGroup !== null && isDeepStrictEqual(Buffer.from(groupId), Buffer.from(this.roomGroup));
  }

  async joinScripted(welcome, names) {
    for (const name of names) {
      const peer = this.peers.get(name);
      if (peer !== undefined && peer.group === null) {
        try {
          peer.group = await peer.mls.groupJoin(peer.clientId, welcome);
        } catch (err) {
          if (!(err instanceof MLSError)) throw err;
          peer.group = null; // a throwaway (ghost) client's KeyPackage: not this peer's
        }
      }
    }
  }

  myKeyPackage() {
    const published = this.last.get('publish_key_package');
    assert.ok(published !== undefined, 'the machine published no KeyPackage');
    return published.keyPackage;
  }

  // -- steps -----------------------------------------------------------------------

  async run(step) {
    if ('check' in step) {
      this.check(step.check);
      return [];
    }
    if ('peer' in step) return this.peerStep(step);
    return this.eventStep(step);
  }

  check(want) {
    const { machine } = this;
    if ('members' in want) assert.deepEqual([...machine.members().keys()].sort(), want.members);
    if ('epoch' in want) assert.equal(machine.epoch, want.epoch);
    if ('blocked' in want) assert.deepEqual(machine.blockedSenders(), want.blocked);
    if ('conflicts' in want) assert.equal(machine.conflicts, want.conflicts);
    if ('leaves' in want) assert.equal(machine.leaves().length, want.leaves);
    if ('ended' in want) assert.equal(machine.ended, want.ended);
    if ('away' in want) assert.deepEqual([...machine.away].sort(), want.away);
  }

  requestOf(step) {
    const action = this.last.get(step.of);
    assert.ok(action !== undefined, `no ${step.of} to answer`);
    return action;
  }

  async eventStep(step) {
    const kind = step.event;
    const now = step.now ?? 0;
    switch (kind) {
      case 'joined': {
        const group = step.group === 'room' ? this.roomGroup : null;
        return this.feed({
          type: 'room_joined', identity: this.me, present: step.present ?? [], groupId: group,
          epoch: group !== null ? this.roomEpoch : null,
        });
      }
      case 'presence_joined': return this.feed({ type: 'presence_joined', identity: step.identity, resumed: step.resumed ?? false });
      case 'presence_left': return this.feed({ type: 'presence_left', identity: step.identity, dropped: step.dropped ?? false });
      case 'tick': return this.feed({ type: 'tick', now });
      case 'self_update_wanted': return this.feed({ type: 'self_update_wanted' });
      case 'group_reset':
        this.roomGroup = null;
        this.roomEpoch = 0;
        for (const peer of this.peers.values()) peer.group = null;
        return this.feed({ type: 'group_reset' });
      case 'reconnected': {
        const which = step.group === undefined ? 'room' : step.group;
        const group = which === 'room' ? this.roomGroup : which === 'other' ? new TextEncoder().encode('another group') : null;
        return this.feed({
          type: 'reconnected', present: step.present ?? [], groupId: group, epoch: group !== null ? this.roomEpoch : null, now,
        });
      }
      case 'reconnect_refused': return this.feed({ type: 'reconnect_refused', code: step.code });
      case 'key_accepted': return this.feed({ type: 'key_accepted', identity: step.identity });
      case 'send_chat': return this.feed({ type: 'send_chat', text: new TextEncoder().encode(step.text) });
      case 'deliver_held': {
        const out = [];
        for (const event of this.held) out.push(...await this.feed(event));
        this.held = [];
        return out;
      }
      case 'echo': {
        const { seq, epoch, commit } = this.accepted.at(-1);
        assert.ok(this.roomGroup !== null);
        return this.feed({ type: 'commit_delivered', seq, sender: this.me, groupId: this.roomGroup, epoch, commit });
      }
      case 'accepted': {
        const action = this.requestOf(step);
        if (action.type === 'create_group') {
          this.roomGroup = action.groupId;
          this.roomEpoch = action.epoch;
          return this.feed({ type: 'request_accepted', request: action.request, epoch: action.epoch });
        }
        assert.equal(action.type, 'submit_commit');
        assert.ok(this.#isRoomGroup(action.groupId) && action.epoch === this.roomEpoch, 'the sequencer accepts one commit per epoch');
        const seq = this.nextSeq();
        this.accepted.push({ seq, epoch: action.epoch, commit: action.commit });
        await this.fanOut(action.commit, this.me);
        for (const welcome of action.welcomes) await this.joinScripted(welcome.welcome, [welcome.to]);
        if (step.silent) return []; // sequenced, but the answer comes with an "answer" step
        return this.feed({ type: 'request_accepted', request: action.request, epoch: action.epoch + 1 });
      }
      case 'answer': {
        const action = this.requestOf(step);
        return this.feed({ type: 'request_accepted', request: action.request, epoch: action.epoch + 1 });
      }
      case 'refused': {
        const action = this.requestOf(step);
        return this.feed({ type: 'request_refused', request: action.request, code: step.code, epoch: this.roomEpoch });
      }
      case 'unanswered': return this.feed({ type: 'request_unanswered', request: this.requestOf(step).request });
      case 'claimed': {
        const action = this.requestOf(step);
        assert.equal(action.type, 'claim_key_packages');
        const missing = new Set(step.none ?? []);
        const keyPackages = [];
        for (const identity of action.identities) {
          keyPackages.push([identity, missing.has(identity) ? [] : [await (await this.peer(identity)).keyPackage()]]);
        }
        return this.feed({ type: 'key_packages_claimed', request: action.request, keyPackages });
      }
      default: assert.fail(`unknown event ${kind}`);
    }
    return [];
  }

  async peerStep(step) {
    const peer = await this.peer(step.peer);
    if (step.creates) {
      peer.group = await peer.mls.groupCreate(peer.clientId, peer.credential);
      this.roomGroup = peer.group.groupId;
      this.roomEpoch = 0;
      return [];
    }
    if (step.restarts) {
      this.peers.set(peer.name, await ScriptedPeer.create(peer.name)); // a new signature key, no state
      return [];
    }
    if ('chat' in step) {
      assert.ok(peer.group !== null);
      const ciphertext = (await peer.group.send(step.chat)).content;
      return this.deliver({
        type: 'application_delivered', seq: this.nextSeq(), sender: step.from ?? peer.name,
        epoch: Number(peer.group.epoch), ciphertext,
      }, step);
    }
    if ('welcomes_me' in step) {
      // a group of the peer's own, the machine added from its newest KeyPackage
      const group = await peer.mls.groupCreate(peer.clientId, peer.credential);
      for (const name of step.welcomes_me.with ?? []) {
        await group.add(await (await this.peer(name)).keyPackage());
        await group.applyPendingCommit();
      }
      const output = await group.add(this.myKeyPackage());
      await group.applyPendingCommit();
      assert.ok(output.welcome !== null);
      const claimed = step.welcomes_me.claims_room ? this.roomGroup : group.groupId;
      assert.ok(claimed !== null);
      return this.deliver({
        type: 'welcome_delivered', seq: this.nextSeq(), sender: peer.name, groupId: claimed,
        epoch: Number(group.epoch), welcome: output.welcome,
      }, step);
    }
    const { commits } = step;
    const { group } = peer;
    assert.ok(group !== null && this.#isRoomGroup(group.groupId) && Number(group.epoch) === this.roomEpoch);
    const added = [];
    let output;
    if ('add' in commits) {
      const packages = [];
      for (const name of commits.add) {
        if (name === this.me) {
          packages.push(this.myKeyPackage());
        } else {
          const other = await this.peer(name);
          // an identity that has a leaf already gets a second one from a throwaway client
          const source = other.group === null ? other : await ScriptedPeer.create(name);
          packages.push(await source.keyPackage());
        }
        added.push(name);
      }
      output = await group.addMany(packages);
    } else if ('remove' in commits) {
      const leaf = commits.leaf ?? null;
      const victims = (await group.details()).members.filter((x) => credentialIdentity(x.credential) === commits.remove
        && (leaf === null || x.leafIndex === leaf));
      output = await group.remove(victims[0].clientId);
    } else {
      output = await group.update();
    }
    await group.applyPendingCommit();
    const epoch = this.roomEpoch;
    const seq = this.nextSeq();
    await this.fanOut(output.commit, peer.name);
    if (output.welcome !== null) await this.joinScripted(output.welcome, added.filter((x) => x !== this.me));
    const out = await this.deliver({
      type: 'commit_delivered', seq, sender: step.peer, groupId: this.roomGroup, epoch, commit: output.commit,
    }, step);
    if (added.includes(this.me) && output.welcome !== null) {
      out.push(...await this.deliver({
        type: 'welcome_delivered', seq: this.nextSeq(), sender: step.peer, groupId: this.roomGroup,
        epoch: epoch + 1, welcome: output.welcome,
      }, step));
    }
    return out;
  }

  async deliver(event, step) {
    if (step.hold) {
      this.held.push(event);
      return [];
    }
    return this.feed(event);
  }
}

function expect(step, actions, where) {
  let position = 0;
  for (const pattern of step.expect ?? []) {
    while (position < actions.length && !matches(pattern, actions[position])) position += 1;
    assert.ok(position < actions.length, `${where}: no ${JSON.stringify(pattern)} among ${describe(actions)}`);
    position += 1;
  }
  const names = new Set(actions.map((a) => a.type));
  for (const absent of step.absent ?? []) {
    assert.ok(!names.has(absent), `${where}: unexpected ${absent} in ${describe(actions)}`);
  }
}

const TRACE_FILES = readdirSync(TRACES).filter((name) => name.endsWith('.json')).sort();

test('the traces cover the issue', () => {
  const covered = new Set(TRACE_FILES.map((name) => JSON.parse(readFileSync(path.join(TRACES, name), 'utf8')).covers));
  for (const want of ['create', 'join_by_welcome', 'batched_adds', 'leave_remove', 'conflict_retry', 'echo',
    'reconnect_catch_up', 'self_update_timer', 'admit_policy', 'group_reset', 'log_truncated',
    'ghost_add', 'impostor_add', 'foreign_welcome', 'changed_key', 'forged_chat_sender', 'wrong_group',
    'waiting_rejoin', 'resumed_join', 'leave_grace']) {
    assert.ok(covered.has(want), want);
  }
});

for (const name of TRACE_FILES) {
  test(`trace ${name}`, async () => {
    const trace = JSON.parse(readFileSync(path.join(TRACES, name), 'utf8'));
    const harness = new Harness(trace);
    for (const [number, step] of trace.steps.entries()) {
      const actions = await harness.run(step);
      expect(step, actions, `${name} step ${number}`);
    }
  });
}
