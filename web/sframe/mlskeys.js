/**
 * SFrame keys from MLS (RFC 9605 §5.2). Same semantics and defaults as the
 * Python `sframe.mls_keys.MLSKeyManager`.
 *
 * Each MLS epoch yields one `base_key = MLS-Exporter("SFrame 1.0 Base Key",
 * "", AEAD.Nk)` shared by all members; members differ only by KID:
 *
 *   KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))
 *
 * Defaults: E = 4, and S derived per epoch from the group size (the
 * smallest S with group_size <= 1 << S); pass `indexBits` to fix S.
 * Epochs are BigInts (MLS epochs are uint64); indexes and sizes are numbers.
 * @module sframe/mlskeys
 */

import { SFrameError } from './errors.js';
import { U64_MAX, asBytes, constantTimeEqual, toU64 } from './bytes.js';
import { SFrameContext } from './context.js';
import { decodeHeader } from './header.js';
import { importBaseKey } from './keys.js';

export const BASE_KEY_LABEL = 'SFrame 1.0 Base Key';

const subtle = globalThis.crypto.subtle;
const EMPTY = new Uint8Array(0);
/** HKDF info of the value that recognises a re-install of the same epoch secret. */
const FINGERPRINT_LABEL = new TextEncoder().encode('mlscall SFrame base key fingerprint');

/**
 * `KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))` (§5.2).
 * @param {number|bigint} epoch
 * @param {number} senderIndex
 * @param {number|bigint} context
 * @param {number} epochBits E
 * @param {number} indexBits S
 * @returns {bigint}
 */
export function mlsKid(epoch, senderIndex, context, epochBits, indexBits) {
  const e = BigInt(epoch);
  const c = BigInt(context);
  if (e < 0n || c < 0n || !Number.isSafeInteger(senderIndex) || senderIndex < 0
      || BigInt(senderIndex) >= (1n << BigInt(indexBits))) {
    throw new SFrameError('invalidParameter', 'sender index does not fit in S bits, or a negative field');
  }
  const E = BigInt(epochBits);
  const kid = (c << (BigInt(indexBits) + E)) | (BigInt(senderIndex) << E) | (e & ((1n << E) - 1n));
  if (kid > U64_MAX) throw new SFrameError('invalidParameter', 'context too large: KID exceeds 64 bits');
  return kid;
}

/**
 * The smallest S with `group_size <= 1 << S` (§5.2).
 * @param {number} groupSize
 */
export function indexBitsFor(groupSize) {
  let bits = 0;
  while (2 ** bits < groupSize) bits += 1;
  return bits;
}

/** One installed epoch; `baseKey` is a non-extractable HKDF CryptoKey. */
class EpochState {
  constructor(epoch, baseKey, fingerprint, ownIndex, groupSize, indexBits) {
    /** @type {bigint} */
    this.epoch = epoch;
    this.baseKey = baseKey;
    /** HKDF output of the base key, to recognise a re-install of the same epoch */
    this.fingerprint = fingerprint;
    this.ownIndex = ownIndex;
    this.groupSize = groupSize;
    this.indexBits = indexBits;
    /** @type {number|null} clock() when the next epoch was installed */
    this.supersededAt = null;
    /** @type {Set<bigint>} */
    this.recvKids = new Set();
    /** @type {Set<bigint>} */
    this.sendKids = new Set();
  }
}

/**
 * Bytes of an exporter output: bytes, or an MLSExporterOutput with `secret`.
 * @returns {Uint8Array}
 */
export function exporterBytes(output) {
  const secret = output !== null && typeof output === 'object' && 'secret' in output ? output.secret : output;
  try {
    return asBytes(secret, 'exporter output');
  } catch {
    throw new SFrameError('keyManagement', 'the MLS exporter returned no bytes');
  }
}

