/**
 * The worker side of SFrameTransform and of the MLS-keyed SFrame session:
 * runs SFrame on RTCEncodedVideoFrame / RTCEncodedAudioFrame delivered by
 * RTCRtpScriptTransform (W3C webrtc-encoded-transform, `rtctransform`
 * event). `installSFrameWorker(self)` is all a worker script needs; any
 * EventTarget-like scope works, so the logic runs in Node tests too.
 *
 * Protocol with the main thread (web/sframe-transform.js):
 * - `worker.postMessage({type: "sframe:connect", name, config, port}, [port])`
 *   creates an endpoint: `config.kind` "transform" (one W3C SFrameTransform,
 *   its own SFrameContext) or "mls" (one member's MLSKeyManager, shared by
 *   all its senders and receivers). Requests `{id, op, args}` on `port` get
 *   `{id, result}` or `{id, error: {kind, message}}`; the endpoint posts
 *   `{event: "error", errorType, kind, keyID, frame}` for dropped frames.
 * - `new RTCRtpScriptTransform(worker, {sframe: name, role, context, codec})`
 *   attaches a sender ("encrypt") or receiver ("decrypt") to the endpoint.
 *
 * Frames that cannot be protected are dropped, never sent in the clear.
 *
 * An MLS endpoint sends a stream only what its remote can open: request
 * `remoteKeysFrom {label, epoch}` lets the senders labelled `label` send
 * only under `epoch` or a later one (the epoch the remote's Welcome starts),
 * `epoch` null: nothing (the remote is no member). Frames held back count as
 * `framesWithheld`; after some, a video sender asks for a keyframe and
 * sends nothing until it comes, so the remote's first frame decodes.
 *
 * An MLS endpoint counts, per receiver, who sent the frames it opened: the
 * sender index of their KID (`senderIndex`, the last; `firstSenderIndex`;
 * `framesBySender`), what an SFU participant attributes streams by, never
 * the SFU's word. Request `relabelReceiver {label, to}` renames receivers
 * whose m-line now carries another stream and counts their senders afresh.
 *
 * An MLS endpoint holds, per receiver, frames whose epoch is not installed
 * yet (RFC 9605 §4.4.4: a joiner before its Welcome, a member before the
 * commit; config `hold`: {maxAge, maxFrames, maxBytes}, or false) and
 * opens them, in arrival order and before any later frame of that
 * receiver, when `installEpoch` installs it. Held frames that expire (or
 * that the bounds push out) count as `failures.heldExpired`.
 * @module sframe/worker-core
 */

import { SFrameError } from './errors.js';
import { asBytes, toU64 } from './bytes.js';
import { SFrameContext } from './context.js';
import { MLSKeyManager } from './mlskeys.js';
import { frameCodec, isKeyframe, openFrame, sealFrame } from './framing.js';
import { importBaseKey } from './keys.js';
import { HoldBuffer } from './hold.js';

const EMPTY = new Uint8Array(0);

/** SFrameError kind -> error event type (SFrameTransformErrorEventType, plus "replay"). */
const ERROR_TYPE = Object.freeze({
  syntax: 'syntax',
  malformedFrame: 'syntax',
  unsupportedCodec: 'syntax',
  keyID: 'keyID',
  authentication: 'authentication',
  replay: 'replay',
});

/**
 * The failure counters of a receiver (Python media.stats.FailureKind: UNKNOWN_KID, AUTHENTICATION, REPLAY,
 * MALFORMED, HELD_EXPIRED).
 */
const newFailures = () => ({ keyID: 0, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 });

/** Seconds on the worker's monotonic clock (what the hold buffer is given). */
const now = () => performance.now() / 1000;

/** An ArrayBuffer holding exactly `bytes` (what RTCEncoded*Frame.data takes). */
function toArrayBuffer(bytes) {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer;
  return bytes.slice().buffer;
}

/** Whether `frame` is video (RTCEncodedVideoFrame has `type`: key/delta/empty). */
function isVideo(frame) {
  return typeof frame.type === 'string';
}

/**
 * The framing rule of a frame: from its metadata's mimeType (Chromium), the
 * codec the page gave for this transform, or audio for audio frames.
 * @returns {'vp8'|'h264'|'audio'}
 */
function codecOf(frame, options) {
  const mimeType = frame.getMetadata?.().mimeType ?? options.codec;
  if (mimeType) return frameCodec(mimeType);
  if (!isVideo(frame)) return 'audio';
  throw new SFrameError('unsupportedCodec', 'the codec of this video frame is unknown');
}

