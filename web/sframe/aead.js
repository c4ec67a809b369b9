/**
 * The AEADs of the SFrame cipher suites over WebCrypto (RFC 9605 §4.5):
 * AES-GCM, and the AES-CTR + truncated HMAC compound AEAD (§4.5.1).
 * Keys are imported as non-extractable CryptoKeys once and reused.
 * @module sframe/aead
 */

import { SFrameError } from './errors.js';
import { concatBytes, constantTimeEqual, encodeBigEndian } from './bytes.js';

const subtle = globalThis.crypto.subtle;

/**
 * @typedef {object} Aead
 * @property {(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array) => Promise<Uint8Array>} encrypt
 *   returns ciphertext || tag
 * @property {(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array) => Promise<Uint8Array>} decrypt
 *   throws SFrameError "authentication" when the tag does not verify
 */

/** AES-GCM with a 128-bit tag (suites 4 and 5). */
export class GcmAead {
  /** @param {CryptoKey} key AES-GCM, non-extractable */
  constructor(key) {
    this.key = key;
  }

  async encrypt(nonce, aad, pt) {
    const ct = await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, this.key, pt);
    return new Uint8Array(ct);
  }

  async decrypt(nonce, aad, ct) {
    if (ct.length < 16) throw new SFrameError('authentication', 'SFrame ciphertext shorter than the authentication tag');
    try {
      const pt = await subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, this.key, ct);
      return new Uint8Array(pt);
    } catch {
      throw new SFrameError('authentication', 'SFrame authentication tag mismatch');
    }
  }
}

/** AES-CTR + HMAC, encrypt-then-MAC with a tag truncated to Nt (RFC 9605 §4.5.1). */
class CtrHmacAead {
  /**
   * @param {CryptoKey} encKey AES-CTR, non-extractable
   * @param {CryptoKey} authKey HMAC, non-extractable
   * @param {number} Nt tag length
   */
  constructor(encKey, authKey, Nt) {
    this.encKey = encKey;
    this.authKey = authKey;
    this.Nt = Nt;
    this.tagLength = encodeBigEndian(BigInt(Nt), 8);
  }

  /** compute_tag(auth_key, nonce, aad, ct), RFC 9605 §4.5.1. */
  async computeTag(nonce, aad, ct) {
    const authData = concatBytes(
      encodeBigEndian(BigInt(aad.length), 8),
      encodeBigEndian(BigInt(ct.length), 8),
      this.tagLength,
      nonce,
      aad,
      ct,
    );
    const tag = await subtle.sign('HMAC', this.authKey, authData);
    return new Uint8Array(tag, 0, this.Nt);
  }

  /** AES-CTR with initial counter block nonce || 0x00000000. */
  async ctr(nonce, data) {
    const counter = new Uint8Array(16);
    counter.set(nonce, 0);
    const out = await subtle.encrypt({ name: 'AES-CTR', counter, length: 32 }, this.encKey, data);
    return new Uint8Array(out);
  }

  async encrypt(nonce, aad, pt) {
    const ct = await this.ctr(nonce, pt);
    const tag = await this.computeTag(nonce, aad, ct);
    return concatBytes(ct, tag);
  }

  async decrypt(nonce, aad, ct) {
    if (ct.length < this.Nt) throw new SFrameError('authentication', 'SFrame ciphertext shorter than the authentication tag');
    const inner = ct.subarray(0, ct.length - this.Nt);
    const tag = ct.subarray(ct.length - this.Nt);
    const candidate = await this.computeTag(nonce, aad, inner);
    if (!constantTimeEqual(tag, candidate)) {
      throw new SFrameError('authentication', 'SFrame authentication tag mismatch');
    }
    return this.ctr(nonce, inner);
  }
}

/**
 * Imports a raw AEAD key (Nk bytes) for `suite` as non-extractable CryptoKeys.
 * The caller should drop `rawKey` afterwards.
 * @param {import('./suites.js').CipherSuite} suite
 * @param {Uint8Array} rawKey
 * @returns {Promise<Aead>}
 */
export async function importAeadKey(suite, rawKey) {
  if (rawKey.length !== suite.Nk) {
    throw new SFrameError('invalidParameter', `AEAD key for ${suite.name} must be ${suite.Nk} bytes`);
  }
  if (suite.aead === 'gcm') {
    const key = await subtle.importKey('raw', rawKey, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    return new GcmAead(key);
  }
  const [encKey, authKey] = await Promise.all([
    subtle.importKey('raw', rawKey.subarray(0, suite.Nka), { name: 'AES-CTR' }, false, ['encrypt', 'decrypt']),
    subtle.importKey('raw', rawKey.subarray(suite.Nka), { name: 'HMAC', hash: suite.hash }, false, ['sign']),
  ]);
  return new CtrHmacAead(encKey, authKey, suite.Nt);
}