export class MLSKeyManager {
  /**
   * Per-member SFrame keys for an MLS group (RFC 9605 §5.2).
   *
   * - `installEpoch` derives the epoch's base key; frames of every other
   *   member in that epoch decrypt at once. By default this member also starts
   *   sending in the new epoch; with `switchSender: false` it keeps sending
   *   under its previous epoch until `switchSender()` (a transition).
   * - Past epochs stay decryptable while fewer than `retainEpochs` newer
   *   epochs exist and at most `retainSeconds` have passed since the next one
   *   was installed (`clock`, in seconds, is injectable for tests). An epoch
   *   is dropped at once when a newer one shares its low E bits (§5.2 MUST).
   * - `replayWindow` (off by default) enables per-KID anti-replay.
   *
   * @param {number|string} [cipherSuite] default AES_128_GCM_SHA256_128 (4)
   * @param {object} [options]
   * @param {number} [options.epochBits] E, default 4
   * @param {number|null} [options.indexBits] S, default derived per epoch
   * @param {number} [options.retainEpochs] default 4
   * @param {number} [options.retainSeconds] default 10
   * @param {number|null} [options.replayWindow] default off
   * @param {() => number} [options.clock] seconds, monotonic
   */
  constructor(cipherSuite = 4, {
    epochBits = 4, indexBits = null, retainEpochs = 4, retainSeconds = 10,
    replayWindow = null, clock = () => performance.now() / 1000,
  } = {}) {
    if (!Number.isInteger(epochBits) || epochBits < 1 || epochBits > 32) {
      throw new SFrameError('invalidParameter', 'epochBits must be in 1 .. 32');
    }
    if (indexBits !== null && (!Number.isInteger(indexBits) || indexBits < 0 || indexBits > 64 - epochBits)) {
      throw new SFrameError('invalidParameter', 'indexBits must be in 0 .. 64 - epochBits');
    }
    if (!Number.isInteger(retainEpochs) || retainEpochs < 0 || retainEpochs >= 2 ** epochBits) {
      throw new SFrameError('invalidParameter', 'retainEpochs must be in 0 .. 2^epochBits - 1');
    }
    if (typeof retainSeconds !== 'number' || !(retainSeconds >= 0)) {
      throw new SFrameError('invalidParameter', 'retainSeconds must be >= 0');
    }
    this.ctx = new SFrameContext(cipherSuite, { replayWindow });
    this.epochBits = epochBits;
    this.epochMask = (1n << BigInt(epochBits)) - 1n;
    this.indexBits = indexBits;
    this.retainEpochs = BigInt(retainEpochs);
    this.retainSeconds = retainSeconds;
    this.clock = clock;
    /** @type {Map<bigint, EpochState>} by epoch % 2^E */
    this.slots = new Map();
    /** @type {EpochState|null} */
    this.newest = null;
    /** @type {EpochState|null} */
    this.sending = null;
    this.sendGeneration = 0;
    /** @type {Map<bigint, number>} */
    this.seenGeneration = new Map();
  }

  // -- configuration and state -------------------------------------------------

  /** IANA id of the cipher suite. */
  get cipherSuite() {
    return this.ctx.cipherSuite;
  }

