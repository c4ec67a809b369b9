/**
 * SFrameTransform (W3C webrtc-encoded-transform, "SFrameTransform") for
 * browsers that ship none, on top of RTCRtpScriptTransform and a worker
 * (web/sframe-worker.js); byte-compatible with the Python `sframe` package.
 * Also the MLS-keyed variant the call page uses (RFC 9605 §5.2).
 *
 *   const t = new SFrameTransform({role: 'encrypt', cipherSuite: 'AES_128_GCM_SHA256_128'});
 *   await t.setEncryptionKey(hkdfKey, 5n);    // a non-extractable HKDF CryptoKey
 *   t.attach(sender);                          // sender.transform = RTCRtpScriptTransform
 *   t.onerror = (e) => console.log(e.errorType, e.keyID);
 *
 * Keys are CryptoKeys, posted to the worker (structured clone keeps them
 * non-extractable); raw key bytes never cross to the worker.
 * @module sframe-transform
 */

import { SFrameError } from './sframe/errors.js';
import { U64_MAX } from './sframe/bytes.js';
import { getCipherSuite } from './sframe/suites.js';
import { BASE_KEY_LABEL, exporterBytes } from './sframe/mlskeys.js';
import { importBaseKey } from './sframe/keys.js';

let sharedWorker = null;

/** The page's SFrame worker (one for every transform unless one is passed). */
export function defaultSFrameWorker() {
  sharedWorker ??= new Worker(new URL('./sframe-worker.js', import.meta.url), { type: 'module', name: 'sframe' });
  return sharedWorker;
}

let endpointCount = 0;

/** A request/response channel to one endpoint of the worker (see sframe/worker-core.js). */
class WorkerEndpoint {
  constructor(worker, config, onEvent) {
    endpointCount += 1;
    this.worker = worker;
    this.name = `sframe-${endpointCount}-${Math.random().toString(36).slice(2)}`;
    this.pending = new Map();
    this.sequence = 0;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    port1.onmessage = (event) => {
      const message = event.data;
      if (message.event) {
        onEvent(message);
        return;
      }
      const request = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) request?.reject(new SFrameError(message.error.kind, message.error.message));
      else request?.resolve(message.result);
    };
    worker.postMessage({ type: 'sframe:connect', name: this.name, config, port: port2 }, [port2]);
  }

  request(op, args = {}) {
    return new Promise((resolve, reject) => {
      this.sequence += 1;
      this.pending.set(this.sequence, { resolve, reject });
      this.port.postMessage({ id: this.sequence, op, args });
    });
  }

  /** Sets `target.transform` to a new RTCRtpScriptTransform bound to this endpoint. */
  attach(target, options) {
    const transform = new RTCRtpScriptTransform(this.worker, { sframe: this.name, ...options });
    target.transform = transform;
    return transform;
  }

  close() {
    this.port.close();
  }
}

/** "encrypt" for an RTCRtpSender, "decrypt" for an RTCRtpReceiver, else null. */
function roleOf(target) {
  if (typeof RTCRtpSender !== 'undefined' && target instanceof RTCRtpSender) return 'encrypt';
  if (typeof RTCRtpReceiver !== 'undefined' && target instanceof RTCRtpReceiver) return 'decrypt';
  return null;
}

/** SFrameTransformErrorEvent (W3C webrtc-encoded-transform). */
export class SFrameTransformErrorEvent extends Event {
  /**
   * @param {string} type
   * @param {{errorType: string, frame: any, keyID?: bigint|null}} init
   */
  constructor(type, init) {
    super(type, init);
    /** "authentication" | "keyID" | "syntax" (and "replay" for the MLS session) */
    this.errorType = init.errorType;
    this.keyID = init.keyID ?? null;
    /** a summary of the dropped frame ({type, timestamp, synchronizationSource, byteLength}): the frame stays in the worker */
    this.frame = init.frame;
  }
}

/** An EventTarget with an `onerror` event handler attribute. */
class ErrorEventTarget extends EventTarget {
  #onerror = null;

