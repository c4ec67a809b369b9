/**
 * SFrame header encoding (RFC 9605 §4.3).
 *
 *    0 1 2 3 4 5 6 7
 *   +-+-+-+-+-+-+-+-+------------+------------+
 *   |X|  K  |Y|  C  |   KID...   |   CTR...   |
 *   +-+-+-+-+-+-+-+-+------------+------------+
 *
 * A value in 0-7 lives in K/C with its flag clear; otherwise the flag is set,
 * K/C holds (length - 1) and the value follows in the minimum number of
 * big-endian bytes (1-8), KID first.
 * @module sframe/header
 */

import { SFrameError } from './errors.js';
import { encodeBigEndian, minimalLength, toU64, asBytes } from './bytes.js';

/**
 * Encodes the header for (KID, CTR), RFC 9605 §4.3.
 * @param {number|bigint} kid
 * @param {number|bigint} ctr
 * @returns {Uint8Array}
 */
export function encodeHeader(kid, ctr) {
  const k = toU64(kid, 'KID');
  const c = toU64(ctr, 'CTR');
  const kidLength = k < 8n ? 0 : minimalLength(k);
  const ctrLength = c < 8n ? 0 : minimalLength(c);
  const out = new Uint8Array(1 + kidLength + ctrLength);
  let config = 0;
  if (kidLength === 0) {
    config |= Number(k) << 4;
  } else {
    config |= 0x80 | ((kidLength - 1) << 4);
    out.set(encodeBigEndian(k, kidLength), 1);
  }
  if (ctrLength === 0) {
    config |= Number(c);
  } else {
    config |= 0x08 | (ctrLength - 1);
    out.set(encodeBigEndian(c, ctrLength), 1 + kidLength);
  }
  out[0] = config;
  return out;
}

/**
 * Reads one compact value: inline (flag clear) or `length` bytes at `offset`.
 * Rejects non-minimal encodings (RFC 9605 §4.3: "MUST be encoded with the
 * minimum number of bytes").
 * @returns {[bigint, number]} the value and the offset after it
 */
function readValue(data, offset, extended, field, what) {
  if (!extended) return [BigInt(field), offset];
  const length = field + 1;
  if (data.length < offset + length) {
    throw new SFrameError('syntax', `SFrame header truncated in ${what}`);
  }
  let value = 0n;
  for (let i = 0; i < length; i += 1) value = (value << 8n) | BigInt(data[offset + i]);
  if (value < 8n || minimalLength(value) !== length) {
    throw new SFrameError('syntax', `SFrame header ${what} is not minimally encoded`);
  }
  return [value, offset + length];
}

/**
 * Parses the SFrame header at the start of `data`, RFC 9605 §4.3.
 * @param {ArrayBuffer|ArrayBufferView} data an SFrame ciphertext (or just a header)
 * @returns {{kid: bigint, ctr: bigint, length: number, header: Uint8Array}}
 *   `header` is a view of the header bytes inside `data`.
 * @throws {SFrameError} kind "syntax" when the header is empty, truncated or not minimal
 */
export function decodeHeader(data) {
  const bytes = asBytes(data, 'SFrame ciphertext');
  if (bytes.length < 1) throw new SFrameError('syntax', 'SFrame header is empty');
  const config = bytes[0];
  const [kid, afterKid] = readValue(bytes, 1, (config & 0x80) !== 0, (config >> 4) & 0x07, 'KID');
  const [ctr, end] = readValue(bytes, afterKid, (config & 0x08) !== 0, config & 0x07, 'CTR');
  return { kid, ctr, length: end, header: bytes.subarray(0, end) };
}