/** What an error event carries about the dropped frame (the frame stays in the worker). */
function frameSummary(frame) {
  const metadata = frame.getMetadata?.() ?? {};
  return {
    type: frame.type ?? 'audio',
    timestamp: frame.timestamp ?? metadata.rtpTimestamp,
    synchronizationSource: metadata.synchronizationSource,
    byteLength: frame.data?.byteLength,
  };
}

/** Base of both endpoints: request handling, events, piping transformers. */
class Endpoint {
  constructor(port) {
    this.port = port;
    this.senders = [];
    this.receivers = [];
    port.onmessage = (event) => this.onRequest(event.data);
  }

  async onRequest({ id, op, args }) {
    try {
      const result = await this.handle(op, args ?? {});
      this.port.postMessage({ id, result });
    } catch (err) {
      const kind = err instanceof SFrameError ? err.kind : 'invalidParameter';
      this.port.postMessage({ id, error: { kind, message: String(err?.message ?? err) } });
    }
  }

  reportError(err, frame) {
    this.port.postMessage({
      event: 'error',
      errorType: ERROR_TYPE[err.kind] ?? err.kind,
      kind: err.kind,
      keyID: err.keyID ?? null,
      frame: frameSummary(frame),
    });
  }

  /**
   * Pipes an RTCRtpScriptTransformer through SFrame.
   * @param {{readable: ReadableStream, writable: WritableStream, options: object}} transformer
   */
  attach(transformer) {
    const options = transformer.options ?? {};
    const encrypt = options.role === 'encrypt';
    const record = encrypt
      ? {
        kind: null, codec: null, framesEncrypted: 0, keyframesEncrypted: 0, keyframesForced: 0, framesDropped: 0, framesWithheld: 0,
        epoch: null, generation: null, resuming: false,
      }
      : {
        kind: null, codec: null, framesDecrypted: 0, keyframesDecrypted: 0, failures: newFailures(), keyframeRequests: 0,
        epoch: null, framesByEpoch: {}, framesHeld: 0, framesHeldOpened: 0, framesHolding: 0,
        senderIndex: null, firstSenderIndex: null, framesBySender: {},
        lastRequest: -Infinity, pendingRequest: false, held: this.newHoldBuffer(), chain: Promise.resolve(), expiry: null,
      };
    record.label = options.label ?? null;
    (encrypt ? this.senders : this.receivers).push(record);
    const step = encrypt ? this.encryptFrame : this.decryptFrame;
    // A receiver's frames, and the release of its held frames, run one at a time, in order.
    const stream = new TransformStream({
      transform: encrypt
        ? (frame, controller) => step.call(this, frame, controller, transformer, options, record)
        : (frame, controller) => this.serially(record, () => step.call(this, frame, controller, transformer, options, record)),
    });
    transformer.readable.pipeThrough(stream).pipeTo(transformer.writable).catch(() => {});
  }

  async encryptFrame(frame, controller, transformer, options, record) {
    record.kind = isVideo(frame) ? 'video' : 'audio';
    if (this.withholds(frame, transformer, record)) {
      record.framesWithheld += 1;
      return;
    }
    let out;
    let codec;
    try {
      codec = this.framing(frame, options);
      record.codec = codec;
      out = await this.seal(frame, codec, asBytes(frame.data, 'frame'), options, transformer, record);
    } catch (err) {
      record.framesDropped += 1;
      this.reportError(err instanceof SFrameError ? err : new SFrameError('invalidParameter', 'the frame could not be protected'), frame);
      return; // never send a frame in the clear
    }
    const keyframe = frame.type === 'key';
    frame.data = toArrayBuffer(out);
    controller.enqueue(frame);
    record.framesEncrypted += 1;
    record.keyframesEncrypted += keyframe ? 1 : 0;
  }

  /** Runs `task` after every earlier frame and release of `record`'s receiver. */
  serially(record, task) {
    const next = record.chain.then(task);
    record.chain = next.catch(() => {});
    return next;
  }

  /** Whether a sender's frame is held back from its remote (only an MLS endpoint gates senders). */
  withholds(frame, transformer, record) {
    return false;
  }

  /** A receiver's hold buffer, or null (TransformEndpoint, or holding off). */
  newHoldBuffer() {
    return null;
  }

  async decryptFrame(frame, controller, transformer, options, record) {
    record.kind = isVideo(frame) ? 'video' : 'audio';
    if (record.held !== null && record.held.length > 0) this.expireHeld(record, now());
    await this.openOrHold({ frame, controller, transformer, options }, record, null);
  }

