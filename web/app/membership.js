/**
 * Call membership as one sans-I/O state machine (RFC 9420 §12, §14; RFC
 * 9605 §5.2): the JS port of media/membership.py, passing the same trace
 * files (tests/contracts/membership/, docs/membership.md).
 *
 * `Membership` decides, for one participant of a room of the signaling
 * server, who commits, whom to add or remove, when to install an epoch and
 * switch sending keys, and whom to trust. It owns the MLS group (the MLS Web
 * API of web/mls) and the client's persisted record, and does no I/O: no
 * DOM, no WebSocket, no timers. The driver (call.js) feeds it events with
 * `await machine.handle(event)` one at a time and carries out the actions it
 * returns, in order, feeding the answers of requests back as events; time
 * comes in as `now` (seconds) on `tick` and `reconnected` events.
 *
 * Events and actions are plain objects `{type, ...fields}`: the type is the
 * snake_case name of the Python class (`room_joined`, `install_epoch`),
 * fields are the Python fields in camelCase (`ownIndex`, `blockedSenders`);
 * bytes are Uint8Arrays, epochs numbers, absent values null.
 *
 * Members check what the delivery service says (DESIGN.md, trust model): a
 * member is a leaf; a commit's new leaf for an identity that has one
 * already, or for an identity never present in the room, is flagged (a
 * `trust_warning`), left out of the members shown, never trusted for media
 * and removed by the committer; a Welcome is joined only for the room's
 * group and only if its leaves are present participants, one each; a chat
 * message's sender is its MLS-authenticated leaf (§6.1); the signature key
 * of each identity is remembered (trust on first use, §5.3.1 leaves this to
 * the application) and a changed key blocks that leaf's media until the
 * application accepts it.
 * @module app/membership
 */

import { bytesEqual, toHex } from '../mls/bytes.js';
import { MLSError } from '../mls/errors.js';
import { identityKey } from '../mls/records.js';
import { MemoryStore } from '../mls/store.js';
import { decodeCredentialBytes, decodeMessage } from '../mls/wire.js';

/** The store namespace of the client records (one per identity), as Python's RECORD_NAMESPACE. */
export const RECORD_NAMESPACE = 'mlscall.membership';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The room identity a basic credential (RFC 9420 §5.3, TLS-encoded) carries, or null. */
export function credentialIdentity(credential) {
  try {
    const decoded = decodeCredentialBytes(credential);
    return decoded.credentialType === 'basic' ? utf8.decode(decoded.identity) : null;
  } catch {
    return null;
  }
}

/** The identity in a KeyPackage's leaf credential (RFC 9420 §10), or null. */
export function keyPackageIdentity(keyPackage) {
  try {
    const { credential } = decodeMessage(keyPackage, ['mls_key_package'], 'KeyPackage').keyPackage.leafNode;
    return credential.credentialType === 'basic' ? utf8.decode(credential.identity) : null;
  } catch {
    return null;
  }
}

/** As media.membership.MembershipConfig (seconds), camelCase. */
export const DEFAULT_CONFIG = Object.freeze({
  /** sender transition after our own commit is accepted */
  confirmDelay: 0.2,
  /** sender transition after another member's commit */
  switchDelay: 0.3,
  /** while waiting to be added, publish a fresh KeyPackage this often */
  keyPackageInterval: 1.0,
  /** commit an UpdatePath this often, null for never */
  selfUpdateInterval: null,
  /** participants present before our reconnection count as present this long, and a member whose connection dropped keeps its leaf this long (0: removed at once) */
  reconnectGrace: 0.0,
  /** which participants may be in the group: (identity) => boolean, null for everyone present */
  admit: null,
  /** a newcomer waiting this long in a room that has a group rejoins (null for never) */
  rejoinAfter: 30.0,
});

const sameId = (a, b) => a !== null && a !== undefined && b !== null && b !== undefined && bytesEqual(a, b);

/**
 * What survives a restart: our signature identity, group, cursor and known
 * keys (identity -> hex client id first seen for it). Stored as the same
 * JSON as Python's ClientRecord.
 */
class ClientRecord {
  constructor(identity, clientId, groupId = null, lastSeq = 0, knownKeys = {}) {
    this.identity = identity;
    /** @type {Uint8Array} */
    this.clientId = clientId;
    /** @type {Uint8Array|null} */
    this.groupId = groupId;
    this.lastSeq = lastSeq;
    /** @type {Record<string, string>} */
    this.knownKeys = knownKeys;
  }

