/**
 * The page's media links in an SFU room (issue 16, docs/protocol.md `sfu.*`):
 * one publishing RTCPeerConnection (sendonly audio and video, each sender
 * SFrame-sealed by the member's SFrameMLSSession as in a mesh link) and one
 * subscribing connection (recvonly) carrying every other member's streams
 * through the server's Janus, whose API the page never reaches: the
 * negotiation goes through the signaling connection (`sfu.publish`,
 * `sfu.subscribe`, `sfu.start`).
 *
 * - SDP goes out complete: a connection waits for ICE gathering to end
 *   before its offer or answer is sent (no trickle with Janus).
 * - No plaintext-derived metadata rides along the ciphertext: the audio-level
 *   RTP header extension (RFC 6464, computed from the clear audio) is taken
 *   out of every SDP sent and received (stripAudioLevel), so it is never
 *   negotiated.
 * - Who sent a stream is decided by the KID of its frames (RFC 9605 §5.2:
 *   the sender's leaf index, hence its MLS credential), never by the
 *   server's `from`: StreamAttribution labels each subscribed stream by the
 *   KIDs the SFrame worker opened its frames with, and flags a stream whose
 *   frames carry another member's KID than the one it was first attributed
 *   to, or than the server's `from`.
 * @module app/sfu
 */

import { CODECS, filterSdp, preferCodecs } from './loopback.js';
import { usableIceServers } from './link.js';

/** The audio-level RTP header extension (RFC 6464): never negotiated in SFU rooms. */
export const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/** KID context (RFC 9605 §5.2) of this member's streams, as in mesh links. */
const SFRAME_CONTEXT = 0;

/** Frames an encoder may be ahead of its SFrame transform before audit() objects (as PeerLink). */
const AUDIT_SLACK = 15;

/** How long a connection waits for ICE gathering to complete before sending what it has (ms). */
const GATHERING_BOUND_MS = 10000;

/** `sdp` without its `a=extmap` lines for the audio-level header extension (RFC 8285 §8). */
export function stripAudioLevel(sdp) {
  return sdp.split(/(?<=\n)/).filter((line) => {
    if (!line.startsWith('a=extmap:')) return true;
    return line.trim().split(/\s+/)[1] !== AUDIO_LEVEL_URI;
  }).join('');
}

/** The SDP a page sends to or takes from the SFU: no audio level; in loopback mode loopback candidates only. */
export function sfuSdp(sdp, loopback) {
  return stripAudioLevel(loopback ? filterSdp(sdp) : sdp);
}

/** Resolves once `pc` has gathered all its ICE candidates (or after `boundMs`, with what it has). */
export function iceGathered(pc, boundMs = GATHERING_BOUND_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete' && !timedOut) return;
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      done();
    }, boundMs);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

/** Asks the browser not to offer the audio-level extension on `transceiver`, where it can (Chromium). */
function stopAudioLevel(transceiver) {
  if (typeof transceiver.getHeaderExtensionsToNegotiate !== 'function') return;
  const extensions = transceiver.getHeaderExtensionsToNegotiate()
    .map((extension) => (extension.uri === AUDIO_LEVEL_URI ? { ...extension, direction: 'stopped' } : extension));
  try {
    transceiver.setHeaderExtensionsToNegotiate(extensions);
  } catch (err) {
    console.warn(`the audio-level extension stays offered (it is taken out of the SDP): ${err.message}`);
  }
}

/**
 * Who sent each subscribed stream, by the KIDs its frames carry. The
 * subscribe acks give the streams (`mid`, `feed`, the server's `from`,
 * `kind`); the SFrame worker's receiver counters give, per stream label,
 * the sender indices of the frames it opened (`firstSenderIndex`,
 * `senderIndex`, `framesBySender`); `identityOf(leafIndex)` maps a leaf to
 * its MLS credential's identity.
 */
export class StreamAttribution {
  constructor() {
    /**
     * label -> {mid, feed, from, kind, firstIdentity, identity, framesBy: Map<identity, frames>, flags: Set<string>}
     * @type {Map<string, object>}
     */
    this.streams = new Map();
    /** flags raised so far: frames under another member's KID than the first, or than `from` */
    this.counters = { kidChanged: 0, fromMismatch: 0 };
    /** frames of streams no longer subscribed, per identity and kind (counts never go back) */
    this.retired = new Map();
  }