  get onerror() {
    return this.#onerror;
  }

  set onerror(handler) {
    if (this.#onerror) this.removeEventListener('error', this.#onerror);
    this.#onerror = typeof handler === 'function' ? handler : null;
    if (this.#onerror) this.addEventListener('error', this.#onerror);
  }

  dispatchSFrameError(message) {
    this.dispatchEvent(new SFrameTransformErrorEvent('error', {
      errorType: message.errorType, keyID: message.keyID, frame: message.frame,
    }));
  }
}

/** authenticationSize (older SFrameTransform drafts) -> suite. */
const SUITE_BY_AUTHENTICATION_SIZE = new Map([[10, 1], [8, 2], [4, 3], [16, 4]]);
const COMPATIBILITY_MODES = new Set(['none', 'auto', 'VP8', 'H264']);

export class SFrameTransform extends ErrorEventTarget {
  /**
   * @param {object} [options]
   * @param {string|number} [options.cipherSuite] SFrameCipherSuite name (or IANA id)
   * @param {number} [options.authenticationSize] 10, 8, 4 (AES-CTR-HMAC) or 16 (GCM), if no cipherSuite;
   *   default AES_128_CTR_HMAC_SHA256_80
   * @param {'encrypt'|'decrypt'} [options.role] default: from the RTCRtpSender/Receiver attached to
   * @param {'none'|'auto'|'VP8'|'H264'} [options.compatibilityMode] "none" (default): the whole frame
   *   is one SFrame ciphertext, as the W3C spec; "auto": codec-aware clear bytes per frame codec
   *   (media/framing.py, needed to interoperate with the Python peers); "VP8"/"H264": that framing
   *   for every video frame
   * @param {Worker} [options.worker] default defaultSFrameWorker()
   */
  constructor(options = {}) {
    super();
    const { cipherSuite, authenticationSize, role, compatibilityMode = 'none', worker } = options;
    let suite;
    if (cipherSuite !== undefined) {
      suite = getCipherSuite(cipherSuite);
    } else if (authenticationSize !== undefined) {
      if (!SUITE_BY_AUTHENTICATION_SIZE.has(authenticationSize)) {
        throw new TypeError('authenticationSize must be 4, 8, 10 or 16');
      }
      suite = getCipherSuite(SUITE_BY_AUTHENTICATION_SIZE.get(authenticationSize));
    } else {
      suite = getCipherSuite(1);
    }
    if (role !== undefined && role !== 'encrypt' && role !== 'decrypt') {
      throw new TypeError('role must be "encrypt" or "decrypt"');
    }
    if (!COMPATIBILITY_MODES.has(compatibilityMode)) {
      throw new TypeError('compatibilityMode must be "none", "auto", "VP8" or "H264"');
    }
    this.cipherSuite = suite.name;
    this.role = role ?? null;
    this.compatibilityMode = compatibilityMode;
    this.endpoint = new WorkerEndpoint(worker ?? defaultSFrameWorker(), {
      kind: 'transform', cipherSuite: suite.id, role: this.role, compatibilityMode,
    }, (message) => this.dispatchSFrameError(message));
    /** @type {RTCRtpScriptTransform|null} */
    this.transform = null;
  }

  /**
   * setEncryptionKey(key, keyID) (W3C webrtc-encoded-transform §SFrameTransform
   * methods): `key` is the SFrame base_key as an HKDF CryptoKey with the
   * "deriveBits" usage (import it non-extractable). Encrypting: frames are sent
   * under the last keyID set. Decrypting: adds (or replaces) the key of keyID.
   * @param {CryptoKey} key
   * @param {number|bigint} [keyID] default 0
   * @returns {Promise<void>} RangeError for a keyID outside 0..2^64-1,
   *   InvalidModificationError if the key cannot be used
   */
  setEncryptionKey(key, keyID = 0n) {
    let kid;
    try {
      kid = BigInt(keyID);
    } catch {
      return Promise.reject(new TypeError('keyID must be an integer'));
    }
    if (typeof keyID === 'number' && !Number.isSafeInteger(keyID)) {
      return Promise.reject(new TypeError('keyID must be an integer'));
    }
    if (kid < 0n || kid > U64_MAX) return Promise.reject(new RangeError('keyID must be in 0 .. 2^64-1'));
    if (typeof CryptoKey === 'undefined' || !(key instanceof CryptoKey)) {
      return Promise.reject(new TypeError('key must be a CryptoKey'));
    }
    return this.endpoint.request('setEncryptionKey', { key, keyID: kid }).catch((err) => {
      throw new DOMException(`setEncryptionKey failed: ${err.message}`, 'InvalidModificationError');
    });
  }

  /**
   * Uses this transform on an RTCRtpSender (encrypt) or RTCRtpReceiver
   * (decrypt): sets its `transform` to an RTCRtpScriptTransform.
   * @param {RTCRtpSender|RTCRtpReceiver} target
   * @param {{codec?: string}} [options] codec MIME type, if frames lack metadata.mimeType
   * @returns {RTCRtpScriptTransform}
   */
  attach(target, { codec } = {}) {
    if (this.transform !== null) throw new DOMException('this SFrameTransform is already in use', 'InvalidStateError');
    const role = roleOf(target) ?? this.role;
    if (role === null) throw new TypeError('attach to an RTCRtpSender or RTCRtpReceiver, or set options.role');
    if (this.role !== null && role !== this.role) throw new TypeError(`this SFrameTransform is for role ${this.role}`);
    this.role = role;
    this.transform = this.endpoint.attach(target, { role, codec });
    return this.transform;
  }

  /** Not in the W3C API: closes the channel to the worker (keys and frames stop there). */
  close() {
    this.endpoint.close();
  }
}

/**
 * One member's MLS-keyed SFrame (RFC 9605 §5.2) for all its RTCRtpSenders
 * and RTCRtpReceivers; the JS counterpart of Python's media SFrameSession.
 * Events: "error" (SFrameTransformErrorEvent, errorType "keyID" |
 * "authentication" | "syntax" | "replay") for every dropped received frame.
 */
export class SFrameMLSSession extends ErrorEventTarget {
  /**
   * @param {object} [options] as MLSKeyManager: cipherSuite (default 4), epochBits, indexBits,
   *   retainEpochs, retainSeconds, replayWindow; pliInterval (seconds between keyframe
   *   requests after failures, default 1); hold: how each receiver holds frames of an epoch
   *   not installed yet (RFC 9605 §4.4.4), {maxAge, maxFrames, maxBytes} (default 1 s, 256
   *   frames, 2 MiB) or false; worker
   */
  constructor({ cipherSuite = 4, worker, ...config } = {}) {
    super();
    this.suite = getCipherSuite(cipherSuite);
    this.endpoint = new WorkerEndpoint(worker ?? defaultSFrameWorker(), { kind: 'mls', cipherSuite: this.suite.id, ...config },
      (message) => this.dispatchSFrameError(message));
    this.switchTimer = null;
    /** last known key state ({sendingEpoch, newestEpoch, epochs, sendKeyGeneration}) */
    this.state = { sendingEpoch: null, newestEpoch: null, epochs: [], sendKeyGeneration: 0 };
  }

  /**
   * Installs MLS `epoch` for receiving now; this member sends under it after
   * the transition (switchSender(), or `switchAfter` seconds), except for the
   * first epoch, used at once. `exporter.exportSecret` is called here; only a
   * non-extractable HKDF CryptoKey of the base key goes to the worker.
   * @param {{exportSecret: Function}} exporter an MLSGroupView
   * @param {number|bigint} epoch
   * @param {number} ownIndex
   * @param {number} groupSize
   * @param {{switchAfter?: number|null, switchSender?: boolean}} [options]
   */
  async installEpoch(exporter, epoch, ownIndex, groupSize, { switchAfter = null, switchSender = false } = {}) {
    const nk = this.suite.Nk;
    const raw = exporterBytes(await exporter.exportSecret(BASE_KEY_LABEL, new Uint8Array(0), nk));
    if (raw.length !== nk) throw new SFrameError('keyManagement', `exporter returned ${raw.length} bytes, expected ${nk}`);
    const baseKey = await importBaseKey(raw);
    this.state = await this.endpoint.request('installEpoch', { baseKey, epoch: BigInt(epoch), ownIndex, groupSize, switchSender });
    if (switchAfter !== null) {
      clearTimeout(this.switchTimer);
      const target = BigInt(epoch);
      this.switchTimer = setTimeout(() => {
        this.switchTimer = null;
        if (this.state.sendingEpoch === null || this.state.sendingEpoch < target) {
          this.switchSender(target).catch((err) => console.warn('SFrame: timed switch skipped:', err.message));
        }
      }, switchAfter * 1000);
    }
    return this.state;
  }

  /** Ends a transition: send under `epoch` (default: the newest installed). */
  async switchSender(epoch = null) {
    this.state = await this.endpoint.request('switchSender', { epoch: epoch === null ? null : BigInt(epoch) });
    return this.state;
  }

  /**
   * Senders labelled `label` send only under `epoch` or a later one, the first
   * epoch their remote has (the one its Welcome starts); null: nothing, the
   * remote is no member. Video resumes with a keyframe.
   * @param {string} label
   * @param {number|bigint|null} epoch
   */
  async remoteKeysFrom(label, epoch) {
    await this.endpoint.request('remoteKeysFrom', { label, epoch: epoch === null ? null : BigInt(epoch) });
  }

  /**
   * The receivers labelled `label` now carry another stream (an SFU gave
   * their m-line to another publisher): they are named `to` and count their
   * frames' senders (KID sender indices) afresh.
   * @param {string} label
   * @param {string} to
   */
  async relabelReceiver(label, to) {
    await this.endpoint.request('relabelReceiver', { label, to });
  }

  /**
   * Seals every frame `sender` sends.
   * @param {RTCRtpSender} sender
   * @param {{context?: number|bigint, codec?: string, label?: string}} [options] context: KID context
   *   (§5.2) of this stream, distinct per sender of this member (e.g. audio 0, video 1); label: names
   *   this stream in stats()
   */
  protectSender(sender, { context = 0, codec, label } = {}) {
    return this.endpoint.attach(sender, { role: 'encrypt', context: BigInt(context), codec, label });
  }

  /** Opens every frame `receiver` receives before it is decoded (`label` names it in stats()). */
  protectReceiver(receiver, { codec, label } = {}) {
    return this.endpoint.attach(receiver, { role: 'decrypt', codec, label });
  }

  /**
   * Counters: {sendingEpoch, newestEpoch, epochs, sendKeyGeneration,
   * senders: [{label, kind, codec, framesEncrypted, keyframesEncrypted, keyframesForced, framesDropped, framesWithheld,
   * epoch}],
   * receivers: [{label, kind, codec, framesDecrypted, keyframesDecrypted, failures: {keyID, authentication,
   * replay, syntax, heldExpired}, keyframeRequests, epoch, framesByEpoch, framesHeld, framesHeldOpened,
   * framesHolding, senderIndex, firstSenderIndex, framesBySender}], framesEncrypted, framesDecrypted, failures}
   * (senderIndex: the KID's sender index of the last frame opened, RFC 9605 §5.2)
   */
  async stats() {
    const stats = await this.endpoint.request('stats');
    const failures = { keyID: 0, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 };
    for (const receiver of stats.receivers) {
      for (const [kind, count] of Object.entries(receiver.failures)) failures[kind] += count;
    }
    return {
      ...stats,
      framesEncrypted: stats.senders.reduce((sum, s) => sum + s.framesEncrypted, 0),
      framesDecrypted: stats.receivers.reduce((sum, r) => sum + r.framesDecrypted, 0),
      failures,
    };
  }

  /** Cancels a pending timed switch and closes the channel to the worker. */
  close() {
    clearTimeout(this.switchTimer);
    this.switchTimer = null;
    this.endpoint.close();
  }
}
