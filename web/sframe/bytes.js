/**
 * Byte helpers shared by the SFrame modules (RFC 9605 encodes integers
 * big-endian; KID and CTR are 64-bit, so they are handled as BigInt).
 * @module sframe/bytes
 */

import { SFrameError } from './errors.js';

export const U64_MAX = (1n << 64n) - 1n;

/**
 * Converts a KID/CTR given as number or bigint into a bigint in [0, 2^64-1].
 * @param {number|bigint} value
 * @param {string} what name used in the error message
 * @returns {bigint}
 */
export function toU64(value, what) {
  let big;
  if (typeof value === 'bigint') {
    big = value;
  } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
    big = BigInt(value);
  } else {
    throw new SFrameError('invalidParameter', `${what} must be a safe integer or a bigint`);
  }
  if (big < 0n || big > U64_MAX) {
    throw new SFrameError('invalidParameter', `${what} must be in [0, 2^64-1]`);
  }
  return big;
}

/**
 * Big-endian encoding of `value` on exactly `length` bytes.
 * @param {bigint} value
 * @param {number} length
 * @returns {Uint8Array}
 */
export function encodeBigEndian(value, length) {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = length - 1; i >= 0; i -= 1) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * Number of bytes of the minimal big-endian encoding of `value` (>= 1).
 * @param {bigint} value
 * @returns {number}
 */
export function minimalLength(value) {
  let length = 1;
  let v = value >> 8n;
  while (v > 0n) {
    length += 1;
    v >>= 8n;
  }
  return length;
}

/**
 * Views any BufferSource as a Uint8Array (no copy).
 * @param {ArrayBuffer|ArrayBufferView} data
 * @param {string} what name used in the error message
 * @returns {Uint8Array}
 */
export function asBytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new SFrameError('invalidParameter', `${what} must be an ArrayBuffer or a typed array`);
}

/**
 * Concatenation of byte arrays.
 * @param {...Uint8Array} parts
 * @returns {Uint8Array}
 */
export function concatBytes(...parts) {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Lowercase hex of a byte array.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * Bytes of a hex string.
 * @param {string} hex
 * @returns {Uint8Array}
 */
export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) {
    throw new SFrameError('invalidParameter', 'invalid hex string');
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Equality of two byte arrays in time that depends only on their lengths.
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 * @returns {boolean}
 */
export function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}
