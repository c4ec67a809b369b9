/**
 * The SFrame context (RFC 9605 §4.4, Appendix A): one cipher suite, keys by
 * KID. Same semantics as the Python `sframe.context.SFrameContext`.
 *
 * Each KID holds a send key or a receive key, never both (§4.4.1). The key
 * and salt of a KID are derived once (§4.4.2) into non-extractable
 * CryptoKeys. Key derivation is asynchronous in WebCrypto, so a KID is
 * registered synchronously with a pending derivation: `protect` and
 * `unprotect` may be called right after `addSendKey`/`addRecvKey` without
 * awaiting them. A send CTR is reserved synchronously before any await, so
 * concurrent `protect` calls never share a (KID, CTR).
 * @module sframe/context
 */

import { SFrameError } from './errors.js';
import { U64_MAX, asBytes, concatBytes, toU64 } from './bytes.js';
import { decodeHeader, encodeHeader } from './header.js';
import { computeNonce, deriveKeySalt, importBaseKey } from './keys.js';
import { ReplayWindow } from './replay.js';
import { getCipherSuite } from './suites.js';

const EMPTY = new Uint8Array(0);

/** @typedef {{kid: bigint, ctr: bigint, plaintext: Uint8Array}} UnprotectResult */

/**
 * Starts the derivation for `kid`; the returned promise never rejects with
 * anything but an SFrameError.
 * @returns {Promise<import('./keys.js').KeySalt>}
 */
async function derive(suite, kid, baseKey) {
  try {
    return await deriveKeySalt(suite, kid, await importBaseKey(baseKey));
  } catch (err) {
    if (err instanceof SFrameError) throw err;
    throw new SFrameError('invalidParameter', 'unusable SFrame base key');
  }
}

class SendKey {
  constructor(ready, initialCounter) {
    /** @type {Promise<import('./keys.js').KeySalt>} */
    this.ready = ready;
    /** @type {bigint} next CTR to use */
    this.nextCtr = initialCounter;
  }
}

class RecvKey {
  constructor(ready, replay) {
    /** @type {Promise<import('./keys.js').KeySalt>} */
    this.ready = ready;
    /** @type {ReplayWindow|null} */
    this.replay = replay;
  }
}

export class SFrameContext {
  /**
   * @param {number|string} [cipherSuite] IANA id or RFC 9605 name; default
   *   AES_128_GCM_SHA256_128 (4), as the Python package
   * @param {{replayWindow?: number|null}} [options] if set, each receive KID
   *   rejects a CTR it already accepted or `replayWindow` or more below the
   *   highest accepted one (kind "replay"). Off by default (§10.3).
   */
  constructor(cipherSuite = 4, { replayWindow = null } = {}) {
    this.suite = getCipherSuite(cipherSuite);
    if (replayWindow !== null && replayWindow !== undefined) new ReplayWindow(replayWindow);
    this.replayWindow = replayWindow ?? null;
    /** @type {Map<bigint, SendKey>} */
    this.send = new Map();
    /** @type {Map<bigint, RecvKey>} */
    this.recv = new Map();
  }

  /** IANA id of the suite of every key in this context. */
  get cipherSuite() {
    return this.suite.id;
  }

  /** KIDs usable with `protect`. */
  get sendKids() {
    return new Set(this.send.keys());
  }

  /** KIDs accepted by `unprotect`. */
  get recvKids() {
    return new Set(this.recv.keys());
  }

  /** @param {number|bigint} kid */
  hasRecvKey(kid) {
    return this.recv.has(toU64(kid, 'KID'));
  }

  /**
   * Provisions `kid` for sending (§4.4.1); its CTR starts at
   * `initialCounter`. A KID holds one send key: remove it first to replace
   * it, and never re-add the same base key with a CTR already used.
   * @param {number|bigint} kid
   * @param {CryptoKey|ArrayBuffer|ArrayBufferView} baseKey raw bytes or an HKDF CryptoKey
   * @param {{initialCounter?: number|bigint}} [options]
   * @returns {Promise<void>} resolves once the key is derived
   */
  async addSendKey(kid, baseKey, { initialCounter = 0n } = {}) {
    const k = toU64(kid, 'KID');
    if (this.send.has(k) || this.recv.has(k)) {
      throw new SFrameError('keyManagement', `KID 0x${k.toString(16)} is already provisioned`);
    }
    const entry = new SendKey(derive(this.suite, k, baseKey), toU64(initialCounter, 'initialCounter'));
    this.send.set(k, entry);
    await this.settle(this.send, k, entry);
  }

