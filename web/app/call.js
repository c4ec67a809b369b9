/**
 * One participant of an MLS-keyed, SFrame-encrypted mesh call: the
 * browser's CallPeer. The membership rules (who commits, whom to add or
 * remove, when to install and switch epochs, whom to trust) are the
 * sans-I/O machine of membership.js, the JS port of media/membership.py
 * (docs/membership.md); this class only drives it, as CallPeer drives the
 * Python one:
 *
 * - it feeds the machine the signaling events (presence, log entries, the
 *   join and rejoin replies) and timer ticks, one at a time (`#run`);
 * - it carries out the actions the machine returns, in order: signaling
 *   requests (whose answers it feeds back), SFrame epoch installs and
 *   sender switches (RFC 9605 §5.2), trust warnings, chat;
 * - **Mesh**: one PeerLink per other participant present, the smaller
 *   identity offering; links follow presence, not membership;
 * - **SFU** (the join reply's `topology`, or a `topology` event while live,
 *   which closes the mesh links): SfuLinks, one publishing and one
 *   subscribing connection through the server's Janus (app/sfu.js);
 *   `sfu.feeds` resubscribes, `sfu.down` shows the media interrupted,
 *   `sfu.up` and a signaling rejoin republish and resubscribe; every
 *   received stream is attributed by its frames' KIDs, and one carrying
 *   another member's KID than first, or than the server's `from`, raises
 *   a trust warning (`sfu_kid_changed`, `sfu_from_mismatch`);
 * - **Reconnects**: when the signaling connection drops (a server restart),
 *   it rejoins with its log cursor (`since`) as a member, or as a newcomer
 *   while waiting to be added, and the machine catches up from the replayed
 *   entries; links with participants coming back are kept, so media goes on.
 *
 * Events: "change" whenever the state shown to the user changes.
 * @module app/call
 */

import { MLS, MLSError, defaultStore } from 'mlscall-web/mls';
import { SFrameError } from 'mlscall-web/sframe';
import { SFrameMLSSession } from 'mlscall-web/sframe-transform';
import { decodeMessage, framingInfo } from '../mls/wire.js';
import { PeerLink } from './link.js';
import { Membership } from './membership.js';
import { SfuLinks } from './sfu.js';
import { ErrorCode, SignalingClient, SignalingError } from './signaling.js';
import { verificationCode } from './verification.js';

/** As media.call_peer.CallOptions (seconds). */
export const DEFAULT_OPTIONS = Object.freeze({
  loopback: true,
  /** STUN/TURN servers; when empty, those of the join reply (`ice_servers`, docs/protocol.md) */
  iceServers: [],
  /** 'relay': TURN relay candidates only (tests of a TURN server) */
  iceTransportPolicy: 'all',
  confirmDelay: 0.2,
  switchDelay: 0.3,
  keyPackageInterval: 1.0,
  retryInterval: 0.25,
  requestTimeout: 10,
  /** rejoin for this long after the signaling connection drops (null: end the call at once) */
  reconnectTimeout: 30,
  /** commit an UpdatePath this often (null: never) */
  selfUpdateInterval: null,
  /** waiting this long to be added to the room's group, rejoin as a newcomer (null: never) */
  rejoinAfter: 30,
  // SFrame KID layout and retention (RFC 9605 §5.2): the same as the Python
  // peers' CallOptions.sframe_epoch_bits / sframe_retain_epochs
  sframeEpochBits: 8,
  sframeRetainEpochs: 8,
});

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The epoch in the header of an MLS PrivateMessage (RFC 9420 §6.3.1): the
 * epoch of the state that encrypted it, which the application envelope must
 * carry (the delivery service checks the two agree, docs/protocol.md).
 */
export function privateMessageEpoch(message) {
  return Number(framingInfo(decodeMessage(message, ['mls_private_message'], 'application message')).epoch);
}