  /** Epochs whose frames currently decrypt, oldest first (after expiry). */
  get epochs() {
    this.expire();
    return [...this.slots.values()].map((s) => s.epoch).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The most recently installed epoch, or null. */
  get newestEpoch() {
    return this.newest === null ? null : this.newest.epoch;
  }

  /** The epoch `protect` encrypts under, or null before the first. */
  get sendingEpoch() {
    return this.sending === null ? null : this.sending.epoch;
  }

  /** True while a newer epoch is installed but this member sends under an older one. */
  get inTransition() {
    return this.sending !== null && this.sending !== this.newest;
  }

  /** Incremented each time the sending epoch changes. */
  get sendKeyGeneration() {
    return this.sendGeneration;
  }

  /**
   * True once per `context` after the sending key changed (and on the first
   * call): the sender should then force a keyframe (RFC 9605 §7.2).
   * @param {number|bigint} [context]
   */
  sendKeyChanged(context = 0) {
    const c = BigInt(context);
    const changed = this.seenGeneration.get(c) !== this.sendGeneration;
    this.seenGeneration.set(c, this.sendGeneration);
    return changed;
  }

  /**
   * The KID of `senderIndex` in a retained `epoch` (§5.2).
   * @param {number|bigint} epoch
   * @param {number} senderIndex
   * @param {number|bigint} [context]
   */
  kidFor(epoch, senderIndex, context = 0) {
    const e = BigInt(epoch);
    const state = this.slots.get(e & this.epochMask);
    if (state === undefined || state.epoch !== e) {
      throw new SFrameError('keyManagement', `epoch ${e} is not retained`);
    }
    return mlsKid(e, senderIndex, context, this.epochBits, state.indexBits);
  }

  // -- key schedule ------------------------------------------------------------

  /**
   * Installs MLS `epoch`: `base_key = MLS-Exporter("SFrame 1.0 Base Key", "",
   * AEAD.Nk)` (§5.2), from `exporter.exportSecret(label, context, length)`
   * (an MLSGroupView of the MLS Web API; it may return a promise, bytes or
   * an MLSExporterOutput). See installBaseKey for the rest.
   * @param {{exportSecret: Function}} exporter
   * @param {number|bigint} epoch
   * @param {number} ownIndex this member's leaf index
   * @param {number} groupSize leaves of the ratchet tree (any bound above every leaf index)
   * @param {{switchSender?: boolean}} [options]
   */
  async installEpoch(exporter, epoch, ownIndex, groupSize, options = {}) {
    this.epochLayout(epoch, ownIndex, groupSize);
    const nk = this.ctx.suite.Nk;
    const raw = exporterBytes(await exporter.exportSecret(BASE_KEY_LABEL, EMPTY, nk));
    if (raw.length !== nk) {
      throw new SFrameError('keyManagement', `exporter returned ${raw.length} bytes, expected ${nk}`);
    }
    await this.installBaseKey(raw, epoch, ownIndex, groupSize, options);
  }

  /**
   * Installs MLS `epoch` from its exported base key: raw bytes, or a
   * non-extractable HKDF CryptoKey (as posted to a worker). Receive keys of
   * the new epoch are usable at once. With `switchSender: false` this member
   * keeps sending under its current epoch until `switchSender()` (it switches
   * anyway if it had no sending epoch, or if the current one is evicted by
   * an E-bit collision). Every check happens before any state changes;
   * re-installing an installed epoch with the same secret is a no-op; an
   * older epoch, or the same one with another secret, fails with kind
   * "keyManagement".
   * @param {CryptoKey|ArrayBuffer|ArrayBufferView} baseKey
   * @param {number|bigint} epoch
   * @param {number} ownIndex
   * @param {number} groupSize
   * @param {{switchSender?: boolean}} [options]
   */
  async installBaseKey(baseKey, epoch, ownIndex, groupSize, { switchSender = true } = {}) {
    const { e, indexBits } = this.epochLayout(epoch, ownIndex, groupSize);
    if (!(typeof CryptoKey !== 'undefined' && baseKey instanceof CryptoKey)
        && asBytes(baseKey, 'base key').length !== this.ctx.suite.Nk) {
      throw new SFrameError('invalidParameter', `an MLS base key must be ${this.ctx.suite.Nk} bytes`);
    }
    const key = await importBaseKey(baseKey);
    const fingerprint = new Uint8Array(await subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: EMPTY, info: FINGERPRINT_LABEL }, key, 128,
    ));

