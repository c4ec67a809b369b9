/**
 * The RTCPeerConnection with one other participant (the browser side of
 * media/mesh.py's PeerLink): offer/answer through the signaling relay,
 * the offerer decided by the caller (the smaller identity), every sender
 * and receiver SFrame-protected by the member's one SFrameMLSSession,
 * VP8 and Opus only, and in loopback mode loopback candidates only.
 * @module app/link
 */

import { CODECS, filterSdp, isLoopbackCandidate, preferCodecs } from './loopback.js';

/** KID context (RFC 9605 §5.2) of this member's streams: 0, as the Python peers use. */
const SFRAME_CONTEXT = 0;

/** Frames an encoder may be ahead of its SFrame transform (in flight) before audit() objects. */
const AUDIT_SLACK = 15;

/** The host of a STUN/TURN URI (RFC 7064/7065: `scheme:host[:port][?transport=...]`). */
export function iceServerHost(url) {
  const rest = url.slice(url.indexOf(':') + 1).split('?')[0];
  return rest.startsWith('[') ? rest.slice(1, rest.indexOf(']')) : rest.split(':')[0];
}

/**
 * `servers`, or in loopback mode only those whose every URL names a loopback
 * address (a local call asks no server elsewhere), as media/mesh.py's usable_ice_servers.
 * @param {RTCIceServer[]} servers
 * @param {boolean} loopback
 */
export function usableIceServers(servers, loopback) {
  if (!loopback) return servers;
  const onLoopback = (host) => host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  return servers.filter((server) => [server.urls].flat().every((url) => onLoopback(iceServerHost(url))));
}

export class PeerLink {
  /**
   * @param {string} remote the other participant's identity
   * @param {object} options
   * @param {boolean} options.offerer
   * @param {import('../sframe-transform.js').SFrameMLSSession} options.session
   * @param {MediaStream} options.stream this member's camera and microphone
   * @param {boolean} options.sending whether the tracks go out now (a sending key exists)
   * @param {(kind: string, data: unknown) => Promise<void>} options.signal relays to `remote`
   * @param {(track: MediaStreamTrack) => void} options.onTrack
   * @param {boolean} options.loopback
   * @param {RTCIceServer[]} [options.iceServers] (in loopback mode only those on loopback are used)
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] 'relay': TURN relay candidates only
   */
  constructor(remote, {
    offerer, session, stream, sending, signal, onTrack, loopback, iceServers = [], iceTransportPolicy = 'all',
  }) {
    this.remote = remote;
    this.offerer = offerer;
    this.session = session;
    this.stream = stream;
    this.sending = sending;
    this.signal = signal;
    this.loopback = loopback;
    this.pc = new RTCPeerConnection({ iceServers: usableIceServers(iceServers, loopback), iceTransportPolicy });
    /** @type {Set<RTCRtpTransceiver>} */
    this.protected = new Set();
    /** candidates gathered before our description went out */
    this.outgoing = [];
    this.described = false;
    /** candidates received before the remote description */
    this.incoming = [];
    this.failed = null;
    this.closed = false;
    /** whether a loopback candidate was gathered (loopback mode needs one) */
    this.gatheredLoopback = false;
    /** per kind: frames the encoder sent and frames the SFrame transform sealed (audit()) */
    this.counters = {};
    this.pc.onicecandidate = (event) => this.#onCandidate(event.candidate);
    this.pc.ontrack = (event) => onTrack(event.track);
    this.queue = Promise.resolve();
    if (offerer) this.#enqueue(() => this.#offer());
  }

  /** Whether an offer or answer of the remote was applied. */
  get negotiated() {
    return this.pc.remoteDescription !== null;
  }

  get connectionState() {
    return this.pc.connectionState;
  }

  /** Streams of this link in the session's stats: `${remote}/audio`, `${remote}/video`. */
  label(kind) {
    return `${this.remote}/${kind}`;
  }

  /** Queues a relayed `offer`, `answer` or `candidate` from the remote. */
  deliver(kind, data) {
    this.#enqueue(() => this.#handle(kind, data));
  }

  /** Starts (or stops) sending this member's tracks: frames go out only under a sending key. */
  async setSending(sending) {
    this.sending = sending;
    if (this.pc.localDescription === null) return; // the tracks go in once negotiated (#attachTracks)
    await this.#attachTracks();
  }