/**
 * The STUN/TURN servers of a join reply's `ice_servers` (docs/protocol.md), as
 * media.call_peer.ice_servers_from_reply: a malformed entry is left out.
 */
export function iceServersFromReply(reply) {
  const entries = Array.isArray(reply.ice_servers) ? reply.ice_servers : [];
  const optional = (value) => value === undefined || value === null || typeof value === 'string';
  return entries.filter((entry) => {
    const urls = entry !== null && typeof entry === 'object' ? [entry.urls].flat() : [];
    return urls.length > 0 && urls.every((url) => typeof url === 'string')
      && optional(entry.username) && optional(entry.credential);
  });
}

/** Errors of the call's parts that a step may meet and survive (media/call_peer.py logs them). */
function expected(err) {
  return err instanceof MLSError || err instanceof SignalingError || err instanceof SFrameError;
}

/** How often the links audit their senders (ms). */
const AUDIT_INTERVAL_MS = 1000;

const toNumber = (value) => (value === null || value === undefined ? null : Number(value));
const seconds = () => performance.now() / 1000;
const sleep = (s) => new Promise((resolve) => { setTimeout(resolve, s * 1000); });

/** A chat text for display: the bytes as UTF-8, or a note when they are not text. */
function chatText(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    return `(${bytes.length} bytes, not text)`;
  }
}

export class Call extends EventTarget {
  /**
   * @param {object} init
   * @param {string} init.wsUrl
   * @param {string} init.room
   * @param {string} init.token a room token (docs/protocol.md) naming this participant
   * @param {MediaStream} init.stream camera and microphone
   * @param {Partial<typeof DEFAULT_OPTIONS>} [init.options]
   * @param {object} [init.store] the MLS state and the membership record (default: IndexedDB where available)
   * @param {MLS} [init.mls] default: a new MLS over `store`
   * @param {SFrameMLSSession} [init.session] default: a new session on the shared SFrame worker
   */
  constructor({ wsUrl, room, token, stream, options = {}, store, mls, session }) {
    super();
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.room = room;
    this.stream = stream;
    this.client = new SignalingClient(wsUrl, room, token, { requestTimeout: this.options.requestTimeout });
    const state = store ?? defaultStore();
    this.mls = mls ?? new MLS(state);
    this.membership = new Membership(this.mls, {
      store: state,
      config: {
        confirmDelay: this.options.confirmDelay,
        switchDelay: this.options.switchDelay,
        keyPackageInterval: this.options.keyPackageInterval,
        selfUpdateInterval: this.options.selfUpdateInterval,
        reconnectGrace: this.options.reconnectTimeout ?? 0,
        rejoinAfter: this.options.rejoinAfter,
      },
    });
    this.session = session ?? new SFrameMLSSession({
      epochBits: this.options.sframeEpochBits, retainEpochs: this.options.sframeRetainEpochs,
    });
    this.identity = '';
    /** the ICE servers of the last join reply (used when options.iceServers is empty) */
    this.serverIceServers = [];
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    /** @type {Map<string, MediaStream>} what each participant sends us */
    this.remoteStreams = new Map();
    /** 'mesh' or 'sfu' (the join reply's `topology`; a room never goes back to mesh while live) */
    this.topology = 'mesh';
    /** @type {SfuLinks|null} the media links in an SFU room */
    this.sfu = null;
    this.epochs = [];
    this.verification = null;
    this.ended = false;
    this.endReason = null;
    /** chat: {from (the MLS-authenticated sender), leafIndex, text, at} */
    this.messages = [];
    /** trust warnings of the machine: {kind, identity, leafIndex, detail, at} */
    this.warnings = [];
    /** successful rejoins after the signaling connection dropped */
    this.reconnects = 0;
    this.reconnecting = false;
    this.stopped = false;
    this.inbox = [];
    this.wake = null;
    this.ticker = null;
    this.auditor = null;
    this.loop = null;
    this.replaced = false;
    /** the install_epoch action waiting for its switch_sending_key */
    this.installing = null;
    /** per linked member: [group id (hex), the first epoch its link saw it a member in] */
    this.memberSince = new Map();
    /** @type {WeakMap<PeerLink, number|null>} the gate last given to each link's senders */
    this.gates = new WeakMap();
    /** the text of the chat message being sent */
    this.sending = null;
  }

