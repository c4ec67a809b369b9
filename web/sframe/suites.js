/**
 * SFrame cipher suites (RFC 9605 §4.5, IANA registry §8.1) and the optional
 * AES_256_CTR_HMAC_SHA512 suites 6-8 of the WG repository (not in RFC 9605).
 * @module sframe/suites
 */

import { SFrameError } from './errors.js';

/**
 * @typedef {object} CipherSuite
 * @property {number} id        IANA value
 * @property {string} name      RFC 9605 name (the W3C SFrameCipherSuite enum value)
 * @property {'ctr-hmac'|'gcm'} aead
 * @property {string} hash      WebCrypto hash name for HKDF (and HMAC)
 * @property {number} Nh        hash output size
 * @property {number} Nka       AES key size of the compound AEAD (0 for GCM)
 * @property {number} Nk        AEAD key size
 * @property {number} Nn        nonce size
 * @property {number} Nt        tag size
 */

/** @type {(s: Omit<CipherSuite, 'Nn'>) => CipherSuite} */
const suite = (s) => Object.freeze({ ...s, Nn: 12 });

/** @type {ReadonlyMap<number, CipherSuite>} */
export const CIPHER_SUITES = new Map([
  [1, suite({ id: 1, name: 'AES_128_CTR_HMAC_SHA256_80', aead: 'ctr-hmac', hash: 'SHA-256', Nh: 32, Nka: 16, Nk: 48, Nt: 10 })],
  [2, suite({ id: 2, name: 'AES_128_CTR_HMAC_SHA256_64', aead: 'ctr-hmac', hash: 'SHA-256', Nh: 32, Nka: 16, Nk: 48, Nt: 8 })],
  [3, suite({ id: 3, name: 'AES_128_CTR_HMAC_SHA256_32', aead: 'ctr-hmac', hash: 'SHA-256', Nh: 32, Nka: 16, Nk: 48, Nt: 4 })],
  [4, suite({ id: 4, name: 'AES_128_GCM_SHA256_128', aead: 'gcm', hash: 'SHA-256', Nh: 32, Nka: 0, Nk: 16, Nt: 16 })],
  [5, suite({ id: 5, name: 'AES_256_GCM_SHA512_128', aead: 'gcm', hash: 'SHA-512', Nh: 64, Nka: 0, Nk: 32, Nt: 16 })],
  [6, suite({ id: 6, name: 'AES_256_CTR_HMAC_SHA512_80', aead: 'ctr-hmac', hash: 'SHA-512', Nh: 64, Nka: 32, Nk: 96, Nt: 10 })],
  [7, suite({ id: 7, name: 'AES_256_CTR_HMAC_SHA512_64', aead: 'ctr-hmac', hash: 'SHA-512', Nh: 64, Nka: 32, Nk: 96, Nt: 8 })],
  [8, suite({ id: 8, name: 'AES_256_CTR_HMAC_SHA512_32', aead: 'ctr-hmac', hash: 'SHA-512', Nh: 64, Nka: 32, Nk: 96, Nt: 4 })],
]);

/**
 * Looks a suite up by IANA id or by name.
 * @param {number|string|CipherSuite} idOrName
 * @returns {CipherSuite}
 * @throws {SFrameError} kind "cipherSuite"
 */
export function getCipherSuite(idOrName) {
  if (typeof idOrName === 'object' && idOrName !== null && CIPHER_SUITES.get(idOrName.id) === idOrName) {
    return idOrName;
  }
  if (typeof idOrName === 'number') {
    const found = CIPHER_SUITES.get(idOrName);
    if (found) return found;
  } else if (typeof idOrName === 'string') {
    for (const s of CIPHER_SUITES.values()) if (s.name === idOrName) return s;
  }
  throw new SFrameError('cipherSuite', `unknown SFrame cipher suite ${String(idOrName)}`);
}
