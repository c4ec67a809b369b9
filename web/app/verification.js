/**
 * The verification code members compare out of band (RFC 9420 §8.7: equal
 * epoch authenticators mean an equal view of the group). The same
 * derivation as media/verification.py:
 *
 *   okm  = HKDF-SHA256(salt = "", IKM = epoch_authenticator,
 *                      info = "mlscall verification code v1", L = 24)   (RFC 5869)
 *   code = six groups of five digits, group i = u32be(okm[4i .. 4i+4]) mod 10^5
 * @module app/verification
 */

export const VERIFICATION_INFO = 'mlscall verification code v1';
const GROUPS = 6;
const DIGITS = 5;
const BYTES_PER_GROUP = 4;

/**
 * @param {Uint8Array} epochAuthenticator
 * @returns {Promise<string>} e.g. "04711 93215 00042 77810 12345 67890"
 */
export async function verificationCode(epochAuthenticator) {
  if (!(epochAuthenticator instanceof Uint8Array) || epochAuthenticator.length === 0) {
    throw new TypeError('the epoch authenticator must be non-empty bytes');
  }
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey('raw', epochAuthenticator, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: new TextEncoder().encode(VERIFICATION_INFO) },
    key, GROUPS * BYTES_PER_GROUP * 8,
  );
  const view = new DataView(bits);
  const groups = [];
  for (let i = 0; i < GROUPS; i += 1) {
    groups.push(String(view.getUint32(i * BYTES_PER_GROUP) % 10 ** DIGITS).padStart(DIGITS, '0'));
  }
  return groups.join(' ');
}