  encode() {
    return pythonJson({
      client_id: toHex(this.clientId),
      group_id: this.groupId === null ? null : toHex(this.groupId),
      identity: this.identity,
      known_keys: this.knownKeys,
      last_seq: this.lastSeq,
    });
  }

  static decode(text) {
    const raw = JSON.parse(text);
    return new ClientRecord(raw.identity, fromHex(raw.client_id),
      raw.group_id === null ? null : fromHex(raw.group_id), Number(raw.last_seq), { ...raw.known_keys });
  }
}

/** JSON as Python's `json.dumps(value, sort_keys=True)` writes it (separators ", " and ": ", ASCII only). */
function pythonJson(value) {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  }
  const keys = Object.keys(value).sort();
  return `{${keys.map((key) => `${pythonJson(key)}: ${pythonJson(value[key])}`).join(', ')}}`;
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const sortedStrings = (values) => [...values].sort();
const sortedNumbers = (values) => [...values].sort((a, b) => a - b);

export class Membership {
  #credential = null;
  #creating = null;
  /** @type {Map<number, {kind: string, epoch: number, identities: string[]}>} */
  #requests = new Map();
  #nextRequest = 1;
  #updateWanted = false;
  #nextUpdate = null;
  #stale = new Set();
  /** @type {Map<string, number>} identity -> deadline */
  #resuming = new Map();
  /** @type {Map<string, number | null>} members whose connection dropped -> until when their leaves are kept (null: set by the next tick, so the grace counts from a current clock) */
  #away = new Map();
  #publishedAt = null;
  #waitingSince = null;
  #now = 0;
  /** @type {Map<number, string>} leaf index -> flag of the current epoch's untrusted leaves */
  #flags = new Map();
  /** @type {Map<number, string>} leaf index -> hex client id of the leaves already checked */
  #checked = new Map();
  /** the group's members as of its last change: {leafIndex, identity, clientId (bytes), clientHex} */
  #members = [];
  /** the group's details as of its last change */
  #details = null;
  #out = [];

  /**
   * @param {import('../mls/mls.js').MLS} mls
   * @param {object} [init]
   * @param {Partial<typeof DEFAULT_CONFIG>} [init.config]
   * @param {object} [init.store] where the client record goes: the store the MLS object keeps its state in
   * @param {(eventOrAction: object) => void} [init.observer] called with every event handled and every action returned
   */
  constructor(mls, { config = {}, store = new MemoryStore(), observer = null } = {}) {
    this.mls = mls;
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.store = store;
    this.observer = observer;
    this.identity = '';
    /** @type {ClientRecord|null} */
    this.record = null;
    /** @type {import('../mls/group.js').MLSGroupView|null} */
    this.group = null;
    this.present = new Set();
    /** everyone seen present since we joined */
    this.seen = new Set();
    this.roomGroup = null;
    this.removed = false;
    /** our commits refused because another one won the epoch */
    this.conflicts = 0;
    /** KeyPackages we published */
    this.keyPackagesPublished = 0;
    this.ended = false;
  }

  // -- queries -------------------------------------------------------------------

  /** The group's epoch (a number), or null. */
  get epoch() {
    return this.group === null ? null : Number(this.group.epoch);
  }

  /** Our MLS client id (the hash of our signature key; empty before joining). */
  get clientId() {
    return this.record === null ? new Uint8Array(0) : this.record.clientId;
  }