  /**
   * Compares what each encoder sent (video frames encoded, audio packets)
   * with what its SFrame transform sealed (`sealed`: stream label -> frames,
   * from the session's stats). A sender whose frames bypass the transform
   * (a browser fault: they would leave in the clear) loses its tracks.
   * @param {Map<string, number>} sealed
   */
  async audit(sealed) {
    for (const transceiver of this.protected) {
      const kind = transceiver.receiver.track.kind;
      let sent = 0;
      (await transceiver.sender.getStats()).forEach((report) => {
        if (report.type === 'outbound-rtp') sent += (kind === 'video' ? report.framesEncoded : report.packetsSent) ?? 0;
      });
      const encrypted = sealed.get(this.label(kind)) ?? 0;
      this.counters[kind] = { sent, encrypted };
      if (sent > encrypted + AUDIT_SLACK && this.sending) {
        this.failed = `${kind} frames to ${this.remote} bypass the SFrame transform (${sent} sent, ${encrypted} sealed)`;
        console.error(`${this.failed}: sending stopped`);
        await this.setSending(false);
      }
    }
  }

  close() {
    this.closed = true;
    this.pc.close();
  }

  #enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (this.closed) return;
      this.failed = String(err?.message ?? err);
      console.warn(`link to ${this.remote} failed:`, this.failed);
    });
  }

  #track(kind) {
    return this.stream.getTracks().find((track) => track.kind === kind) ?? null;
  }

  /**
   * Puts this member's tracks on the senders (or takes them off). Only once
   * the local description is set: Chromium 156 sends the frames of a track
   * given to an answerer's sender before setLocalDescription(answer) past
   * its RTCRtpScriptTransform, in the clear (seen with aiortc offerers).
   */
  async #attachTracks() {
    for (const transceiver of this.protected) {
      const track = this.sending ? this.#track(transceiver.receiver.track.kind) : null;
      if (transceiver.sender.track !== track && !this.closed) await transceiver.sender.replaceTrack(track);
    }
  }

  /** SFrame on the transceiver's sender and receiver, VP8/Opus only (once per transceiver). */
  #protect(transceiver) {
    if (this.protected.has(transceiver)) return;
    const kind = transceiver.receiver.track.kind;
    preferCodecs(transceiver, kind);
    this.session.protectSender(transceiver.sender, { context: SFRAME_CONTEXT, codec: CODECS[kind], label: this.label(kind) });
    this.session.protectReceiver(transceiver.receiver, { codec: CODECS[kind], label: this.label(kind) });
    transceiver.sender.setStreams?.(this.stream);
    transceiver.direction = 'sendrecv';
    this.protected.add(transceiver);
  }

  async #offer() {
    for (const kind of ['audio', 'video']) this.#protect(this.pc.addTransceiver(kind, { direction: 'sendrecv' }));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this.#attachTracks();
    await this.#sendDescription();
  }

  async #sendDescription() {
    const { type, sdp } = this.pc.localDescription;
    await this.signal(type, { type, sdp: this.loopback ? filterSdp(sdp) : sdp });
    this.described = true;
    for (const candidate of this.outgoing.splice(0)) await this.signal('candidate', candidate);
  }

  #description(kind, data) {
    if (data === null || typeof data !== 'object' || typeof data.sdp !== 'string') throw new Error(`malformed ${kind}`);
    return { type: kind, sdp: this.loopback ? filterSdp(data.sdp) : data.sdp };
  }

  async #handle(kind, data) {
    if (kind === 'offer' && !this.offerer) {
      await this.pc.setRemoteDescription(this.#description('offer', data));
      for (const transceiver of this.pc.getTransceivers()) this.#protect(transceiver);
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      await this.#attachTracks();
      await this.#sendDescription();
      await this.#drainIncoming();
    } else if (kind === 'answer' && this.offerer) {
      await this.pc.setRemoteDescription(this.#description('answer', data));
      await this.#drainIncoming();
    } else if (kind === 'candidate') {
      if (this.negotiated) await this.#addCandidate(data);
      else this.incoming.push(data);
    }
  }

  async #drainIncoming() {
    for (const candidate of this.incoming.splice(0)) await this.#addCandidate(candidate);
  }

  async #addCandidate(data) {
    if (data === null || typeof data !== 'object' || !data.candidate) return; // end of candidates
    if (this.loopback && !isLoopbackCandidate(String(data.candidate))) return;
    await this.pc.addIceCandidate(data);
  }

  #onCandidate(candidate) {
    if (candidate === null || !candidate.candidate) return; // end of gathering: the remote needs nothing
    const loopbackCandidate = isLoopbackCandidate(candidate.candidate);
    this.gatheredLoopback ||= loopbackCandidate;
    if (this.loopback && !loopbackCandidate) return;
    const init = candidate.toJSON();
    if (this.described) {
      this.signal('candidate', init).catch((err) => console.warn(`candidate to ${this.remote} not relayed:`, err.message));
    } else {
      this.outgoing.push(init);
    }
  }
}
