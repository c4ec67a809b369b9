/**
 * One participant of an MLS-keyed, SFrame-encrypted mesh call: the
 * browser's CallPeer. It follows media/call_peer.py rule for rule, so that
 * browsers and Python peers form one MLS group in one room:
 *
 * - **MLS membership** (RFC 9420). The first participant of a room creates
 *   its group (§11); everyone else publishes a KeyPackage (§10), a fresh one
 *   every `keyPackageInterval` while waiting for a Welcome (§12.4.3.1). One
 *   committer at a time, the present member with the lowest leaf index,
 *   commits Removes for members who left or reconnected (one per epoch),
 *   then Adds for participants present but not in the group (their newest
 *   KeyPackage). The delivery service accepts one commit per epoch (§14):
 *   after `conflict` the winning commit comes through the log and the work
 *   is retried if still needed.
 * - **Mesh**. One PeerLink per other participant present, the smaller
 *   identity offering; links follow presence, not membership.
 * - **Keys** (RFC 9605 §5.2). Each epoch goes to the one SFrameMLSSession:
 *   receivers use it at once; this member sends under it `confirmDelay`
 *   seconds after our own commit was accepted, `switchDelay` seconds after
 *   another member's commit, at once after creating or joining.
 *
 * Everything MLS runs in one loop, one event at a time (`#run`).
 * Events: "change" whenever the state shown to the user changes.
 * @module app/call
 */

import { bytesEqual } from '../mls/bytes.js';
import { MLSError } from '../mls/errors.js';
import { MLS } from '../mls/mls.js';
import { decodeCredentialBytes, decodeMessage, framingInfo } from '../mls/wire.js';
import { SFrameError } from '../sframe/errors.js';
import { SFrameMLSSession } from '../sframe-transform.js';
import { PeerLink } from './link.js';
import { ErrorCode, SignalingClient, SignalingError } from './signaling.js';
import { verificationCode } from './verification.js';

/** As media.call_peer.CallOptions (seconds). */
export const DEFAULT_OPTIONS = Object.freeze({
  loopback: true,
  iceServers: [],
  confirmDelay: 0.2,
  switchDelay: 0.3,
  keyPackageInterval: 1.0,
  retryInterval: 0.25,
  requestTimeout: 10,
  // SFrame KID layout and retention (RFC 9605 §5.2): the same as the Python
  // peers' CallOptions.sframe_epoch_bits / sframe_retain_epochs
  sframeEpochBits: 8,
  sframeRetainEpochs: 8,
});

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

/**
 * The epoch in the header of an MLS PrivateMessage (RFC 9420 §6.3.1): the
 * epoch of the state that encrypted it, which the application envelope must
 * carry (the delivery service checks the two agree, docs/protocol.md).
 */
export function privateMessageEpoch(message) {
  return Number(framingInfo(decodeMessage(message, ['mls_private_message'], 'application message')).epoch);
}

/** Errors of the call's parts that a step may meet and survive (media/call_peer.py logs them). */
function expected(err) {
  return err instanceof MLSError || err instanceof SignalingError || err instanceof SFrameError;
}

/** How often the links audit their senders (ms). */
const AUDIT_INTERVAL_MS = 1000;

const toNumber = (value) => (value === null || value === undefined ? null : Number(value));