  /** The worker label of the stream of `feed` on m-line `mid`. */
  static label(mid, feed) {
    return `sfu/${mid}/${feed}`;
  }

  has(label) {
    return this.streams.has(label);
  }

  /**
   * The streams of a subscribe ack replace the current ones (a stream whose
   * label stays keeps what was learnt about it). Malformed entries are left out.
   * @param {Array<{mid: string, feed: number, from: string, kind: string}>} streams
   */
  setStreams(streams) {
    const next = new Map();
    for (const stream of Array.isArray(streams) ? streams : []) {
      if (stream === null || typeof stream !== 'object' || typeof stream.mid !== 'string' || !Number.isInteger(stream.feed)
        || (stream.kind !== 'audio' && stream.kind !== 'video')) continue;
      const label = StreamAttribution.label(stream.mid, stream.feed);
      if (next.has(label)) continue;
      next.set(label, this.streams.get(label) ?? {
        mid: stream.mid,
        feed: stream.feed,
        from: typeof stream.from === 'string' ? stream.from : null,
        kind: stream.kind,
        firstIdentity: null,
        identity: null,
        framesBy: new Map(),
        flags: new Set(),
      });
    }
    for (const [label, stream] of this.streams) {
      if (next.has(label)) continue;
      for (const [identity, frames] of stream.framesBy) {
        const key = `${identity}/${stream.kind}`;
        this.retired.set(key, (this.retired.get(key) ?? 0) + frames);
      }
    }
    this.streams = next;
  }

  /**
   * Frames opened per identity and kind, by KID: on the current streams
   * and on those no longer subscribed.
   * @returns {Map<string, Map<string, number>>} identity -> kind -> frames
   */
  framesByIdentity() {
    const totals = new Map();
    const add = (identity, kind, frames) => {
      if (!totals.has(identity)) totals.set(identity, new Map());
      const kinds = totals.get(identity);
      kinds.set(kind, (kinds.get(kind) ?? 0) + frames);
    };
    for (const [key, frames] of this.retired) {
      const at = key.lastIndexOf('/');
      add(key.slice(0, at), key.slice(at + 1), frames);
    }
    for (const stream of this.streams.values()) {
      for (const [identity, frames] of stream.framesBy) add(identity, stream.kind, frames);
    }
    return totals;
  }

  /**
   * Attributes the streams from the worker's receiver counters; returns the
   * flags raised now (each once per stream and identity): `kid_changed`
   * (frames under the KID of another member than the stream's first),
   * `from_mismatch` (frames under the KID of another member than `from`).
   * @param {Array<{label: string|null, firstSenderIndex: number|null, senderIndex: number|null,
   *   framesBySender: Record<string, number>}>} receivers
   * @param {(leafIndex: number) => string|null} identityOf
   */
  observe(receivers, identityOf) {
    const raised = [];
    for (const receiver of receivers) {
      const stream = receiver.label === null ? undefined : this.streams.get(receiver.label);
      if (stream === undefined || receiver.firstSenderIndex === null || receiver.firstSenderIndex === undefined) continue;
      stream.firstIdentity ??= identityOf(receiver.firstSenderIndex);
      stream.identity = identityOf(receiver.senderIndex) ?? stream.identity;
      stream.framesBy = new Map();
      for (const [index, frames] of Object.entries(receiver.framesBySender ?? {})) {
        const identity = identityOf(Number(index));
        if (identity === null) continue;
        stream.framesBy.set(identity, (stream.framesBy.get(identity) ?? 0) + frames);
        const raise = (kind, counter) => {
          if (stream.flags.has(`${kind}:${identity}`)) return;
          stream.flags.add(`${kind}:${identity}`);
          this.counters[counter] += 1;
          raised.push({
            kind, label: receiver.label, mid: stream.mid, feed: stream.feed, from: stream.from, identity,
            leafIndex: Number(index), firstIdentity: stream.firstIdentity,
          });
        };
        if (stream.firstIdentity !== null && identity !== stream.firstIdentity) raise('kid_changed', 'kidChanged');
        if (identity !== stream.from) raise('from_mismatch', 'fromMismatch');
      }
    }
    return raised;
  }

  /** The identity each stream is attributed to now (by its last frame's KID), or null before any frame. */
  identityOf(label) {
    return this.streams.get(label)?.identity ?? null;
  }