  // -- the machine's state, as shown -----------------------------------------------

  /** @returns {import('../mls/group.js').MLSGroupView|null} */
  get group() {
    return this.membership.group;
  }

  /** Identity -> leaf index of the members shown (trusted leaves, and changed keys not accepted yet). */
  get members() {
    return this.membership.members();
  }

  get present() {
    return this.membership.present;
  }

  get roomGroup() {
    return this.membership.roomGroup;
  }

  get removed() {
    return this.membership.removed;
  }

  get conflicts() {
    return this.membership.conflicts;
  }

  /** Whether `remote`'s media may be shown: it has no leaf whose changed signature key is not accepted yet. */
  trusted(remote) {
    return !this.membership.leaves().some((leaf) => leaf.identity === remote && leaf.flag === 'key_changed');
  }

  // -- life cycle ------------------------------------------------------------------

  /** Joins the room; the machine creates the group or publishes a KeyPackage; opens the links. */
  async start() {
    this.client.onevent = (event) => this.#push(event);
    const reply = await this.client.connect();
    this.identity = reply.identity;
    this.serverIceServers = iceServersFromReply(reply);
    if (reply.topology === 'sfu') this.topology = 'sfu';
    await this.#feed({
      type: 'room_joined', identity: reply.identity, present: reply.members ?? [],
      groupId: reply.group_id ?? null, epoch: reply.epoch ?? null,
    });
    if (this.topology === 'sfu') this.#startSfu();
    else for (const remote of [...this.present].sort()) this.#openLink(remote);
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
    this.sfu?.close();
    this.session.close();
    if (this.group !== null) await this.group.deleteState();
    this.ended = true;
    this.#changed();
  }

  /** Sends `text` to the group as an MLS application message (RFC 9420 §6.3). */
  sendMessage(text) {
    return new Promise((resolve, reject) => this.#push({ type: 'send', text, resolve, reject }));
  }

  /** Accepts the changed signature key of `identity` (after a key_changed warning): its media is shown. */
  acceptKey(identity) {
    return new Promise((resolve, reject) => this.#push({ type: 'accept_key', identity, resolve, reject }));
  }

  // -- status ----------------------------------------------------------------------

  /**
   * A JSON-friendly snapshot: group, presence, links, trust warnings and the
   * SFrame counters per remote participant and stream (from the session's stats).
   */
  async status() {
    const stats = await this.session.stats();
    this.#attribute(stats.receivers);
    const remotes = {};
    const entryOf = (remote, kind) => {
      remotes[remote] ??= {};
      return remotes[remote][kind] ??= {
        decrypted: 0, failures: { keyID: 0, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 }, byEpoch: {},
      };
    };
    for (const receiver of stats.receivers) {
      if (receiver.label === null || receiver.label.startsWith('sfu/')) continue;
      const [remote, kind] = receiver.label.split('/');
      const entry = entryOf(remote, kind);
      entry.decrypted += receiver.framesDecrypted;
      for (const [failure, count] of Object.entries(receiver.failures)) entry.failures[failure] += count;
      for (const [epoch, count] of Object.entries(receiver.framesByEpoch)) {
        entry.byEpoch[epoch] = (entry.byEpoch[epoch] ?? 0) + count;
      }
    }
    // SFU streams: frames counted under the member whose KID they carry, failures under the stream's member
    for (const [identity, kinds] of this.sfu?.attribution.framesByIdentity() ?? []) {
      for (const [kind, frames] of kinds) entryOf(identity, kind).decrypted += frames;
    }
    for (const receiver of stats.receivers) {
      const stream = this.sfu?.attribution.streams.get(receiver.label);
      if (stream === undefined || stream.identity === null) continue;
      const entry = entryOf(stream.identity, stream.kind);
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
        ice: link.pc.iceConnectionState,
        failed: link.failed,
        gatheredLoopback: link.gatheredLoopback,
        counters: structuredClone(link.counters),
      };
    }
    return {
      identity: this.identity,
      room: this.room,
      groupId: this.group === null ? null : [...this.group.groupId].map((b) => b.toString(16).padStart(2, '0')).join(''),
      epoch: this.membership.epoch,
      members: [...this.members.keys()].sort(),
      leaves: this.membership.leaves().map(({ leafIndex, identity, flag }) => ({ leafIndex, identity, flag })),
      blockedSenders: this.membership.blockedSenders(),
      present: [...this.present].sort(),
      verification: this.verification,
      sendingEpoch: toNumber(stats.sendingEpoch),
      framesEncrypted: stats.framesEncrypted,
      framesDropped: stats.senders.reduce((sum, s) => sum + s.framesDropped, 0),
      framesDecrypted: stats.framesDecrypted,
      failures: stats.failures,
      remotes,
      links,
      topology: this.topology,
      sfu: this.sfu === null ? null : this.sfu.status(),
      epochs: this.epochs.map((e) => ({ ...e })),
      removed: this.removed,
      ended: this.ended,
      conflicts: this.conflicts,
      connected: Boolean(this.client.connected),
      reconnects: this.reconnects,
      warnings: this.warnings.map((w) => ({ ...w })),
      messages: this.messages.map((m) => ({ ...m })),
    };
  }

  // -- event loop ------------------------------------------------------------------

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
    const entry = (fields) => ({ seq: event.seq ?? 0, sender: event.from ?? '', epoch: event.epoch ?? -1, ...fields });
    switch (event.type) {
      case 'presence': await this.#onPresence(event.event, event.identity, event.resumed === true, event.dropped === true); break;
      case 'commit':
        await this.#feed(entry({ type: 'commit_delivered', groupId: event.group_id ?? null, commit: event.commit }));
        break;
      case 'proposal':
        await this.#feed(entry({ type: 'proposal_delivered', groupId: event.group_id ?? null, proposal: event.proposal }));
        break;
      case 'welcome':
        await this.#feed(entry({ type: 'welcome_delivered', groupId: event.group_id ?? null, welcome: event.welcome }));
        break;
      case 'application':
        await this.#feed(entry({ type: 'application_delivered', ciphertext: event.ciphertext }));
        break;
      case 'group_reset': await this.#feed({ type: 'group_reset' }); break;
      case 'offer': case 'answer': case 'candidate':
        if (this.topology === 'mesh') this.#onSignal(event.type, event.from, event.data);
        break;
      case 'topology': if (event.topology === 'sfu') this.#toSfu(); break;
      case 'sfu.feeds': this.sfu?.setFeeds(event.feeds); break;
      case 'sfu.down': this.sfu?.interrupt(); break;
      case 'sfu.up': this.sfu?.restart(); break;
      case 'tick':
        if (!this.ended && this.client.connected) await this.#feed({ type: 'tick', now: seconds() });
        break;
      case 'send': await this.#send(event.text); break;
      case 'accept_key': await this.#feed({ type: 'key_accepted', identity: event.identity }); break;
      case 'audit': await this.#audit(); break;
      case 'reconnected': await this.#onReconnected(event.reply); break;
      case 'reconnect_refused': await this.#feed({ type: 'reconnect_refused', code: event.code }); break;
      case 'error':
        if (event.code === ErrorCode.REPLACED) {
          this.replaced = true;
          this.#end('replaced by a newer connection');
        } else {
          console.warn(`${this.identity}: server error ${event.code}: ${event.message}`);
        }
        break;
      case 'closed':
        if (this.replaced || this.options.reconnectTimeout === null || this.stopped) this.#end('the signaling connection closed');
        else this.#rejoin();
        break;
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

  /** Gives `event` to the machine and carries out its actions, feeding the answers back. */
  async #feed(event) {
    for (const action of await this.membership.handle(event)) {
      const answer = await this.#perform(action);
      if (answer !== null) await this.#feed(answer);
    }
    for (const remote of [...this.links.keys()]) {
      if (!this.present.has(remote)) this.#closeLink(remote); // links follow presence
    }
    const members = this.members;
    for (const remote of this.links.keys()) await this.#gateLink(remote, members);
  }

  /**
   * The link to `remote` sends only under epochs it has (CallPeer._gate_link):
   * nothing while it is no member, then from the epoch this link first saw it a member in.
   */
  async #gateLink(remote, members) {
    const group = this.group;
    let first = null;
    if (group !== null && members.has(remote)) {
      const groupId = [...group.groupId].map((b) => b.toString(16).padStart(2, '0')).join('');
      let since = this.memberSince.get(remote);
      if (since === undefined || since[0] !== groupId) {
        since = [groupId, this.membership.epoch];
        this.memberSince.set(remote, since);
      }
      first = since[1];
    } else {
      this.memberSince.delete(remote);
    }
    const link = this.links.get(remote);
    if (link === undefined || this.gates.get(link) === first) return;
    this.gates.set(link, first);
    for (const kind of ['audio', 'video']) await this.session.remoteKeysFrom(link.label(kind), first);
  }

  // -- reconnecting ----------------------------------------------------------------

  /**
   * Rejoins after the connection dropped (backing off), as CallPeer.rejoin:
   * a member catches up after its cursor; a participant not (yet) in the
   * group joins as a newcomer. Gives up after `reconnectTimeout`.
   */
  async #rejoin() {
    if (this.reconnecting) return;
    this.reconnecting = true;
    this.#changed();
    const deadline = seconds() + this.options.reconnectTimeout;
    let delay = 0.1;
    try {
      while (!this.stopped && seconds() + delay < deadline) {
        await sleep(delay);
        if (this.stopped) return;
        const since = this.group !== null ? (this.membership.resumeCursor() ?? this.client.lastSeq) : null;
        let reply;
        try {
          reply = await this.client.connect({ since });
        } catch (err) {
          if (err instanceof SignalingError && err.code === ErrorCode.LOG_TRUNCATED) {
            console.warn(`${this.identity}: the room's log moved on without us; leaving`);
            this.#push({ type: 'reconnect_refused', code: err.code });
            return;
          }
          if (!(err instanceof SignalingError)) throw err;
          delay = Math.min(2 * delay, 2.0);
          continue;
        }
        console.info(`${this.identity}: reconnected, catching up after seq ${since ?? 'none (newcomer)'}`);
        this.reconnects += 1;
        // before the catch-up entries, which the client queued behind this
        this.inbox.unshift({ type: 'reconnected', reply });
        this.wake?.();
        return;
      }
      if (!this.stopped) this.#push({ type: 'closed', code: null, final: true });
    } finally {
      this.reconnecting = false;
    }
  }

  /** Back after an outage: which group the room carries, who is here, whether our last commit got in. */
  async #onReconnected(reply) {
    const before = new Set(this.present);
    this.serverIceServers = iceServersFromReply(reply);
    const here = (reply.members ?? []).filter((x) => x !== this.identity).sort();
    await this.#feed({
      type: 'reconnected', present: here, groupId: reply.group_id ?? null, epoch: reply.epoch ?? null, now: seconds(),
    });
    if (reply.topology === 'sfu' || this.topology === 'sfu') {
      // the server detached our SFU handles with the old connection: publish and subscribe again
      if (this.topology === 'sfu') this.sfu?.restart();
      else this.#toSfu();
      this.#changed();
      return;
    }
    for (const remote of here) {
      // as the offerer, offer afresh: the remote may have replaced our link when it saw us
      // come back (as CallPeer._on_reconnected); otherwise it offers if it replaced it
      if (before.has(remote) && this.identity > remote) this.#resume(remote);
      else this.#replaceLink(remote);
    }
    this.#changed();
  }

  // -- presence and mesh -----------------------------------------------------------

  async #onPresence(what, remote, resumed, dropped) {
    if (remote === this.identity) return;
    if (what === 'join') {
      const resuming = this.membership.resuming.has(remote);
      await this.#feed({ type: 'presence_joined', identity: remote, resumed });
      if (this.topology === 'mesh') { // in an SFU room its media comes with sfu.feeds
        if (resuming) this.#resume(remote);
        else this.#replaceLink(remote);
      }
    } else if (what === 'leave') {
      await this.#feed({ type: 'presence_left', identity: remote, dropped });
    }
    this.#changed();
  }

  /** `remote` is back after an outage with its state: keep its link, offering afresh if the outage cut the negotiation. */
  #resume(remote) {
    const link = this.links.get(remote);
    if (link === undefined) {
      this.#openLink(remote);
    } else if (!link.negotiated && this.identity < remote) {
      this.#closeLink(remote);
      this.#openLink(remote);
    }
  }

  #replaceLink(remote) {
    if (this.links.has(remote)) this.#closeLink(remote); // a rejoin replaced its old connection
    this.#openLink(remote);
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
      iceServers: this.options.iceServers.length > 0 ? this.options.iceServers : this.serverIceServers,
      iceTransportPolicy: this.options.iceTransportPolicy,
    });
    this.links.set(remote, link);
    this.#gateLink(remote, this.members).catch((err) => console.warn(`gating the link to ${remote}:`, err));
    return link;
  }

  #closeLink(remote) {
    const link = this.links.get(remote);
    if (link === undefined) return;
    this.links.delete(remote);
    this.memberSince.delete(remote);
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
    const stats = await this.session.stats();
    this.#attribute(stats.receivers);
    for (const sender of stats.senders) {
      // withheld frames (the remote could not open them) went through the transform too
      const handled = sender.framesEncrypted + sender.framesWithheld;
      if (sender.label !== null) sealed.set(sender.label, (sealed.get(sender.label) ?? 0) + handled);
    }
    for (const link of this.links.values()) await link.audit(sealed);
    await this.sfu?.audit(sealed);
  }

  // -- SFU -------------------------------------------------------------------------

  #startSfu() {
    this.sfu = new SfuLinks({
      request: (type, fields) => this.client.request(type, fields),
      session: this.session,
      stream: this.stream,
      sending: this.session.state.sendingEpoch !== null,
      loopback: this.options.loopback,
      iceServers: this.options.iceServers.length > 0 ? this.options.iceServers : this.serverIceServers,
      iceTransportPolicy: this.options.iceTransportPolicy,
      onChange: () => {
        this.#showSfuStreams();
        this.#changed();
      },
    });
    this.sfu.start();
  }

  /** The room went SFU while live (`topology` event): mesh links close, media moves to the SFU. */
  #toSfu() {
    if (this.topology === 'sfu' && this.sfu !== null) return;
    this.topology = 'sfu';
    for (const remote of [...this.links.keys()]) this.#closeLink(remote);
    this.#startSfu();
    this.#changed();
  }

  /** The MLS credential's identity of leaf `leafIndex` in our group, or null. */
  #identityOfLeaf(leafIndex) {
    return this.membership.leaves().find((leaf) => leaf.leafIndex === leafIndex)?.identity ?? null;
  }

  /** Attributes the SFU streams by their frames' KIDs; a flag raised is a trust warning. */
  #attribute(receivers) {
    if (this.sfu === null) return;
    const before = new Map([...this.sfu.attribution.streams].map(([label, s]) => [label, s.identity]));
    for (const flag of this.sfu.attribution.observe(receivers, (index) => this.#identityOfLeaf(index))) {
      const detail = flag.kind === 'kid_changed'
        ? `a stream first sent by ${flag.firstIdentity} (SFU feed ${flag.feed}) carries frames under its KID`
        : `the server says SFU feed ${flag.feed} is ${flag.from}'s, its frames carry this member's KID`;
      this.warnings.push({ kind: `sfu_${flag.kind}`, identity: flag.identity, leafIndex: flag.leafIndex, detail, at: Date.now() / 1000 });
      console.warn(`${this.identity}: SFU stream ${flag.label}: ${flag.kind}, ${detail} (${flag.identity})`);
      this.#changed();
    }
    const moved = [...this.sfu.attribution.streams].some(([label, s]) => before.get(label) !== s.identity);
    if (moved) {
      this.#showSfuStreams();
      this.#changed();
    }
  }

  /** remoteStreams from the SFU's tracks, each under the member whose KID its frames carry. */
  #showSfuStreams() {
    if (this.sfu === null) return;
    const wanted = this.sfu.tracksByIdentity();
    for (const [identity, stream] of this.remoteStreams) {
      const tracks = wanted.get(identity) ?? [];
      for (const track of stream.getTracks()) if (!tracks.includes(track)) stream.removeTrack(track);
      if (tracks.length === 0) this.remoteStreams.delete(identity);
    }
    for (const [identity, tracks] of wanted) {
      let stream = this.remoteStreams.get(identity);
      if (stream === undefined) {
        stream = new MediaStream();
        this.remoteStreams.set(identity, stream);
      }
      for (const track of tracks) if (!stream.getTracks().includes(track)) stream.addTrack(track);
    }
  }

  async #updateSending() {
    const sending = this.session.state.sendingEpoch !== null;
    for (const link of this.links.values()) {
      if (link.sending !== sending) await link.setSending(sending);
    }
    if (this.sfu !== null && this.sfu.sending !== sending) await this.sfu.setSending(sending);
  }

  async #send(text) {
    this.sending = text;
    try {
      await this.#feed({ type: 'send_chat', text: new TextEncoder().encode(text) });
    } finally {
      this.sending = null;
    }
  }

  // -- actions ---------------------------------------------------------------------

  /** Carries out one action of the machine; the answer event of a request, or null. */
  async #perform(action) {
    switch (action.type) {
      case 'publish_key_package': await this.#publish(action.keyPackage); return null;
      case 'claim_key_packages': return this.#claim(action);
      case 'create_group':
        return this.#request(action.request, () => this.client.createGroup(action.groupId, action.epoch, action.groupInfo));
      case 'submit_commit': {
        const welcomes = new Map(action.welcomes.map((w) => [w.to, w.welcome]));
        return this.#request(action.request, () => this.client.commit(action.groupId, action.epoch, action.commit, welcomes));
      }
      case 'install_epoch':
        this.installing = action;
        this.epochs.push({ epoch: action.epoch, members: action.members.length, cause: action.cause, at: Date.now() / 1000 });
        console.info(`${this.identity}: epoch ${action.epoch} (${action.cause}), ${action.members.length} members`);
        return null;
      case 'switch_sending_key': await this.#install(action); return null;
      case 'media_trust': this.#changed(); return null;
      case 'trust_warning':
        this.warnings.push({
          kind: action.kind, identity: action.identity, leafIndex: action.leafIndex, detail: action.detail, at: Date.now() / 1000,
        });
        console.warn(`${this.identity}: trust warning ${action.kind} about ${JSON.stringify(action.identity)} `
          + `(leaf ${action.leafIndex}) ${action.detail}`);
        this.#changed();
        return null;
      case 'chat_received':
        this.messages.push({ from: action.sender, leafIndex: action.leafIndex, text: chatText(action.text), at: Date.now() / 1000 });
        this.#changed();
        return null;
      case 'send_application':
        // the envelope's epoch is the one in the message's header (the state that encrypted it)
        await this.client.sendApplication(privateMessageEpoch(action.ciphertext), action.ciphertext);
        this.messages.push({
          from: this.identity, leafIndex: this.group?.leafIndex ?? null, text: this.sending ?? '', at: Date.now() / 1000,
        });
        this.#changed();
        return null;
      case 'group_left':
        console.info(`${this.identity}: no longer in the group (${action.reason})`);
        this.verification = null;
        this.#changed();
        return null;
      case 'rejoin':
        // a new connection: with catch-up as a member (#rejoin), as a newcomer while waiting
        console.warn(`${this.identity}: rejoining (${action.reason})`);
        this.client.close();
        return null;
      case 'call_ended': this.#end(action.reason); return null;
      default: return null;
    }
  }

  async #publish(keyPackage) {
    try {
      await this.client.publishKeyPackages([keyPackage]);
    } catch (err) {
      if (!(err instanceof SignalingError)) throw err;
      if (err.code !== ErrorCode.TOO_MANY_KEY_PACKAGES) console.info(`${this.identity}: KeyPackage not published: ${err.code}`);
    }
  }

  /** Every KeyPackage the directory has for each identity, oldest first. */
  async #claim(action) {
    const keyPackages = [];
    for (const identity of action.identities) {
      const packages = [];
      for (;;) {
        try {
          packages.push(await this.client.claimKeyPackage(identity));
        } catch (err) {
          if (!(err instanceof SignalingError)) throw err;
          if (err.code === ErrorCode.NOT_FOUND) break;
          if (err.code === ErrorCode.CLOSED || err.code === ErrorCode.TIMEOUT) {
            return { type: 'request_unanswered', request: action.request };
          }
          return { type: 'request_refused', request: action.request, code: err.code, epoch: null };
        }
      }
      keyPackages.push([identity, packages]);
    }
    return { type: 'key_packages_claimed', request: action.request, keyPackages };
  }

  /** Awaits one request; its outcome as the machine's answer event. */
  async #request(number, send) {
    let reply;
    try {
      reply = await send();
    } catch (err) {
      if (!(err instanceof SignalingError)) throw err;
      if (err.code === ErrorCode.CLOSED || err.code === ErrorCode.TIMEOUT) {
        console.warn(`${this.identity}: no answer to request ${number} (${err.code}); waiting for the log`);
        return { type: 'request_unanswered', request: number };
      }
      if (err.code !== ErrorCode.CONFLICT && err.code !== ErrorCode.WRONG_GROUP) {
        console.warn(`${this.identity}: request ${number} refused: ${err.code} ${err.message}`);
      }
      const epoch = err.details?.epoch;
      return { type: 'request_refused', request: number, code: err.code, epoch: Number.isInteger(epoch) ? epoch : null };
    }
    const epoch = reply?.epoch;
    return { type: 'request_accepted', request: number, epoch: Number.isInteger(epoch) ? epoch : null };
  }

  /** Gives the epoch to the SFrame session (RFC 9605 §5.2): receive now, send after the delay. */
  async #install(switchAction) {
    const install = this.installing;
    this.installing = null;
    if (install === null || install.epoch !== switchAction.epoch) return;
    const delay = switchAction.after > 0 ? switchAction.after : null;
    await this.session.installEpoch(install.exporter, BigInt(install.epoch), install.ownIndex, install.leafCount,
      { switchAfter: delay });
    if (delay === null && this.session.state.sendingEpoch !== BigInt(install.epoch)) {
      await this.session.switchSender(BigInt(install.epoch));
    }
    this.verification = await verificationCode(await install.exporter.epochAuthenticator());
    await this.#updateSending();
    this.#changed();
  }
}