export class Call extends EventTarget {
  /**
   * @param {object} init
   * @param {string} init.wsUrl
   * @param {string} init.room
   * @param {string} init.token a room token (docs/protocol.md) naming this participant
   * @param {MediaStream} init.stream camera and microphone
   * @param {Partial<typeof DEFAULT_OPTIONS>} [init.options]
   * @param {MLS} [init.mls] default: a new MLS over IndexedDB
   * @param {SFrameMLSSession} [init.session] default: a new session on the shared SFrame worker
   */
  constructor({ wsUrl, room, token, stream, options = {}, mls, session }) {
    super();
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.room = room;
    this.stream = stream;
    this.client = new SignalingClient(wsUrl, room, token, { requestTimeout: this.options.requestTimeout });
    this.mls = mls ?? new MLS();
    this.session = session ?? new SFrameMLSSession({
      epochBits: this.options.sframeEpochBits, retainEpochs: this.options.sframeRetainEpochs,
    });
    this.identity = '';
    /** @type {import('../mls/group.js').MLSGroupView|null} */
    this.group = null;
    /** identity -> {leafIndex, clientId} of every member, as of our epoch */
    this.members = new Map();
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    /** @type {Map<string, MediaStream>} what each participant sends us */
    this.remoteStreams = new Map();
    this.present = new Set();
    this.epochs = [];
    this.verification = null;
    this.removed = false;
    this.ended = false;
    this.conflicts = 0;
    /** MLS application messages: {from, text, at} */
    this.messages = [];
    /** members who reconnected: removed, then added again */
    this.stale = new Set();
    /** a commit of ours sent without an answer: the log brings its echo or the winner */
    this.awaitingEcho = false;
    this.clientId = null;
    this.credential = null;
    this.roomGroup = null;
    this.publishedAt = 0;
    this.stopped = false;
    this.inbox = [];
    this.wake = null;
    this.ticker = null;
    this.auditor = null;
    this.loop = null;
  }

  // -- life cycle ----------------------------------------------------------------

  /** Joins the room, publishes a KeyPackage (or creates the group if first), opens the links. */
  async start() {
    this.clientId = await this.mls.generateIdentity();
    this.client.onevent = (event) => this.#push(event);
    const reply = await this.client.connect();
    this.identity = reply.identity;
    this.credential = await this.mls.generateCredential(this.identity);
    this.roomGroup = reply.group_id ?? null;
    this.present = new Set(reply.members ?? []);
    // the smallest identity present creates the group (as after a group_reset): someone already
    // here without a group may be waiting for a creator, or never create one
    if (this.roomGroup === null && [...this.present].every((other) => this.identity < other)) await this.#createGroup();
    else await this.#publishKeyPackage();
    for (const remote of [...this.present].sort()) this.#openLink(remote);
    this.loop = this.#run();
    this.ticker = setInterval(() => this.#push({ type: 'tick' }), this.options.retryInterval * 1000);
    this.auditor = setInterval(() => this.#push({ type: 'audit' }), AUDIT_INTERVAL_MS);
    this.#changed();
  }

  /** Leaves the room and releases every connection (idempotent). */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.ticker);
    clearInterval(this.auditor);
    this.wake?.();
    await this.loop;
    await this.client.leave();
    for (const remote of [...this.links.keys()]) this.#closeLink(remote);
    this.session.close();
    if (this.group !== null) await this.group.deleteState();
    this.group = null;
    this.ended = true;
    this.#changed();
  }