  /** A request of ours that changes the group is unanswered. */
  get busy() {
    return [...this.#requests.values()].some((r) => r.kind !== 'publish');
  }

  /** Every leaf with its identity and flag ("" trusted, "duplicate_identity", "not_present", "key_changed"). */
  leaves() {
    if (this.group === null) return [];
    return this.#members.map((m) => ({
      leafIndex: m.leafIndex, identity: m.identity, clientId: m.clientId, flag: this.#flags.get(m.leafIndex) ?? '',
    }));
  }

  /** Identity -> leaf index of the members shown: leaves not flagged as ghosts or impostors. */
  members() {
    const out = new Map();
    for (const leaf of this.leaves()) {
      if (leaf.flag === '' || leaf.flag === 'key_changed') out.set(leaf.identity, leaf.leafIndex);
    }
    return out;
  }

  /** Leaf indices whose frames must not be shown, sorted. */
  blockedSenders() {
    return sortedNumbers(this.#flags.keys());
  }

  /** Participants present before our reconnection, not back yet. */
  get resuming() {
    return new Set(this.#resuming.keys());
  }

  /** Members who left and whose leaves are kept for `reconnectGrace`. */
  get away() {
    return new Set(this.#away.keys());
  }

  /** The log `seq` to catch up after, when restarted as a member (else null). */
  resumeCursor() {
    if (this.record === null || this.record.groupId === null) return null;
    return this.record.lastSeq;
  }

  // -- input ---------------------------------------------------------------------

  /**
   * Applies one event; resolves with the actions to carry out, in order.
   * Events must be handled one at a time (await each).
   */
  async handle(event) {
    this.#out = [];
    this.observer?.(event);
    const handler = HANDLERS[event.type];
    if (handler === undefined) throw new MLSError('invalidArgument', `unknown membership event ${event.type}`);
    await handler.call(this, event);
    const out = this.#out;
    this.#out = [];
    if (this.observer !== null) for (const action of out) this.observer(action);
    return out;
  }

  #emit(action) {
    this.#out.push(action);
  }

  #request(kind, epoch = 0, identities = []) {
    const number = this.#nextRequest;
    this.#nextRequest += 1;
    this.#requests.set(number, { kind, epoch, identities });
    return number;
  }

  /** Reads the group's members (after any change of its epoch). */
  async #refresh() {
    if (this.group === null) {
      this.#members = [];
      return;
    }
    const details = await this.group.details();
    this.#members = details.members.map((m) => ({
      leafIndex: m.leafIndex,
      identity: credentialIdentity(m.credential) ?? '',
      clientId: m.clientId,
      clientHex: toHex(m.clientId),
    }));
    this.#details = details;
  }

  // -- presence ------------------------------------------------------------------

  async onRoomJoined(event) {
    this.identity = event.identity;
    this.#credential = (await this.mls.generateCredential(this.identity)).content;
    await this.#loadRecord();
    this.present = new Set(event.present.filter((x) => x !== this.identity));
    for (const x of this.present) this.seen.add(x);
    this.roomGroup = event.groupId ?? null;
    const record = this.record;
    if (record.groupId !== null && sameId(record.groupId, this.roomGroup)) {
      this.group = await this.mls.groupGet(record.groupId, record.clientId);
      if (this.group !== null) {
        if (event.epoch === Number(this.group.epoch) && await this.group.hasPendingCommit()) {
          await this.group.discardPendingCommit(); // it did not get in before we stopped
        }
        await this.#refresh();
        this.#checked = new Map(this.#members.map((m) => [m.leafIndex, m.clientHex]));
        await this.#epochChanged('welcome'); // restarted: the state we stored
        return;
      }
    }
    if (record.groupId !== null) await this.#forgetGroup();
    if (this.roomGroup === null && this.#smallest()) await this.#createGroup();
    else await this.#publish();
  }

  async onPresenceJoined(event) {
    const remote = event.identity;
    if (remote === this.identity) return;
    this.seen.add(remote);
    this.#resuming.delete(remote);
    this.#away.delete(remote);
    this.present.add(remote);
    // back without its state: the old leaf goes, then it is added again
    if (!event.resumed && this.members().has(remote)) this.#stale.add(remote);
    await this.#reconcile();
  }

  async onPresenceLeft(event) {
    const remote = event.identity;
    if (event.dropped && this.config.reconnectGrace > 0 && this.present.has(remote) && this.members().has(remote)) {
      // it may be back soon (a dropped connection, another instance): its leaf stays meanwhile
      this.present.delete(remote);
      this.#resuming.delete(remote);
      this.#away.set(remote, null);
    } else {
      await this.#left(remote);
    }
    await this.#reconcile();
  }

  async #left(remote) {
    this.#resuming.delete(remote);
    this.#away.delete(remote);
    this.present.delete(remote);
    if (this.group === null && this.#creating === null && this.roomGroup === null
        && !this.removed && this.#smallest()) {
      await this.#createGroup(); // whoever would have created the group left first
    }
  }

  async onGroupReset() {
    if (this.group !== null || this.#creating !== null) return; // only newcomers waiting to be added are told
    this.roomGroup = null;
    if (this.#smallest()) await this.#createGroup();
    else await this.#publish(); // the old group's KeyPackages went with it
  }

  async onReconnected(event) {
    this.#now = Math.max(this.#now, event.now);
    const groupId = event.groupId ?? null;
    if (this.group !== null && groupId !== null && !sameId(groupId, this.group.groupId)) {
      await this.#forgetGroup(); // the room was started afresh while we were away
      this.#emit({ type: 'group_left', reason: 'wrong_group' });
      await this.#publish();
    }
    this.roomGroup = groupId;
    const here = new Set(event.present.filter((x) => x !== this.identity));
    for (const x of here) this.seen.add(x);
    for (const remote of this.present) {
      if (!here.has(remote)) this.#resuming.set(remote, event.now + this.config.reconnectGrace);
    }
    const group = this.group;
    if (group !== null && event.epoch === Number(group.epoch) && await group.hasPendingCommit()) {
      await group.discardPendingCommit(); // the room is still at its epoch: not accepted
    }
    this.#requests.clear(); // their answers are lost with the old connection
    const creating = this.#creating;
    this.#creating = null;
    if (creating !== null && sameId(creating.groupId, groupId)) {
      await this.#created(creating); // our group.create got in
    } else if (creating !== null) {
      await creating.deleteState();
      if (groupId === null && this.#smallest()) await this.#createGroup();
      else await this.#publish();
    }
    const members = this.members();
    for (const remote of sortedStrings(here)) {
      if (this.present.has(remote)) continue;
      this.present.add(remote);
      const wasAway = this.#away.delete(remote);
      if (!wasAway && members.has(remote)) this.#stale.add(remote); // back while we were away, maybe without its state
    }
    await this.#reconcile();
  }

  async onReconnectRefused(event) {
    this.ended = true;
    this.#emit({ type: 'call_ended', reason: event.code });
  }

  // -- timers --------------------------------------------------------------------

  async onTick(event) {
    this.#now = Math.max(this.#now, event.now);
    for (const [remote, deadline] of this.#away) {
      if (deadline === null) this.#away.set(remote, this.#now + this.config.reconnectGrace);
    }
    for (const [remote, deadline] of [...this.#resuming, ...this.#away]) {
      if (deadline !== null && deadline <= this.#now) await this.#left(remote); // did not come back in time
    }
    const interval = this.config.selfUpdateInterval;
    if (interval !== null && interval !== undefined && this.group !== null) {
      if (this.#nextUpdate === null) {
        this.#nextUpdate = this.#now + interval;
      } else if (this.#now >= this.#nextUpdate) {
        this.#updateWanted = true;
        this.#nextUpdate = this.#now + interval;
      }
    }
    await this.#maintain();
    this.#checkWaiting();
  }

  /**
   * Waiting for a Welcome in a room with a group: after `rejoinAfter`, rejoin
   * (as a newcomer, which the server does not count as a member of an
   * abandoned group).
   */
  #checkWaiting() {
    const limit = this.config.rejoinAfter;
    if (this.group !== null || this.#creating !== null || this.roomGroup === null
        || limit === null || limit === undefined || this.ended) {
      this.#waitingSince = null;
    } else if (this.#waitingSince === null) {
      this.#waitingSince = this.#now;
    } else if (this.#now - this.#waitingSince >= limit) {
      this.#waitingSince = this.#now;
      // as Python's f"{limit:g}": six significant digits
      this.#emit({ type: 'rejoin', catchUp: false, reason: `waited ${Number(limit.toPrecision(6))} s to be added` });
    }
  }

  async onSelfUpdateWanted() {
    this.#updateWanted = true;
    await this.#maintain();
  }

  async #maintain() {
    if (this.ended) return;
    await this.#reconcile();
    if (this.group === null && this.#creating === null && (
      this.#publishedAt === null || this.#now - this.#publishedAt >= this.config.keyPackageInterval)) {
      await this.#publish(); // still waiting: a fresh one, to be added
    }
    const group = this.group;
    if (this.#updateWanted && group !== null && !this.busy && !(await group.hasPendingCommit())) {
      const output = await group.update();
      this.#submit(output.commit, [], 'update', []);
    }
  }

  // -- requests ------------------------------------------------------------------

  async #publish() {
    this.#publishedAt = this.#now;
    this.keyPackagesPublished += 1;
    const keyPackage = await this.mls.generateKeyPackage(this.record.clientId, this.#credential);
    this.#emit({ type: 'publish_key_package', keyPackage: keyPackage.content });
  }

  async #createGroup() {
    const group = await this.mls.groupCreate(this.record.clientId, this.#credential);
    this.#creating = group;
    const epoch = Number(group.epoch);
    const request = this.#request('create', epoch);
    this.#emit({ type: 'create_group', request, groupId: group.groupId, epoch, groupInfo: await group.groupInfo() });
  }

  #submit(commit, welcomes, purpose, identities) {
    const group = this.group;
    const epoch = Number(group.epoch);
    const request = this.#request(purpose, epoch, identities);
    this.#emit({ type: 'submit_commit', request, groupId: group.groupId, epoch, commit, welcomes, purpose, identities });
  }

  async onRequestAccepted(event) {
    const request = this.#requests.get(event.request);
    if (request === undefined) return;
    this.#requests.delete(event.request);
    if (request.kind === 'create') {
      const group = this.#creating;
      this.#creating = null;
      await this.#created(group);
      return;
    }
    const group = this.group;
    if (group === null || Number(group.epoch) !== request.epoch || !(await group.hasPendingCommit())) {
      return; // its echo came first and merged it, or the group moved on
    }
    await group.applyPendingCommit();
    this.roomGroup = group.groupId;
    if (request.kind === 'update') this.#updateWanted = false;
    await this.#epochChanged('own');
    await this.#reconcile();
  }

  /** The room's group is the one we created. */
  async #created(group) {
    this.group = group;
    this.roomGroup = group.groupId;
    this.removed = false;
    this.#checked = new Map();
    await this.#epochChanged('create');
    await this.#reconcile();
  }

  async onRequestRefused(event) {
    const request = this.#requests.get(event.request);
    if (request === undefined) return;
    this.#requests.delete(event.request);
    if (request.kind === 'create') {
      const creating = this.#creating;
      this.#creating = null;
      if (creating !== null) await creating.deleteState();
      await this.#publish(); // another group got there first: wait to be added to it
      return;
    }
    const group = this.group;
    if (group === null) return;
    if (Number(group.epoch) === request.epoch && await group.hasPendingCommit()) await group.discardPendingCommit();
    if (event.code === 'conflict') {
      this.conflicts += 1; // the winner is next in the log; the work is retried if still needed
    } else if (event.code === 'wrong_group') {
      // the room carries another group (it won the room, or ours was dropped as abandoned)
      await this.#forgetGroup();
      this.roomGroup = null;
      this.#emit({ type: 'group_left', reason: 'wrong_group' });
      await this.#publish();
    }
  }

  async onRequestUnanswered(event) {
    // a commit stays pending: the log brings its echo (merged) or the winner (replaces it)
    const request = this.#requests.get(event.request);
    if (request === undefined) return;
    if (request.kind === 'create' && this.#creating !== null) return; // the reconnect reply tells
    this.#requests.delete(event.request);
  }

  async onKeyPackagesClaimed(event) {
    const request = this.#requests.get(event.request);
    this.#requests.delete(event.request);
    const group = this.group;
    if (request === undefined || group === null || await group.hasPendingCommit()) return;
    const members = this.members();
    const chosen = new Map();
    for (const [identity, packages] of event.keyPackages) {
      if (!request.identities.includes(identity) || members.has(identity) || !this.present.has(identity)) continue;
      // the directory hands out the oldest first; older ones may be of an earlier run
      for (const keyPackage of [...packages].reverse()) {
        if (keyPackageIdentity(keyPackage) === identity) {
          chosen.set(identity, keyPackage);
          break;
        }
      }
    }
    if (chosen.size === 0) return; // not published yet: the next tick retries
    let output;
    try {
      output = await group.addMany([...chosen.values()]);
    } catch (err) {
      if (err instanceof MLSError) return; // e.g. a KeyPackage that does not validate: the next tick claims afresh
      throw err;
    }
    const added = sortedStrings(chosen.keys());
    const welcomes = added.map((to) => ({ to, welcome: output.welcome }));
    this.#submit(output.commit, welcomes, 'add', added);
  }

  // -- the log -------------------------------------------------------------------

  async #seenSeq(seq) {
    if (this.record !== null && seq > this.record.lastSeq) {
      this.record.lastSeq = seq;
      await this.#save();
    }
  }

  async onCommitDelivered(event) {
    await this.#seenSeq(event.seq);
    if (this.roomGroup === null) this.roomGroup = event.groupId;
    const group = this.group;
    if (group === null || !sameId(event.groupId, group.groupId)) return; // not (yet) a member: the Welcome brings us in
    const epoch = Number(group.epoch);
    if (event.epoch < epoch) return; // our own commit, applied when it was accepted
    if (event.epoch > epoch) {
      this.#emit({ type: 'rejoin', catchUp: true, reason: `a commit for epoch ${event.epoch} while at ${epoch}` });
      return;
    }
    let received;
    try {
      received = await group.receive(event.commit);
    } catch (err) {
      if (err instanceof MLSError) return; // a commit the server accepted but we cannot process: its sender's fault
      throw err;
    }
    if (received.removed) {
      await this.#forgetGroup();
      this.removed = true;
      this.#emit({ type: 'group_left', reason: 'removed' });
      await this.#publish();
    } else if (received.type === 'commit-processed') {
      if (received.own) {
        for (const [number, request] of [...this.#requests]) {
          if (['add', 'remove', 'update'].includes(request.kind) && request.epoch === event.epoch) {
            this.#requests.delete(number);
            if (request.kind === 'update') this.#updateWanted = false;
          }
        }
      }
      await this.#epochChanged(received.own ? 'own' : 'commit');
      await this.#reconcile();
    }
  }

  async onProposalDelivered(event) {
    await this.#seenSeq(event.seq);
    const group = this.group;
    if (group === null || !sameId(event.groupId, group.groupId) || event.epoch !== Number(group.epoch)) return;
    let received;
    try {
      received = await group.receive(event.proposal);
    } catch (err) {
      if (err instanceof MLSError) return;
      throw err;
    }
    if (received.type === 'commit-output') await group.discardPendingCommit(); // our next commit includes it by reference
  }

  async onWelcomeDelivered(event) {
    await this.#seenSeq(event.seq);
    if (this.group !== null || this.record === null) return;
    let group;
    try {
      group = await this.mls.groupJoin(this.record.clientId, event.welcome);
    } catch (err) {
      if (err instanceof MLSError) return; // e.g. a Welcome for a KeyPackage of an earlier run
      throw err;
    }
    const expected = this.roomGroup !== null ? this.roomGroup : event.groupId;
    let problem = null;
    if (!sameId(group.groupId, expected) || !sameId(group.groupId, event.groupId)) {
      problem = {
        type: 'trust_warning', kind: 'foreign_welcome', identity: event.sender, leafIndex: null,
        detail: "the Welcome is not for the room's group",
      };
    } else {
      const counts = new Map();
      for (const member of (await group.details()).members) {
        const identity = credentialIdentity(member.credential) ?? '';
        counts.set(identity, (counts.get(identity) ?? 0) + 1);
        if (identity !== this.identity && !this.present.has(identity) && !this.seen.has(identity)) {
          problem = {
            type: 'trust_warning', kind: 'welcome_members', identity, leafIndex: member.leafIndex,
            detail: 'a leaf of the Welcome is no participant of the room',
          };
          break;
        }
      }
      const doubled = [...counts].filter(([, n]) => n > 1).map(([identity]) => identity);
      if (problem === null && doubled.length > 0) {
        problem = {
          type: 'trust_warning', kind: 'welcome_members', identity: doubled[0], leafIndex: null,
          detail: 'the Welcome gives one identity two leaves',
        };
      }
    }
    if (problem !== null) {
      await group.deleteState();
      this.#emit(problem);
      this.#emit({ type: 'group_left', reason: 'welcome_refused' });
      await this.#publish();
      return;
    }
    this.group = group;
    this.roomGroup = group.groupId;
    this.removed = false;
    this.#checked = new Map();
    await this.#epochChanged('welcome');
  }

  async onApplicationDelivered(event) {
    await this.#seenSeq(event.seq);
    const group = this.group;
    if (group === null) return;
    let received;
    try {
      received = await group.receive(event.ciphertext);
    } catch (err) {
      if (err instanceof MLSError) return;
      throw err;
    }
    const { sender } = received;
    if (received.type !== 'application-message-plaintext' || sender === null) return;
    const identity = credentialIdentity(sender.credential) ?? '';
    if (identity !== event.sender) {
      this.#emit({
        type: 'trust_warning', kind: 'sender_mismatch', identity, leafIndex: sender.leafIndex,
        detail: `the server says it is from ${JSON.stringify(event.sender)}`,
      });
    }
    const flag = this.#flags.get(sender.leafIndex);
    if (flag !== undefined) {
      this.#emit({
        type: 'trust_warning', kind: flag, identity, leafIndex: sender.leafIndex,
        detail: 'a chat message from an untrusted leaf',
      });
      return;
    }
    this.#emit({
      type: 'chat_received', sender: identity, leafIndex: sender.leafIndex, text: received.content, epoch: Number(received.epoch),
    });
  }

  async onSendChat(event) {
    const group = this.group;
    if (group === null || await group.hasPendingCommit()) return;
    const text = typeof event.text === 'string' ? new TextEncoder().encode(event.text) : event.text;
    const ciphertext = await group.send(text);
    this.#emit({ type: 'send_application', epoch: Number(group.epoch), ciphertext: ciphertext.content });
  }

  async onKeyAccepted(event) {
    let changed = false;
    for (const leaf of this.leaves()) {
      if (leaf.identity === event.identity && leaf.flag === 'key_changed') {
        this.record.knownKeys[leaf.identity] = toHex(leaf.clientId);
        this.#flags.delete(leaf.leafIndex);
        changed = true;
      }
    }
    if (changed && this.group !== null) {
      await this.#save();
      this.#emit({ type: 'media_trust', epoch: Number(this.group.epoch), blockedSenders: this.blockedSenders() });
    }
  }

  // -- rules ---------------------------------------------------------------------

  #smallest() {
    return [...this.present].every((other) => this.identity < other);
  }

  #admitted(identity) {
    return this.config.admit === null || this.config.admit === undefined || this.config.admit(identity);
  }

  /** Checks the leaves this epoch brought (new, or with another signature key). */
  #checkLeaves() {
    const members = this.#members;
    const current = new Map(members.map((m) => [m.leafIndex, m.clientHex]));
    for (const [index] of [...this.#flags]) {
      if (this.#checked.get(index) !== current.get(index)) this.#flags.delete(index);
    }
    const established = new Map();
    for (const member of members) {
      const flag = this.#flags.get(member.leafIndex);
      if (this.#checked.get(member.leafIndex) === member.clientHex && (flag === undefined || flag === 'key_changed')) {
        established.set(member.identity, member.leafIndex);
      }
    }
    const known = this.record.knownKeys;
    for (const member of [...members].sort((a, b) => a.leafIndex - b.leafIndex)) {
      if (this.#checked.get(member.leafIndex) === member.clientHex) continue;
      const { identity } = member;
      let flag = '';
      if (established.has(identity) && established.get(identity) !== member.leafIndex) {
        flag = 'duplicate_identity';
      } else if (identity !== this.identity && !this.present.has(identity) && !this.seen.has(identity)) {
        flag = 'not_present';
      } else if (identity in known && known[identity] !== member.clientHex) {
        flag = 'key_changed';
      } else {
        if (!(identity in known)) known[identity] = member.clientHex;
        established.set(identity, member.leafIndex);
      }
      if (flag !== '') {
        this.#flags.set(member.leafIndex, flag);
        this.#emit({ type: 'trust_warning', kind: flag, identity, leafIndex: member.leafIndex, detail: '' });
      }
    }
    this.#checked = current;
  }

  /** Checks the new epoch's leaves, then gives it to SFrame (RFC 9605 §5.2). */
  async #epochChanged(cause) {
    const group = this.group;
    await this.#refresh();
    this.#checkLeaves();
    this.record.groupId = group.groupId;
    await this.#save();
    const details = this.#details;
    const members = this.members();
    this.#stale = new Set([...this.#stale].filter((x) => members.has(x)));
    this.#away = new Map([...this.#away].filter(([x]) => members.has(x))); // leaves kept
    const epoch = Number(details.epoch);
    this.#emit({
      type: 'install_epoch',
      epoch,
      exporter: group,
      ownIndex: details.leafIndex,
      leafCount: details.leafCount,
      cause,
      members: sortedStrings(members.keys()),
      blockedSenders: this.blockedSenders(),
    });
    const after = { own: this.config.confirmDelay, commit: this.config.switchDelay }[cause] ?? 0.0;
    this.#emit({ type: 'switch_sending_key', epoch, after });
  }

  /**
   * The present member shown with the lowest leaf index commits (not a stale
   * one: back on a new connection, it may have lost the group's state).
   */
  #committer() {
    let lowest = null;
    for (const [identity, leafIndex] of this.members()) {
      const here = identity === this.identity || (this.present.has(identity) && !this.#stale.has(identity));
      if (here && (lowest === null || leafIndex < lowest.leafIndex)) lowest = { identity, leafIndex };
    }
    return lowest !== null && lowest.identity === this.identity;
  }

  /** As the committer, brings the group to the admitted participants present. */
  async #reconcile() {
    const group = this.group;
    if (group === null || this.busy || this.ended || await group.hasPendingCommit()) return;
    if (!this.#committer()) return;
    const members = this.members();
    const joiners = sortedStrings([...this.present].filter((x) => !members.has(x) && this.#admitted(x)));
    // a joiner refuses a Welcome naming a participant it never saw present (onWelcomeDelivered):
    // with joiners waiting, the leaves of members away go first (their grace is cut short)
    const wanted = new Set([...this.present, ...this.#resuming.keys(), ...(joiners.length > 0 ? [] : this.#away.keys())]);
    for (const leaf of [...this.leaves()].sort((a, b) => a.leafIndex - b.leafIndex)) {
      if (leaf.identity === this.identity && leaf.leafIndex === group.leafIndex) continue;
      if (leaf.flag === 'duplicate_identity' || leaf.flag === 'not_present' || !wanted.has(leaf.identity)
          || this.#stale.has(leaf.identity) || !this.#admitted(leaf.identity)) {
        const output = await group.remove(leaf.clientId);
        this.#submit(output.commit, [], 'remove', [leaf.identity]);
        return; // one epoch at a time; the next tick continues
      }
    }
    // nor may it name a member present before our reconnection and not back yet: joiners wait
    if (joiners.length > 0 && ![...members.keys()].some((identity) => this.#resuming.has(identity))) {
      this.#emit({ type: 'claim_key_packages', request: this.#request('claim', Number(group.epoch), joiners), identities: joiners });
    }
  }

  // -- the persisted record ------------------------------------------------------

  get #recordKey() {
    return `${RECORD_NAMESPACE}/${this.identity}`;
  }

  async #loadRecord() {
    const stored = await this.store.get(this.#recordKey);
    if (typeof stored === 'string') {
      let record = null;
      try {
        record = ClientRecord.decode(stored);
      } catch {
        record = null;
      }
      if (record !== null && await this.store.get(identityKey(record.clientId)) !== undefined) {
        this.record = record;
        return;
      }
    }
    const clientId = (await this.mls.generateIdentity()).content;
    this.record = new ClientRecord(this.identity, clientId);
    this.record.knownKeys[this.identity] = toHex(clientId);
    await this.#save();
  }

  async #save() {
    if (this.record !== null) await this.store.put(this.#recordKey, this.record.encode());
  }

  async #forgetGroup() {
    if (this.group !== null) await this.group.deleteState();
    this.group = null;
    this.#members = [];
    this.#details = null;
    this.#flags = new Map();
    this.#checked = new Map();
    if (this.record !== null) {
      this.record.groupId = null;
      await this.#save();
    }
  }
}

/** Event type -> handler, as Python's `_on_<ClassName>`. */
const HANDLERS = {
  room_joined: Membership.prototype.onRoomJoined,
  presence_joined: Membership.prototype.onPresenceJoined,
  presence_left: Membership.prototype.onPresenceLeft,
  commit_delivered: Membership.prototype.onCommitDelivered,
  proposal_delivered: Membership.prototype.onProposalDelivered,
  welcome_delivered: Membership.prototype.onWelcomeDelivered,
  application_delivered: Membership.prototype.onApplicationDelivered,
  request_accepted: Membership.prototype.onRequestAccepted,
  request_refused: Membership.prototype.onRequestRefused,
  request_unanswered: Membership.prototype.onRequestUnanswered,
  key_packages_claimed: Membership.prototype.onKeyPackagesClaimed,
  group_reset: Membership.prototype.onGroupReset,
  reconnected: Membership.prototype.onReconnected,
  reconnect_refused: Membership.prototype.onReconnectRefused,
  tick: Membership.prototype.onTick,
  self_update_wanted: Membership.prototype.onSelfUpdateWanted,
  key_accepted: Membership.prototype.onKeyAccepted,
  send_chat: Membership.prototype.onSendChat,
};
