/**
 * Key custody for the MLS Web API.
 *
 * - Signature keys (the client identity): with suite 1 (Ed25519) the private
 *   key is a WebCrypto CryptoKey generated non-extractable and stored as a
 *   key object; ts-mls only ever sees an opaque handle naming it (see
 *   suite.js). Where WebCrypto lacks the suite's signature algorithm, the
 *   key is ts-mls's bytes, sealed at rest.
 * - Everything else ts-mls keeps as bytes (HPKE init and leaf keys, path and
 *   epoch secrets): those cannot be CryptoKeys since ts-mls computes on them
 *   directly. Records holding them are sealed at rest with AES-256-GCM under
 *   a non-extractable storage key kept in the same store, the record key as
 *   AAD (as Firefox keeps its MLS state encrypted at rest beside its key:
 *   this protects a copied database file, not a compromised origin).
 * @module mls/vault
 */

import { MLSError } from './errors.js';

const subtle = globalThis.crypto.subtle;
const utf8 = new TextEncoder();
const STORAGE_KEY = 'meta/storage-key';

export class Vault {
  #store;
  /** @type {Promise<CryptoKey>|null} */
  #storageKey = null;

  /** @param {import('./store.js').MemoryStore} store */
  constructor(store) {
    this.#store = store;
  }

  /** The storage key, created once per store (add() is atomic: one creator wins). */
  #key() {
    if (this.#storageKey === null) {
      this.#storageKey = (async () => {
        const existing = await this.#store.get(STORAGE_KEY);
        if (existing !== undefined) return existing;
        const key = await subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
        if (await this.#store.add(STORAGE_KEY, key)) return key;
        return this.#store.get(STORAGE_KEY);
      })();
      this.#storageKey.catch(() => { this.#storageKey = null; });
    }
    return this.#storageKey;
  }

  /** Forgets the cached storage key (after the store was cleared). */
  reset() {
    this.#storageKey = null;
  }

  /**
   * @param {string} recordKey bound to the ciphertext as AAD
   * @param {Uint8Array} plaintext
   * @returns {Promise<{iv: Uint8Array, ciphertext: Uint8Array}>}
   */
  async seal(recordKey, plaintext) {
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
    const ciphertext = new Uint8Array(await subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: utf8.encode(recordKey) }, await this.#key(), plaintext,
    ));
    return { iv, ciphertext };
  }

  /**
   * @param {string} recordKey
   * @param {{iv: Uint8Array, ciphertext: Uint8Array}} sealed
   * @returns {Promise<Uint8Array>}
   */
  async open(recordKey, sealed) {
    try {
      return new Uint8Array(await subtle.decrypt(
        { name: 'AES-GCM', iv: sealed.iv, additionalData: utf8.encode(recordKey) }, await this.#key(), sealed.ciphertext,
      ));
    } catch (err) {
      throw new MLSError('tamperedRecord', `stored record ${recordKey.split('/')[0]} cannot be opened`, { cause: err });
    }
  }
}