  /** Sends `text` to the group as an MLS application message (RFC 9420 §6.3). */
  sendMessage(text) {
    return new Promise((resolve, reject) => this.#push({ type: 'send', text, resolve, reject }));
  }

  // -- status --------------------------------------------------------------------

  /**
   * A JSON-friendly snapshot: group, presence, links and the SFrame counters
   * per remote participant and stream (from the session's stats).
   */
  async status() {
    const stats = await this.session.stats();
    const remotes = {};
    for (const receiver of stats.receivers) {
      if (receiver.label === null) continue;
      const [remote, kind] = receiver.label.split('/');
      remotes[remote] ??= {};
      const entry = remotes[remote][kind] ??= {
        decrypted: 0, failures: { keyID: 0, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 }, byEpoch: {},
      };
      entry.decrypted += receiver.framesDecrypted;
      for (const [failure, count] of Object.entries(receiver.failures)) entry.failures[failure] += count;
      for (const [epoch, count] of Object.entries(receiver.framesByEpoch)) {
        entry.byEpoch[epoch] = (entry.byEpoch[epoch] ?? 0) + count;
      }
    }
    const links = {};
    for (const [remote, link] of this.links) {
      links[remote] = {
        offerer: link.offerer,
        state: link.connectionState,
        failed: link.failed,
        gatheredLoopback: link.gatheredLoopback,
        counters: structuredClone(link.counters),
      };
    }
    return {
      identity: this.identity,
      room: this.room,
      epoch: this.group === null ? null : Number(this.group.epoch),
      members: [...this.members.keys()].sort(),
      present: [...this.present].sort(),
      verification: this.verification,
      sendingEpoch: toNumber(stats.sendingEpoch),
      framesEncrypted: stats.framesEncrypted,
      framesDropped: stats.senders.reduce((sum, s) => sum + s.framesDropped, 0),
      framesDecrypted: stats.framesDecrypted,
      failures: stats.failures,
      remotes,
      links,
      epochs: this.epochs.map((e) => ({ ...e })),
      removed: this.removed,
      ended: this.ended,
      conflicts: this.conflicts,
      messages: this.messages.map((m) => ({ ...m })),
    };
  }

  // -- event loop ----------------------------------------------------------------

  #push(event) {
    this.inbox.push(event);
    this.wake?.();
  }