  /**
   * Provisions (or replaces) `kid` for receiving (§4.4.1).
   * @param {number|bigint} kid
   * @param {CryptoKey|ArrayBuffer|ArrayBufferView} baseKey raw bytes or an HKDF CryptoKey
   * @returns {Promise<void>} resolves once the key is derived
   */
  async addRecvKey(kid, baseKey) {
    const k = toU64(kid, 'KID');
    if (this.send.has(k)) {
      throw new SFrameError('keyManagement', `KID 0x${k.toString(16)} is a send key; a key is never used both ways`);
    }
    const replay = this.replayWindow === null ? null : new ReplayWindow(this.replayWindow);
    const entry = new RecvKey(derive(this.suite, k, baseKey), replay);
    this.recv.set(k, entry);
    await this.settle(this.recv, k, entry);
  }

  /** Waits for a derivation; on failure the KID is unregistered again. */
  async settle(map, kid, entry) {
    try {
      await entry.ready;
    } catch (err) {
      if (map.get(kid) === entry) map.delete(kid);
      throw err;
    }
  }

  /**
   * Forgets `kid` (send or receive); no error if it is unknown.
   * @param {number|bigint} kid
   */
  removeKey(kid) {
    const k = toU64(kid, 'KID');
    this.send.delete(k);
    this.recv.delete(k);
  }

  /**
   * SFrame encrypt (§4.4.3) with the next CTR of send key `kid`:
   * `header || ciphertext || tag`. The CTR is consumed before encryption,
   * so it is never reused even if encryption then fails.
   * @param {number|bigint} kid
   * @param {ArrayBuffer|ArrayBufferView} plaintext
   * @param {ArrayBuffer|ArrayBufferView} [metadata] authenticated, not sent
   * @returns {Promise<Uint8Array>}
   * @throws {SFrameError} "keyID" if `kid` has no send key, "counter" once CTR 2^64-1 was used
   */
  async protect(kid, plaintext, metadata = EMPTY) {
    const k = toU64(kid, 'KID');
    const pt = asBytes(plaintext, 'plaintext');
    const md = asBytes(metadata, 'metadata');
    const key = this.send.get(k);
    if (key === undefined) {
      throw new SFrameError('keyID', `KID 0x${k.toString(16)}: no send key for this KID`, { keyID: k });
    }
    const ctr = key.nextCtr;
    if (ctr > U64_MAX) {
      throw new SFrameError('counter', `KID 0x${k.toString(16)} has used every CTR value`);
    }
    key.nextCtr = ctr + 1n;
    const header = encodeHeader(k, ctr);
    const { aead, salt } = await key.ready;
    const ct = await aead.encrypt(computeNonce(salt, ctr), md.length ? concatBytes(header, md) : header, pt);
    return concatBytes(header, ct);
  }

  /**
   * SFrame decrypt (§4.4.4).
   * @param {ArrayBuffer|ArrayBufferView} ciphertext
   * @param {ArrayBuffer|ArrayBufferView} [metadata]
   * @returns {Promise<UnprotectResult>}
   * @throws {SFrameError} "syntax", "keyID" (no receive key: the caller may
   *   buffer and retry), "authentication" or "replay"; nothing else for any bytes
   */
  async unprotect(ciphertext, metadata = EMPTY) {
    const data = asBytes(ciphertext, 'ciphertext');
    const md = asBytes(metadata, 'metadata');
    const { kid, ctr, header, length } = decodeHeader(data);
    const key = this.recv.get(kid);
    if (key === undefined) {
      throw new SFrameError('keyID', `KID 0x${kid.toString(16)}: no key for this KID`, { keyID: kid });
    }
    key.replay?.check(ctr, kid);
    const { aead, salt } = await key.ready;
    const aad = md.length ? concatBytes(header, md) : header;
    const plaintext = await aead.decrypt(computeNonce(salt, ctr), aad, data.subarray(length));
    if (key.replay) {
      key.replay.check(ctr, kid); // a concurrent unprotect may have accepted it meanwhile
      key.replay.accept(ctr);
    }
    return { kid, ctr, plaintext };
  }
}