  /**
   * Opens one frame and passes it on; holds it (arrived at `arrived`, or now)
   * if its epoch is not installed yet. True if it was opened.
   */
  async openOrHold(item, record, arrived) {
    const { frame, controller, transformer, options } = item;
    let plaintext;
    let epoch = null;
    let senderIndex = null;
    let codec = null;
    try {
      codec = this.framing(frame, options);
      record.codec = codec;
      ({ plaintext, epoch, senderIndex } = await this.open(frame, codec, asBytes(frame.data, 'frame')));
    } catch (caught) {
      const err = caught instanceof SFrameError ? caught : new SFrameError('syntax', 'the frame could not be processed');
      if (err.pending && record.held !== null) {
        if (arrived === null) record.framesHeld += 1;
        const evicted = record.held.hold(item, frame.data.byteLength, arrived ?? now());
        for (const entry of evicted) this.heldFailed(entry.item, record);
        this.scheduleExpiry(record);
        record.framesHolding = record.held.length;
        return false;
      }
      record.failures[ERROR_TYPE[err.kind] ?? 'syntax'] += 1;
      this.reportError(err, frame);
      this.afterFailure(transformer, record);
      return false;
    }
    const keyframe = codec !== null && codec !== 'audio' ? isKeyframe(codec, plaintext) : frame.type === 'key';
    frame.data = toArrayBuffer(plaintext);
    controller.enqueue(frame);
    record.framesDecrypted += 1;
    record.keyframesDecrypted += keyframe ? 1 : 0;
    if (epoch !== null) {
      record.epoch = epoch;
      record.framesByEpoch[epoch] = (record.framesByEpoch[epoch] ?? 0) + 1;
    }
    if (senderIndex !== null) {
      // who sent it: the KID's sender index (RFC 9605 §5.2), whatever the stream is said to carry
      record.senderIndex = senderIndex;
      record.firstSenderIndex ??= senderIndex;
      record.framesBySender[senderIndex] = (record.framesBySender[senderIndex] ?? 0) + 1;
    }
    if (keyframe) record.pendingRequest = false;
    else if (record.pendingRequest) this.afterFailure(transformer, record);
    return true;
  }

  /** A held frame given up on (expired, or pushed out by the bounds). */
  heldFailed(item, record) {
    record.failures.heldExpired += 1;
    this.reportError(new SFrameError('keyID', 'held for an MLS epoch not installed in time', { pending: true }), item.frame);
    this.afterFailure(item.transformer, record);
  }

  expireHeld(record, at) {
    for (const entry of record.held.expire(at)) this.heldFailed(entry.item, record);
    record.framesHolding = record.held.length;
  }

  /** One timer per receiver at its oldest held frame's deadline (frames may stop arriving). */
  scheduleExpiry(record) {
    const { deadline } = record.held;
    if (record.expiry !== null || deadline === null) return;
    record.expiry = setTimeout(() => {
      record.expiry = null;
      this.serially(record, () => {
        if (record.held.length === 0) return;
        this.expireHeld(record, now());
        this.scheduleExpiry(record);
      });
    }, Math.max(deadline - now(), 0) * 1000 + 10);
  }

  /** After an epoch install: every receiver opens what it held, in arrival order. */
  releaseHeld() {
    const releases = [];
    for (const record of this.receivers) {
      if (record.held === null || record.held.length === 0) continue;
      releases.push(this.serially(record, async () => {
        this.expireHeld(record, now());
        for (const entry of record.held.take()) {
          try {
            if (await this.openOrHold(entry.item, record, entry.arrived)) record.framesHeldOpened += 1;
          } catch {
            // the receiver's stream is closed: nothing more to deliver to it
          }
        }
        record.framesHolding = record.held.length;
        if (record.held.length === 0 && record.expiry !== null) {
          clearTimeout(record.expiry);
          record.expiry = null;
        }
      }));
    }
    return Promise.all(releases);
  }

  /** Hook: keyframe requests after failures (MLS endpoint only). */
  afterFailure() {}

  statsOf() {
    const strip = ({ generation, resuming, lastRequest, pendingRequest, held, chain, expiry, ...rest }) => ({ ...rest });
    return { senders: this.senders.map(strip), receivers: this.receivers.map(strip) };
  }
}

/** One W3C SFrameTransform: keys set with setEncryptionKey(key, keyID). */
class TransformEndpoint extends Endpoint {
  constructor(port, config) {
    super(port);
    this.ctx = new SFrameContext(config.cipherSuite ?? 1);
    this.compatibilityMode = config.compatibilityMode ?? 'none';
    /** @type {'encrypt'|'decrypt'|null} */
    this.role = config.role ?? null;
    /** keys set before the role is known (first attach) */
    this.unassigned = [];
    /** @type {bigint|null} */
    this.sendKid = null;
  }