  async #run() {
    while (!this.stopped) {
      if (this.inbox.length === 0) {
        await new Promise((resolve) => { this.wake = resolve; });
        this.wake = null;
        continue;
      }
      const event = this.inbox.shift();
      try {
        await this.#handle(event);
        event.resolve?.();
      } catch (err) {
        event.reject?.(err);
        if (this.stopped) return;
        if (expected(err)) console.warn(`${this.identity}: ${err.message} while handling ${event.type}`);
        else console.error(`${this.identity}: failure while handling ${event.type}`, err);
      }
    }
    for (const event of this.inbox.splice(0)) event.reject?.(new SignalingError(ErrorCode.CLOSED, 'the call ended'));
  }

  async #handle(event) {
    switch (event.type) {
      case 'presence': await this.#onPresence(event.event, event.identity); break;
      case 'commit': await this.#onCommit(event); break;
      case 'welcome': await this.#onWelcome(event); break;
      case 'group_reset': await this.#onGroupReset(); break;
      case 'application': await this.#onApplication(event); break;
      case 'offer': case 'answer': case 'candidate': this.#onSignal(event.type, event.from, event.data); break;
      case 'tick': await this.#maintain(); break;
      case 'send': await this.#send(event.text); break;
      case 'audit': await this.#audit(); break;
      case 'error':
        if (event.code === ErrorCode.REPLACED) this.#end('replaced by a newer connection');
        else console.warn(`${this.identity}: server error ${event.code}: ${event.message}`);
        break;
      case 'closed': this.#end('the signaling connection closed'); break;
      default: break; // unknown event types are ignored (docs/protocol.md, Versioning)
    }
  }

  #end(reason) {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    console.info(`${this.identity}: ${reason}`);
    this.#changed();
  }

  #changed() {
    this.dispatchEvent(new Event('change'));
  }

  // -- presence and mesh ---------------------------------------------------------

  async #onPresence(what, remote) {
    if (remote === this.identity) return;
    if (what === 'join') {
      this.present.add(remote);
      if (this.links.has(remote)) this.#closeLink(remote); // a rejoin replaced its old connection
      // a member back with a new connection may have lost its state: removed, then added again
      if (this.members.has(remote)) this.stale.add(remote);
      this.#openLink(remote);
    } else if (what === 'leave') {
      this.present.delete(remote);
      this.#closeLink(remote);
      if (this.group === null && this.roomGroup === null && !this.removed
          && [...this.present].every((other) => this.identity < other)) {
        await this.#createGroup(); // whoever would have created the group left first
      }
    }
    this.#changed();
    await this.#reconcile();
  }

  /**
   * The server dropped the room's group, none of whose members was left to add
   * us (docs/protocol.md, abandoned rooms): start afresh as in an empty room.
   */
  async #onGroupReset() {
    if (this.group !== null) return; // (only newcomers waiting to be added are told)
    this.roomGroup = null;
    if ([...this.present].every((other) => this.identity < other)) await this.#createGroup();
    else await this.#publishKeyPackage(); // the old group's KeyPackages went with it
    this.#changed();
    await this.#reconcile();
  }

  /** The link with `remote`; by default the smaller identity offers. */
  #openLink(remote, offerer = this.identity < remote) {
    const link = new PeerLink(remote, {
      offerer,
      session: this.session,
      stream: this.stream,
      sending: this.session.state.sendingEpoch !== null,
      signal: (kind, data) => this.#signal(remote, kind, data),
      onTrack: (track) => this.#onTrack(remote, track),
      loopback: this.options.loopback,
      iceServers: this.options.iceServers,
    });
    this.links.set(remote, link);
    return link;
  }

  #closeLink(remote) {
    const link = this.links.get(remote);
    if (link === undefined) return;
    this.links.delete(remote);
    link.close();
    this.remoteStreams.delete(remote);
    this.#changed();
  }

  async #signal(remote, kind, data) {
    try {
      await this.client.signal(kind, remote, data);
    } catch (err) {
      if (!(err instanceof SignalingError)) throw err;
      console.info(`${this.identity}: ${kind} to ${remote} not relayed: ${err.code}`);
    }
  }

  #onSignal(kind, remote, data) {
    let link = this.links.get(remote);
    if (kind === 'offer' && (link === undefined || link.negotiated)) {
      if (link !== undefined) this.#closeLink(remote); // the remote restarted: negotiate afresh
      link = this.#openLink(remote, false);
    }
    link?.deliver(kind, data);
  }

  #onTrack(remote, track) {
    if (this.links.get(remote)?.pc === undefined) return;
    let stream = this.remoteStreams.get(remote);
    if (stream === undefined) {
      stream = new MediaStream();
      this.remoteStreams.set(remote, stream);
    }
    stream.addTrack(track);
    this.#changed();
  }

  /** Every link checks that its encoders' output went through SFrame (PeerLink.audit). */
  async #audit() {
    const sealed = new Map();
    for (const sender of (await this.session.stats()).senders) {
      if (sender.label !== null) sealed.set(sender.label, (sealed.get(sender.label) ?? 0) + sender.framesEncrypted);
    }
    for (const link of this.links.values()) await link.audit(sealed);
  }

  async #updateSending() {
    const sending = this.session.state.sendingEpoch !== null;
    for (const link of this.links.values()) {
      if (link.sending !== sending) await link.setSending(sending);
    }
  }

  // -- MLS membership ------------------------------------------------------------

  async #publishKeyPackage() {
    this.publishedAt = performance.now() / 1000;
    const keyPackage = await this.mls.generateKeyPackage(this.clientId, this.credential);
    try {
      await this.client.publishKeyPackages([keyPackage.content]);
    } catch (err) {
      if (!(err instanceof SignalingError) || err.code !== ErrorCode.TOO_MANY_KEY_PACKAGES) throw err; // plenty left: fine
    }
  }

  /**
   * Creates the room's group and registers it with the delivery service: its
   * GroupInfo (with the ratchet tree) lets the server validate every later
   * handshake. When another participant's group got there first, waits to be
   * added to that one.
   */
  async #createGroup() {
    const group = await this.mls.groupCreate(this.clientId, this.credential);
    try {
      await this.client.createGroup(group.groupId, Number(group.epoch), await group.groupInfo());
    } catch (err) {
      if (!(err instanceof SignalingError) || err.code !== ErrorCode.WRONG_GROUP) throw err;
      console.info(`${this.identity}: the room has a group already; waiting to be added`);
      await group.deleteState();
      await this.#publishKeyPackage();
      return;
    }
    this.group = group;
    this.roomGroup = group.groupId;
    await this.#epochChanged('create');
  }

  async #onCommit(event) {
    if (this.roomGroup === null) this.roomGroup = event.group_id;
    const group = this.group;
    if (group === null || !(event.group_id instanceof Uint8Array) || !bytesEqual(event.group_id, group.groupId)) {
      return; // not (yet) a member: the Welcome will bring us in
    }
    if (!Number.isSafeInteger(event.epoch)) return;
    const epoch = BigInt(event.epoch);
    if (epoch < group.epoch) return; // our own commit, applied when it was acknowledged
    if (epoch > group.epoch) {
      console.warn(`${this.identity}: missed commits (group at epoch ${group.epoch}, commit for ${epoch})`);
      return;
    }
    const received = await group.receive(event.commit);
    this.awaitingEcho = false;
    if (received.removed) await this.#onRemoved();
    else if (received.type === 'commit-processed') await this.#epochChanged('commit');
  }

  async #onWelcome(event) {
    if (this.group !== null) return;
    let group;
    try {
      group = await this.mls.groupJoin(this.clientId, event.welcome);
    } catch (err) {
      if (!(err instanceof MLSError)) throw err;
      console.info(`${this.identity}: Welcome not usable: ${err.message}`); // e.g. for a KeyPackage of an earlier page
      return;
    }
    this.group = group;
    this.roomGroup = group.groupId;
    this.removed = false;
    await this.#epochChanged('welcome');
  }

  async #onRemoved() {
    console.info(`${this.identity}: removed from the group at epoch ${this.group.epoch}`);
    await this.group.deleteState();
    this.group = null;
    this.members = new Map();
    this.verification = null;
    this.removed = true;
    this.#changed();
  }

  async #onApplication(event) {
    if (this.group === null || !(event.ciphertext instanceof Uint8Array)) return;
    const received = await this.group.receive(event.ciphertext);
    if (received.type !== 'application-message-plaintext') return;
    let text;
    try {
      text = utf8.decode(received.content);
    } catch {
      text = `(${received.content.length} bytes, not text)`;
    }
    // who sent it is the MLS-authenticated sender's credential, not what the server says (event.from)
    const from = received.sender !== null ? credentialIdentity(received.sender.credential) : null;
    this.messages.push({ from: from ?? '(unknown sender)', text, at: Date.now() / 1000 });
    this.#changed();
  }

  async #send(text) {
    const group = this.group;
    if (group === null) throw new MLSError('invalidOperation', 'not in the group yet');
    const ciphertext = await group.send(text);
    // The envelope's epoch comes from the message itself: `group.epoch` may have moved on since
    // the state that encrypted it, and the delivery service refuses an envelope that disagrees.
    await this.client.sendApplication(privateMessageEpoch(ciphertext.content), ciphertext.content);
    this.messages.push({ from: this.identity, text, at: Date.now() / 1000 });
    this.#changed();
  }

  /** Gives the group's new epoch to the SFrame session (RFC 9605 §5.2). */
  async #epochChanged(cause) {
    const group = this.group;
    const details = await group.details();
    const size = Math.max(...details.members.map((m) => m.leafIndex)) + 1;
    const delay = { own: this.options.confirmDelay, commit: this.options.switchDelay }[cause] ?? null;
    await this.session.installEpoch(group, details.epoch, details.leafIndex, size, { switchAfter: delay });
    const members = new Map();
    for (const member of details.members) {
      const identity = credentialIdentity(member.credential);
      if (identity !== null) members.set(identity, { leafIndex: member.leafIndex, clientId: member.clientId });
    }
    this.members = members;
    this.stale = new Set([...this.stale].filter((identity) => members.has(identity)));
    if (delay === null && this.session.state.sendingEpoch !== details.epoch) await this.session.switchSender(details.epoch);
    this.epochs.push({ epoch: Number(details.epoch), members: details.members.length, cause, at: Date.now() / 1000 });
    this.verification = await verificationCode(await group.epochAuthenticator());
    console.info(`${this.identity}: epoch ${details.epoch} (${cause}), ${details.members.length} members`);
    await this.#updateSending();
    this.#changed();
  }

  #isCommitter() {
    let lowest = null;
    for (const [identity, { leafIndex }] of this.members) {
      if ((identity === this.identity || this.present.has(identity)) && (lowest === null || leafIndex < lowest.leafIndex)) {
        lowest = { identity, leafIndex };
      }
    }
    return lowest !== null && lowest.identity === this.identity;
  }

  /** As the committer, brings the group to the participants present. */
  async #reconcile() {
    if (this.group === null || this.awaitingEcho || !this.#isCommitter()) return;
    for (const identity of [...this.members.keys()].sort()) {
      if (identity !== this.identity && (!this.present.has(identity) || this.stale.has(identity))) {
        await this.#commitRemove(identity);
        return; // one epoch at a time; the next tick continues
      }
    }
    const joiners = [...this.present].filter((identity) => !this.members.has(identity)).sort();
    if (joiners.length > 0) await this.#commitAdd(joiners);
  }

  async #commitRemove(identity) {
    const output = await this.group.remove(this.members.get(identity).clientId);
    await this.#submit(output, new Map());
  }

  /** Adds the first joiner whose KeyPackage is available (one Add per commit). */
  async #commitAdd(joiners) {
    for (const identity of joiners) {
      const keyPackage = await this.#claim(identity);
      if (keyPackage === null) continue; // not published yet: the next tick retries
      if (keyPackageIdentity(keyPackage) !== identity) {
        console.warn(`${this.identity}: KeyPackage of ${identity} names someone else; skipped`);
        continue;
      }
      const output = await this.group.add(keyPackage);
      await this.#submit(output, new Map([[identity, output.welcome]]));
      return;
    }
  }

  /**
   * The newest KeyPackage of `identity`, or null. The directory hands out the
   * oldest first; older ones may be of an earlier run whose keys are gone.
   */
  async #claim(identity) {
    let newest = null;
    for (;;) {
      try {
        newest = await this.client.claimKeyPackage(identity);
      } catch (err) {
        if (err instanceof SignalingError && err.code === ErrorCode.NOT_FOUND) return newest;
        throw err;
      }
    }
  }

  async #maintain() {
    if (this.ended || !this.client.connected) return;
    await this.#reconcile();
    const waiting = performance.now() / 1000 - this.publishedAt >= this.options.keyPackageInterval;
    if (this.group === null && waiting) await this.#publishKeyPackage(); // still waiting: a fresh one
  }

  /**
   * Sends our pending commit; applies it once the delivery service accepted
   * it. A refusal leaves it unapplied (after `conflict` the winner is next in
   * the log); without an answer, the log brings its echo or the winner.
   */
  async #submit(output, welcomes) {
    const group = this.group;
    try {
      await this.client.commit(group.groupId, Number(group.epoch), output.commit, welcomes);
    } catch (err) {
      if (!(err instanceof SignalingError)) throw err;
      if (err.code === ErrorCode.TIMEOUT) {
        console.warn(`${this.identity}: no answer to our commit; waiting for the log`);
        this.awaitingEcho = true;
        return false;
      }
      if (err.code === ErrorCode.CLOSED) return false;
      if (err.code === ErrorCode.CONFLICT) {
        this.conflicts += 1;
      } else if (err.code === ErrorCode.WRONG_GROUP && !(this.roomGroup !== null && bytesEqual(this.roomGroup, group.groupId))) {
        // another participant's group won the room: wait to be added to it
        await group.deleteState();
        this.group = null;
        this.members = new Map();
      } else {
        throw err;
      }
      return false;
    }
    await group.applyPendingCommit();
    this.roomGroup = group.groupId;
    await this.#epochChanged('own');
    return true;
  }
}
