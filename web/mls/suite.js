/**
 * Cipher suite implementations from ts-mls, with signing routed through
 * non-extractable WebCrypto keys.
 *
 * ts-mls signs with `cs.signature.sign(signKey, message)` where `signKey` is
 * bytes it keeps in its group state. For identities whose private key is a
 * CryptoKey, the bytes handed to ts-mls are a handle (a fixed prefix and the
 * client identifier) that this wrapper resolves to the key; any other bytes
 * go to ts-mls's own signer.
 * @module mls/suite
 */

import { ciphersuites, getCiphersuiteFromName, getCiphersuiteImpl } from 'ts-mls';

import { bytesEqual } from './bytes.js';
import { MLSError } from './errors.js';

const HANDLE_PREFIX = new TextEncoder().encode('mlscall/webcrypto-signature-key:');

/** WebCrypto algorithm per ts-mls signature algorithm, where WebCrypto has one whose output MLS uses as is. */
const WEBCRYPTO_SIGNATURE = { Ed25519: 'Ed25519' };

/** @param {Uint8Array} clientId */
export function signingHandle(clientId) {
  const out = new Uint8Array(HANDLE_PREFIX.length + clientId.length);
  out.set(HANDLE_PREFIX);
  out.set(clientId, HANDLE_PREFIX.length);
  return out;
}

/** @param {Uint8Array} signKey @returns {Uint8Array|null} the client identifier named by a handle */
function handleClientId(signKey) {
  if (signKey.length <= HANDLE_PREFIX.length) return null;
  return bytesEqual(signKey.subarray(0, HANDLE_PREFIX.length), HANDLE_PREFIX)
    ? signKey.subarray(HANDLE_PREFIX.length) : null;
}

/**
 * @param {number} id cipher suite (RFC 9420 §17.1)
 * @param {(clientId: Uint8Array) => Promise<CryptoKey>} resolveKey
 * @returns {Promise<{impl: import('ts-mls').CiphersuiteImpl, webcryptoSignature: string|undefined}>}
 */
export async function loadSuite(id, resolveKey) {
  const name = Object.keys(ciphersuites).find((n) => ciphersuites[n] === id);
  if (name === undefined) throw new MLSError('unsupported', `cipher suite ${id} is not supported`);
  const suite = getCiphersuiteFromName(name);
  let inner;
  try {
    inner = await getCiphersuiteImpl(suite);
  } catch (err) {
    throw new MLSError('unsupported', `cipher suite ${id} needs a missing dependency`, { cause: err });
  }
  const algorithm = WEBCRYPTO_SIGNATURE[suite.signature];
  const signature = {
    async sign(signKey, message) {
      const clientId = handleClientId(signKey);
      if (clientId === null) return inner.signature.sign(signKey, message);
      const key = await resolveKey(clientId);
      return new Uint8Array(await globalThis.crypto.subtle.sign(algorithm, key, message));
    },
    verify: (publicKey, message, sig) => inner.signature.verify(publicKey, message, sig),
    keygen: () => inner.signature.keygen(),
  };
  return { impl: { ...inner, signature }, webcryptoSignature: algorithm };
}
