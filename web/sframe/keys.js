/**
 * SFrame key and salt derivation (RFC 9605 §4.4.2) over WebCrypto HKDF.
 *
 *   sframe_secret = HKDF-Extract("", base_key)
 *   sframe_key    = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret key "  || u64be(KID) || u16be(suite), Nk)
 *   sframe_salt   = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret salt " || u64be(KID) || u16be(suite), Nn)
 *
 * WebCrypto's HKDF runs Extract then Expand, so each output is one deriveBits
 * (or deriveKey) call with an empty salt. Base keys are held as
 * non-extractable HKDF CryptoKeys. GCM keys are derived straight into
 * non-extractable CryptoKeys (deriveKey); the compound AEAD key has to be
 * split (§4.5.1), so its bytes exist briefly and are zeroed after import.
 * @module sframe/keys
 */

import { SFrameError } from './errors.js';
import { asBytes, concatBytes, encodeBigEndian } from './bytes.js';
import { GcmAead, importAeadKey } from './aead.js';

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();
const KEY_LABEL = encoder.encode('SFrame 1.0 Secret key ');
const SALT_LABEL = encoder.encode('SFrame 1.0 Secret salt ');
const EMPTY = new Uint8Array(0);

/**
 * `label || u64be(KID) || u16be(cipher_suite)`, RFC 9605 §4.4.2.
 * @param {Uint8Array} prefix
 * @param {bigint} kid
 * @param {number} suiteId
 */
function kidLabel(prefix, kid, suiteId) {
  return concatBytes(prefix, encodeBigEndian(kid, 8), encodeBigEndian(BigInt(suiteId), 2));
}

/**
 * Imports a base key as a non-extractable HKDF CryptoKey. A CryptoKey is
 * accepted as is when it is an HKDF key allowing deriveBits.
 * @param {CryptoKey|ArrayBuffer|ArrayBufferView} baseKey
 * @returns {Promise<CryptoKey>}
 * @throws {SFrameError} kind "key"
 */
export async function importBaseKey(baseKey) {
  if (typeof CryptoKey !== 'undefined' && baseKey instanceof CryptoKey) {
    if (baseKey.algorithm.name !== 'HKDF' || !baseKey.usages.includes('deriveBits')) {
      throw new SFrameError('invalidParameter', 'an SFrame base key CryptoKey must be an HKDF key with the "deriveBits" usage');
    }
    return baseKey;
  }
  const raw = asBytes(baseKey, 'base key');
  if (raw.length === 0) throw new SFrameError('invalidParameter', 'an SFrame base key must not be empty');
  return subtle.importKey('raw', raw, 'HKDF', false, ['deriveBits', 'deriveKey']);
}

/**
 * HKDF(salt="", base_key, info, length) with the suite's hash.
 * @returns {Promise<Uint8Array>}
 */
async function hkdf(suite, baseKey, info, length) {
  const bits = await subtle.deriveBits({ name: 'HKDF', hash: suite.hash, salt: EMPTY, info }, baseKey, 8 * length);
  return new Uint8Array(bits);
}

/**
 * @typedef {object} KeySalt
 * @property {import('./aead.js').Aead} aead  the AEAD keyed with sframe_key
 * @property {Uint8Array} salt                 sframe_salt (Nn bytes)
 */

/**
 * derive_key_salt(KID, base_key), RFC 9605 §4.4.2.
 * @param {import('./suites.js').CipherSuite} suite
 * @param {bigint} kid
 * @param {CryptoKey} baseKey an HKDF CryptoKey from importBaseKey
 * @returns {Promise<KeySalt>}
 */
export async function deriveKeySalt(suite, kid, baseKey) {
  const keyLabel = kidLabel(KEY_LABEL, kid, suite.id);
  const saltLabel = kidLabel(SALT_LABEL, kid, suite.id);
  if (suite.aead === 'gcm' && baseKey.usages.includes('deriveKey')) {
    const [key, salt] = await Promise.all([
      subtle.deriveKey(
        { name: 'HKDF', hash: suite.hash, salt: EMPTY, info: keyLabel },
        baseKey,
        { name: 'AES-GCM', length: 8 * suite.Nk },
        false,
        ['encrypt', 'decrypt'],
      ),
      hkdf(suite, baseKey, saltLabel, suite.Nn),
    ]);
    return { aead: new GcmAead(key), salt };
  }
  const [rawKey, salt] = await Promise.all([
    hkdf(suite, baseKey, keyLabel, suite.Nk),
    hkdf(suite, baseKey, saltLabel, suite.Nn),
  ]);
  try {
    return { aead: await importAeadKey(suite, rawKey), salt };
  } finally {
    rawKey.fill(0);
  }
}

/**
 * nonce = sframe_salt XOR u96be(CTR), RFC 9605 §4.4.3.
 * @param {Uint8Array} salt Nn bytes
 * @param {bigint} ctr
 * @returns {Uint8Array}
 */
export function computeNonce(salt, ctr) {
  const nonce = salt.slice();
  const n = nonce.length;
  let v = ctr;
  for (let i = n - 1; i >= n - 8; i -= 1) {
    nonce[i] ^= Number(v & 0xffn);
    v >>= 8n;
  }
  return nonce;
}