  async handle(op, args) {
    if (op === 'setEncryptionKey') return this.setEncryptionKey(args.key, args.keyID);
    if (op === 'stats') return this.statsOf();
    throw new SFrameError('invalidParameter', `unknown request ${op}`);
  }

  async setEncryptionKey(key, keyID) {
    const kid = toU64(keyID ?? 0n, 'keyID');
    const baseKey = await importBaseKey(key);
    if (this.role === null) {
      this.unassigned.push([kid, baseKey]);
      return;
    }
    await this.provision(kid, baseKey);
  }

  /** Encrypt: the KID becomes the sending one; its CTR never goes back, even with a new key. */
  async provision(kid, baseKey) {
    if (this.role === 'decrypt') {
      await this.ctx.addRecvKey(kid, baseKey);
      return;
    }
    const previous = this.ctx.send.get(kid);
    this.ctx.removeKey(kid);
    const added = this.ctx.addSendKey(kid, baseKey, { initialCounter: previous?.nextCtr ?? 0n });
    this.sendKid = kid; // addSendKey registered the KID synchronously: frames queue behind its derivation
    await added;
  }

  attach(transformer) {
    const role = transformer.options?.role;
    if (this.role === null) {
      this.role = role;
      for (const [kid, baseKey] of this.unassigned.splice(0)) this.provision(kid, baseKey).catch(() => {});
    }
    super.attach(transformer);
  }

  framing(frame, options) {
    const mode = this.compatibilityMode;
    if (mode === 'none') return null;
    if (mode === 'auto') return codecOf(frame, options);
    return isVideo(frame) ? frameCodec(`video/${mode}`) : 'audio';
  }

  async seal(frame, codec, data) {
    const kid = this.sendKid;
    if (kid === null) throw new SFrameError('keyID', 'no encryption key set');
    const seal = (pt, md) => this.ctx.protect(kid, pt, md);
    return codec === null ? seal(data, EMPTY) : sealFrame(codec, data, seal);
  }

  async open(frame, codec, data) {
    const open = async (ct, md) => (await this.ctx.unprotect(ct, md)).plaintext;
    return {
      plaintext: codec === null ? await open(data, EMPTY) : await openFrame(codec, data, open), epoch: null, senderIndex: null,
    };
  }
}

/** One member's MLS-keyed SFrame (RFC 9605 §5.2), shared by its senders and receivers. */
class MLSEndpoint extends Endpoint {
  constructor(port, config) {
    super(port);
    this.manager = new MLSKeyManager(config.cipherSuite ?? 4, {
      epochBits: config.epochBits ?? 4,
      indexBits: config.indexBits ?? null,
      retainEpochs: config.retainEpochs ?? 4,
      retainSeconds: config.retainSeconds ?? 10,
      replayWindow: config.replayWindow ?? null,
    });
    this.pliInterval = config.pliInterval ?? 1;
    /** HoldBuffer limits of each receiver, or null (holding off) */
    this.hold = config.hold === false ? null : { ...(config.hold ?? {}) };
    if (this.hold !== null) new HoldBuffer(this.hold); // checks the limits now
    /** sender label -> the first epoch its remote has (bigint), or null: send nothing; absent: every epoch */
    this.gates = new Map();
  }

  /**
   * Withholds frames the sender's remote cannot open (not a member, or our sending
   * epoch older than its first); once it can, video waits for a keyframe, asked for.
   */
  withholds(frame, transformer, record) {
    const first = record.label === null ? undefined : this.gates.get(record.label);
    const epoch = this.manager.sendingEpoch;
    if (first === null || (first !== undefined && epoch !== null && BigInt(epoch) < first)) {
      record.resuming = true;
      return true;
    }
    if (!record.resuming || !isVideo(frame) || frame.type === 'key' || typeof transformer.generateKeyFrame !== 'function') {
      record.resuming = false;
      return false;
    }
    if (record.resuming === true) {
      record.resuming = 'asked';
      record.keyframesForced += 1;
      record.generation = this.manager.sendKeyGeneration; // this keyframe also starts the current key
      transformer.generateKeyFrame().catch(() => {});
    }
    return true;
  }

  newHoldBuffer() {
    return this.hold === null ? null : new HoldBuffer(this.hold);
  }