  /** Whether a flag was raised on the stream `label`. */
  flagged(label) {
    return (this.streams.get(label)?.flags.size ?? 0) > 0;
  }
}

export class SfuLinks {
  /**
   * @param {object} options
   * @param {(type: string, fields: object) => Promise<any>} options.request a signaling request (its ack)
   * @param {import('../sframe-transform.js').SFrameMLSSession} options.session
   * @param {MediaStream} options.stream this member's camera and microphone
   * @param {boolean} options.sending whether the tracks go out now (a sending key exists)
   * @param {boolean} options.loopback
   * @param {RTCIceServer[]} [options.iceServers]
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]
   * @param {() => void} [options.onChange] tracks or states changed
   */
  constructor({
    request, session, stream, sending, loopback, iceServers = [], iceTransportPolicy = 'all', onChange = () => {},
  }) {
    this.request = request;
    this.session = session;
    this.stream = stream;
    this.sending = sending;
    this.loopback = loopback;
    this.configuration = {
      iceServers: usableIceServers(iceServers, loopback), iceTransportPolicy, bundlePolicy: 'max-bundle',
    };
    this.onChange = onChange;
    /** @type {RTCPeerConnection|null} */
    this.publisher = null;
    /** @type {RTCPeerConnection|null} */
    this.subscriber = null;
    /** @type {Array<RTCRtpTransceiver>} the publisher's two transceivers */
    this.senders = [];
    /** this member's feed at the SFU */
    this.feed = null;
    /** the room's published feeds (sfu.feeds): feed -> the server's `from` */
    this.feeds = new Map();
    /** the feeds of the last subscribe acked (null: none yet) */
    this.subscribed = null;
    /** m-line -> the worker label of its receiver */
    this.mids = new Map();
    /** m-line -> the track received on it */
    this.tracks = new Map();
    this.attribution = new StreamAttribution();
    /** the server lost the SFU (sfu.down) or our publish was refused: media waits for sfu.up */
    this.interrupted = false;
    this.failed = null;
    this.closed = false;
    /** per kind: frames the encoder sent and frames the SFrame transform sealed (audit()) */
    this.counters = {};
    this.queue = Promise.resolve();
    this.subscribeQueued = false;
    /** bumped on every restart: steps of an older generation stop */
    this.generation = 0;
    /** publishes acked (the first, then one per restart) */
    this.publishes = 0;
    /** times the connections were made anew after one failed (ICE lost) */
    this.recoveries = 0;
    /** the next sfu.subscribe asks the server to drop our old subscription (its connection failed) */
    this.restartSubscription = false;
  }

  /** Publishes, then subscribes to every other feed. */
  start() {
    const generation = this.generation;
    this.#enqueue(() => this.#publish(generation));
    this.#queueSubscribe();
  }

  /** The room's published feeds changed (sfu.feeds): subscribe to the new wanted set. */
  setFeeds(feeds) {
    this.feeds = new Map();
    for (const entry of Array.isArray(feeds) ? feeds : []) {
      if (entry !== null && typeof entry === 'object' && Number.isInteger(entry.feed)) this.feeds.set(entry.feed, entry.from);
    }
    this.#queueSubscribe();
  }

  /** The server lost the SFU (sfu.down): the connections are dead until it is back. */
  interrupt() {
    this.interrupted = true;
    this.#closeConnections();
    this.onChange();
  }

  /** The SFU is back (sfu.up), or the signaling connection was re-established: republish and resubscribe. */
  restart() {
    this.#closeConnections();
    // feeds of before are gone with the old Janus room (or our handles); the server pushes the room's anew
    this.feeds = new Map();
    this.interrupted = false;
    this.failed = null;
    this.start();
    this.onChange();
  }

  /** Starts (or stops) sending this member's tracks: frames go out only under a sending key. */
  async setSending(sending) {
    this.sending = sending;
    if (this.publisher?.localDescription) await this.#attachTracks();
  }

  close() {
    this.closed = true;
    this.#closeConnections();
  }

  /** The worker label of each receiver now carrying a subscribed stream. */
  get labels() {
    return [...this.attribution.streams.keys()];
  }