    // From here on, no await: the state changes at once.
    const { newest } = this;
    if (newest !== null && e <= newest.epoch) {
      const same = this.slots.get(e & this.epochMask);
      if (same !== undefined && same.epoch === e && constantTimeEqual(same.fingerprint, fingerprint)) return;
      throw new SFrameError('keyManagement', `epoch ${e} is not newer than epoch ${newest.epoch}`);
    }
    const now = this.clock();
    const slot = e & this.epochMask;
    const evicted = this.slots.get(slot);
    if (evicted !== undefined) this.drop(evicted); // §5.2: same low E bits
    const { sending } = this;
    if (sending !== null && (sending.epoch & this.epochMask) === slot) {
      this.drop(sending); // expired but still sending: its KIDs would collide
    }
    if (newest !== null && newest.supersededAt === null) newest.supersededAt = now;
    const state = new EpochState(e, key, fingerprint, ownIndex, groupSize, indexBits);
    this.slots.set(slot, state);
    this.newest = state;
    if (switchSender || this.sending === null) this.setSending(state);
    this.expire();
  }

  /**
   * Validates the arguments of an epoch installation.
   * @returns {{e: bigint, indexBits: number}}
   */
  epochLayout(epoch, ownIndex, groupSize) {
    if (!((typeof epoch === 'bigint' && epoch >= 0n) || (Number.isSafeInteger(epoch) && epoch >= 0))) {
      throw new SFrameError('invalidParameter', 'epoch must be a non-negative integer');
    }
    const e = toU64(epoch, 'epoch');
    if (!Number.isSafeInteger(groupSize) || groupSize < 1) {
      throw new SFrameError('invalidParameter', 'groupSize must be a positive integer');
    }
    if (!Number.isSafeInteger(ownIndex) || ownIndex < 0 || ownIndex >= groupSize) {
      throw new SFrameError('invalidParameter', 'ownIndex must be in 0 .. groupSize - 1');
    }
    let { indexBits } = this;
    if (indexBits === null) {
      indexBits = indexBitsFor(groupSize);
      if (indexBits > 64 - this.epochBits) throw new SFrameError('invalidParameter', 'group too large for the KID layout');
    } else if (groupSize > 2 ** indexBits) {
      throw new SFrameError('invalidParameter', `groupSize ${groupSize} exceeds 2^${indexBits} (indexBits)`);
    }
    return { e, indexBits };
  }

  /**
   * Ends a transition: send under `epoch` (default: the newest). Only a
   * retained epoch not older than the current sending one may be chosen.
   * @param {number|bigint|null} [epoch]
   */
  switchSender(epoch = null) {
    if (this.newest === null) throw new SFrameError('keyManagement', 'no epoch installed');
    const e = epoch === null ? null : BigInt(epoch);
    const target = e === null ? this.newest : this.slots.get(e & this.epochMask);
    if (target === undefined || (e !== null && target.epoch !== e)) {
      throw new SFrameError('keyManagement', `epoch ${e} is not retained`);
    }
    if (this.sending !== null && target.epoch < this.sending.epoch) {
      throw new SFrameError('keyManagement', 'cannot switch the sender back to an older epoch');
    }
    this.setSending(target);
  }

  /**
   * Drops past epochs outside the retention count or time window. The epoch
   * this member sends under is kept for sending.
   */
  expire() {
    const { newest } = this;
    if (newest === null) return;
    const now = this.clock();
    for (const state of [...this.slots.values()]) {
      if (state === newest) continue;
      const tooMany = newest.epoch - state.epoch > this.retainEpochs;
      const tooOld = state.supersededAt !== null && now - state.supersededAt > this.retainSeconds;
      if (tooMany || tooOld) this.drop(state, state === this.sending);
    }
  }

  /** Forgets `state`'s receive keys; its send keys too unless still sending under it. */
  drop(state, keepSending = false) {
    for (const kid of state.recvKids) this.ctx.removeKey(kid);
    state.recvKids.clear();
    const slot = state.epoch & this.epochMask;
    if (this.slots.get(slot) === state) this.slots.delete(slot);
    if (keepSending) return;
    this.releaseSendKeys(state);
    if (this.sending === state) {
      this.sending = null;
      if (this.newest !== null && this.newest !== state) this.setSending(this.newest);
    }
  }

  releaseSendKeys(state) {
    for (const kid of state.sendKids) this.ctx.removeKey(kid);
    state.sendKids.clear();
  }

  setSending(state) {
    const previous = this.sending;
    if (previous === state) return;
    this.sending = state;
    this.sendGeneration += 1;
    if (previous !== null && this.slots.get(previous.epoch & this.epochMask) !== previous) {
      this.releaseSendKeys(previous); // an expired epoch kept only for sending
    }
  }

  /**
   * Whether `kid` names an epoch not installed *yet* (its key may still
   * come, RFC 9605 §4.4.4), from its low E epoch bits (§5.2). Before the
   * first epoch every KID is ahead (a joiner). After it, a KID whose epoch
   * slot holds no retained epoch is ahead when its epoch bits are
   * 1 .. 2^(E-1) - 1 past the newest epoch's (at least 1), and hopeless
   * otherwise: read backwards, an epoch older than every retained one.
   * @param {bigint|number} kid
   */
  epochAhead(kid) {
    const k = toU64(kid, 'KID');
    if (this.newest === null) return true;
    this.expire();
    const slot = k & this.epochMask;
    if (this.slots.has(slot)) return false;
    const ahead = (slot - this.newest.epoch) & this.epochMask;
    const half = (this.epochMask + 1n) >> 1n;
    return ahead >= 1n && ahead < (half > 2n ? half : 2n);
  }

  // -- frames ------------------------------------------------------------------

  /**
   * Encrypts a frame of this member under the sending epoch. `context`
   * (§5.2) tells apart this member's uncoordinated streams (e.g. audio 0,
   * video 1): each is its own KID with its own CTR.
   * @param {ArrayBuffer|ArrayBufferView} plaintext
   * @param {ArrayBuffer|ArrayBufferView} [metadata]
   * @param {{context?: number|bigint}} [options]
   * @returns {Promise<Uint8Array>}
   */
  async protect(plaintext, metadata = EMPTY, { context = 0 } = {}) {
    const state = this.sending;
    if (state === null) throw new SFrameError('keyManagement', 'no sending epoch installed');
    const kid = mlsKid(state.epoch, state.ownIndex, context, this.epochBits, state.indexBits);
    if (!state.sendKids.has(kid)) {
      this.ctx.addSendKey(kid, state.baseKey).catch(() => {}); // failures surface in protect
      state.sendKids.add(kid);
    }
    return this.ctx.protect(kid, plaintext, metadata);
  }

  /**
   * Decrypts a frame of another member: {kid, ctr, plaintext, epoch,
   * senderIndex, context}. Kind "keyID" with `pending` true if its epoch is
   * not installed yet (epochAhead: hold the frame and retry after the next
   * install, §4.4.4); kind "keyID" if its epoch was dropped, or its sender
   * index is this member's own or beyond the group; otherwise as
   * SFrameContext.unprotect.
   * @param {ArrayBuffer|ArrayBufferView} ciphertext
   * @param {ArrayBuffer|ArrayBufferView} [metadata]
   */
  async unprotect(ciphertext, metadata = EMPTY) {
    const data = asBytes(ciphertext, 'ciphertext');
    const { kid } = decodeHeader(data);
    const unknown = (reason, pending = false) => new SFrameError('keyID', `KID 0x${kid.toString(16)}: ${reason}`, { keyID: kid, pending });
    const slot = kid & this.epochMask;
    const state = this.slots.get(slot);
    if (state === undefined) {
      if (this.epochAhead(kid)) throw unknown('its MLS epoch is not installed yet', true);
      throw unknown('no MLS epoch installed for this KID');
    }
    if (state.supersededAt !== null) {
      this.expire();
      if (this.slots.get(slot) !== state) throw unknown('its MLS epoch has expired');
    }
    const rest = kid >> BigInt(this.epochBits);
    const index = rest & ((1n << BigInt(state.indexBits)) - 1n);
    if (index >= BigInt(state.groupSize)) throw unknown('sender index outside the group');
    if (index === BigInt(state.ownIndex)) throw unknown("this member's own KID is send-only");
    if (!this.ctx.hasRecvKey(kid)) {
      this.ctx.addRecvKey(kid, state.baseKey).catch(() => {}); // failures surface in unprotect
      state.recvKids.add(kid);
    }
    const result = await this.ctx.unprotect(data, metadata);
    return {
      ...result,
      epoch: state.epoch,
      senderIndex: Number(index),
      context: rest >> BigInt(state.indexBits),
    };
  }
}