  async handle(op, args) {
    const m = this.manager;
    if (op === 'installEpoch') {
      await m.installBaseKey(args.baseKey, args.epoch, args.ownIndex, args.groupSize, { switchSender: args.switchSender ?? false });
      await this.releaseHeld();
    } else if (op === 'switchSender') {
      m.switchSender(args.epoch ?? null);
    } else if (op === 'remoteKeysFrom') {
      this.gates.set(String(args.label), args.epoch === null ? null : BigInt(args.epoch));
    } else if (op === 'relabelReceiver') {
      this.relabelReceiver(String(args.label), String(args.to));
    } else if (op !== 'stats' && op !== 'state') {
      throw new SFrameError('invalidParameter', `unknown request ${op}`);
    }
    const state = { sendingEpoch: m.sendingEpoch, newestEpoch: m.newestEpoch, epochs: m.epochs, sendKeyGeneration: m.sendKeyGeneration };
    return op === 'stats' ? { ...state, ...this.statsOf() } : state;
  }

  framing(frame, options) {
    return codecOf(frame, options);
  }

  async seal(frame, codec, data, options, transformer, record) {
    const m = this.manager;
    if (m.sendingEpoch === null) throw new SFrameError('keyManagement', 'no sending epoch installed');
    const context = BigInt(options.context ?? 0);
    if (record.generation !== m.sendKeyGeneration) {
      // A new sending key: receivers joining need a keyframe under it (RFC 9605 §7.2).
      const first = record.generation === null;
      record.generation = m.sendKeyGeneration;
      if (codec !== 'audio' && !first && typeof transformer.generateKeyFrame === 'function') {
        record.keyframesForced += 1;
        transformer.generateKeyFrame().catch(() => {});
      }
    }
    const seal = (pt, md) => {
      record.epoch = m.sendingEpoch; // read when the CTR is reserved, before any await
      return m.protect(pt, md, { context });
    };
    return sealFrame(codec, data, seal);
  }

  async open(frame, codec, data) {
    let epoch = null;
    let senderIndex = null;
    const open = async (ct, md) => {
      const result = await this.manager.unprotect(ct, md);
      epoch = result.epoch;
      senderIndex = result.senderIndex;
      return result.plaintext;
    };
    const plaintext = await openFrame(codec, data, open);
    return { plaintext, epoch, senderIndex };
  }

  /**
   * The receivers labelled `label` now carry another stream, named `to` (an
   * SFU gave their m-line to another publisher): who sent their frames
   * (sender indices) is counted afresh.
   */
  relabelReceiver(label, to) {
    for (const record of this.receivers) {
      if (record.label !== label) continue;
      record.label = to;
      record.senderIndex = null;
      record.firstSenderIndex = null;
      record.framesBySender = {};
    }
  }

  /** Asks the remote sender for a keyframe, at most once per pliInterval seconds. */
  afterFailure(transformer, record) {
    record.pendingRequest = true;
    const now = performance.now() / 1000;
    if (now - record.lastRequest < this.pliInterval || typeof transformer.sendKeyFrameRequest !== 'function') return;
    record.lastRequest = now;
    record.keyframeRequests += 1;
    transformer.sendKeyFrameRequest().catch(() => {});
  }
}

/**
 * Installs the SFrame worker logic on a worker global scope.
 * @param {EventTarget} scope `self` in a dedicated worker
 * @returns {Map<string, Endpoint>} the connected endpoints, by name
 */
export function installSFrameWorker(scope) {
  /** @type {Map<string, Endpoint>} */
  const endpoints = new Map();
  /** @type {Map<string, Array<(endpoint: Endpoint) => void>>} */
  const waiting = new Map();

  scope.addEventListener('message', (event) => {
    const message = event.data;
    if (message?.type !== 'sframe:connect') return;
    const { name, config, port } = message;
    const endpoint = config.kind === 'mls' ? new MLSEndpoint(port, config) : new TransformEndpoint(port, config);
    endpoints.set(name, endpoint);
    for (const resolve of waiting.get(name) ?? []) resolve(endpoint);
    waiting.delete(name);
  });

  scope.addEventListener('rtctransform', (event) => {
    const { transformer } = event;
    const name = transformer.options?.sframe;
    const endpoint = endpoints.get(name);
    if (endpoint !== undefined) {
      endpoint.attach(transformer);
    } else {
      // The connect message may arrive after the transform event: wait for it.
      const list = waiting.get(name) ?? [];
      list.push((ep) => ep.attach(transformer));
      waiting.set(name, list);
    }
  });
  return endpoints;
}