  /**
   * Compares what each encoder sent with what its SFrame transform sealed
   * (as PeerLink.audit): a sender whose frames bypass the transform loses its tracks.
   * @param {Map<string, number>} sealed stream label -> frames
   */
  async audit(sealed) {
    for (const transceiver of this.senders) {
      const kind = transceiver.receiver.track.kind;
      let sent = 0;
      (await transceiver.sender.getStats()).forEach((report) => {
        if (report.type === 'outbound-rtp') sent += (kind === 'video' ? report.framesEncoded : report.packetsSent) ?? 0;
      });
      const encrypted = sealed.get(SfuLinks.senderLabel(kind)) ?? 0;
      this.counters[kind] = { sent, encrypted };
      if (sent > encrypted + AUDIT_SLACK && this.sending) {
        this.failed = `${kind} frames to the SFU bypass the SFrame transform (${sent} sent, ${encrypted} sealed)`;
        console.error(`${this.failed}: sending stopped`);
        await this.setSending(false);
      }
    }
  }

  /** The tracks received from each member, by the KIDs of their frames (StreamAttribution). */
  tracksByIdentity() {
    const tracks = new Map();
    for (const stream of this.attribution.streams.values()) {
      const track = this.tracks.get(stream.mid);
      if (stream.identity === null || track === undefined) continue;
      tracks.set(stream.identity, [...(tracks.get(stream.identity) ?? []), track]);
    }
    return tracks;
  }

  /** The worker label of this member's published stream of `kind`. */
  static senderLabel(kind) {
    return `sfu/${kind}`;
  }

  /** A JSON-friendly snapshot of the two connections and the subscribed streams. */
  status() {
    const state = (pc) => (pc === null ? null : { state: pc.connectionState, ice: pc.iceConnectionState });
    return {
      feed: this.feed,
      publishes: this.publishes,
      recoveries: this.recoveries,
      interrupted: this.interrupted,
      failed: this.failed,
      publisher: state(this.publisher),
      subscriber: state(this.subscriber),
      counters: structuredClone(this.counters),
      flags: { ...this.attribution.counters },
      streams: [...this.attribution.streams].map(([label, s]) => ({
        label, mid: s.mid, feed: s.feed, from: s.from, kind: s.kind, identity: s.identity,
        firstIdentity: s.firstIdentity, flagged: s.flags.size > 0, track: this.tracks.has(s.mid),
      })),
    };
  }

  // -- negotiation -----------------------------------------------------------------

  #enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (this.closed) return;
      this.failed = String(err?.message ?? err);
      console.warn(`SFU link: ${this.failed}`);
      this.onChange();
    });
  }

  /** One subscribe after whatever is queued (changes meanwhile join it). */
  #queueSubscribe() {
    if (this.subscribeQueued) return;
    this.subscribeQueued = true;
    const generation = this.generation;
    this.#enqueue(() => {
      this.subscribeQueued = false;
      return this.#subscribe(generation);
    });
  }

  #closeConnections() {
    this.generation += 1;
    this.subscribeQueued = false;
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = null;
    this.subscriber = null;
    this.senders = [];
    this.feed = null;
    this.subscribed = null;
    for (const label of new Set(this.mids.values())) {
      // receivers of dead connections: out of the current streams' counts
      this.session.relabelReceiver(label, `${label}/closed`).catch(() => {});
    }
    this.mids.clear();
    this.tracks.clear();
    this.attribution.setStreams([]);
  }

  #track(kind) {
    return this.stream.getTracks().find((track) => track.kind === kind) ?? null;
  }

  async #attachTracks() {
    for (const transceiver of this.senders) {
      const track = this.sending ? this.#track(transceiver.receiver.track.kind) : null;
      if (transceiver.sender.track !== track && !this.closed) await transceiver.sender.replaceTrack(track);
    }
  }

  async #publish(generation) {
    if (generation !== this.generation || this.interrupted) return;
    const pc = new RTCPeerConnection(this.configuration);
    this.publisher = pc;
    pc.onconnectionstatechange = () => this.#stateChanged(pc);
    for (const kind of ['audio', 'video']) {
      const transceiver = pc.addTransceiver(kind, { direction: 'sendonly', streams: [this.stream] });
      preferCodecs(transceiver, kind);
      stopAudioLevel(transceiver);
      this.session.protectSender(transceiver.sender, { context: SFRAME_CONTEXT, codec: CODECS[kind], label: SfuLinks.senderLabel(kind) });
      this.senders.push(transceiver);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    if (generation !== this.generation) return;
    let ack;
    try {
      ack = await this.request('sfu.publish', { jsep: { type: 'offer', sdp: sfuSdp(pc.localDescription.sdp, this.loopback) } });
    } catch (err) {
      if (generation === this.generation) this.interrupted = true; // until sfu.up
      throw err;
    }
    if (generation !== this.generation) return;
    if (ack?.jsep?.type !== 'answer' || typeof ack.jsep.sdp !== 'string') throw new Error('sfu.publish: no answer in the ack');
    this.feed = Number.isInteger(ack.feed) ? ack.feed : null;
    this.publishes += 1;
    await pc.setRemoteDescription({ type: 'answer', sdp: sfuSdp(ack.jsep.sdp, this.loopback) });
    await this.#attachTracks();
    this.onChange();
  }

  #newSubscriber() {
    const pc = new RTCPeerConnection(this.configuration);
    pc.ontrack = (event) => {
      if (pc !== this.subscriber) return;
      this.tracks.set(event.transceiver.mid, event.track);
      this.onChange();
    };
    pc.onconnectionstatechange = () => this.#stateChanged(pc);
    return pc;
  }

  /**
   * A connection of ours failed (ICE lost: consent expired, RFC 7675, or the
   * network went away): both are made anew, the subscription from scratch
   * (`restart`: the server drops the old one and offers for a new connection).
   */
  #stateChanged(pc) {
    if (pc.connectionState === 'failed' && !this.closed && !this.interrupted
        && (pc === this.publisher || pc === this.subscriber)) {
      console.warn('SFU link: a connection failed; making both anew');
      this.recoveries += 1;
      this.restartSubscription = true;
      this.#closeConnections();
      this.start();
    }
    this.onChange();
  }

  async #subscribe(generation) {
    if (generation !== this.generation || this.interrupted || this.publisher === null) return;
    const wanted = [...this.feeds.keys()].filter((feed) => feed !== this.feed).sort((a, b) => a - b);
    if (wanted.length === 0 && this.subscriber === null) return;
    if (this.subscribed !== null && wanted.join() === this.subscribed.join()) return; // nothing changed for us
    const ack = await this.request('sfu.subscribe', this.restartSubscription ? { feeds: wanted, restart: true } : { feeds: wanted });
    this.restartSubscription = false;
    if (generation !== this.generation) return;
    this.subscribed = wanted;
    const streams = Array.isArray(ack?.streams) ? ack.streams : [];
    if (ack?.jsep) {
      if (ack.jsep.type !== 'offer' || typeof ack.jsep.sdp !== 'string') throw new Error('sfu.subscribe: malformed offer');
      this.subscriber ??= this.#newSubscriber();
      const pc = this.subscriber;
      await pc.setRemoteDescription({ type: 'offer', sdp: sfuSdp(ack.jsep.sdp, this.loopback) });
      await this.#label(pc, streams);
      await pc.setLocalDescription(await pc.createAnswer());
      await iceGathered(pc);
      if (generation !== this.generation) return;
      await this.request('sfu.start', { jsep: { type: 'answer', sdp: sfuSdp(pc.localDescription.sdp, this.loopback) } });
    } else if (this.subscriber !== null) {
      await this.#label(this.subscriber, streams);
    }
    this.onChange();
  }

  /**
   * SFrame on the receiver of every subscribed m-line, labelled by its
   * stream (m-line and feed); a receiver whose m-line now carries another
   * feed is relabelled, so its senders are counted afresh.
   */
  async #label(pc, streams) {
    this.attribution.setStreams(streams);
    const transceivers = new Map(pc.getTransceivers().filter((t) => t.mid !== null).map((t) => [t.mid, t]));
    for (const [label, stream] of this.attribution.streams) {
      const transceiver = transceivers.get(stream.mid);
      if (transceiver === undefined) continue;
      const current = this.mids.get(stream.mid);
      if (current === undefined) {
        const kind = transceiver.receiver.track.kind;
        this.session.protectReceiver(transceiver.receiver, { codec: CODECS[kind], label });
      } else if (current !== label) {
        await this.session.relabelReceiver(current, label);
      }
      this.mids.set(stream.mid, label);
    }
  }
}
