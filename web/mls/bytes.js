/**
 * Byte helpers: turning the Web API's `MLSBytes or Uint8Array or string`
 * arguments into bytes, hex record keys, and a small length-prefixed packing
 * used for sealed records.
 * @module mls/bytes
 */

import { MLSError } from './errors.js';

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes of an `MLSBytes` dictionary ({type, content}), a Uint8Array (or any
 * ArrayBufferView / ArrayBuffer), or, when `allowString`, a string as UTF-8.
 * @param {unknown} value
 * @param {string} what argument name for the error message
 * @param {{allowString?: boolean, expectType?: string[]}} [options]
 * @returns {Uint8Array}
 */
export function toBytes(value, what, { allowString = false, expectType } = {}) {
  if (typeof value === 'string') {
    if (allowString) return utf8.encode(value);
    throw new MLSError('invalidInput', `${what} must be bytes, not a string`);
  }
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (value !== null && typeof value === 'object' && 'content' in value) {
    if (expectType !== undefined && 'type' in value && !expectType.includes(value.type)) {
      throw new MLSError('invalidInput', `${what} is an MLSBytes of type ${String(value.type)}, expected ${expectType.join(' or ')}`);
    }
    return toBytes(value.content, what, { allowString });
  }
  throw new MLSError('invalidInput', `${what} must be MLSBytes, a Uint8Array${allowString ? ' or a string' : ''}`);
}

/**
 * A label for MLS-Exporter: a string, or bytes that must be UTF-8 (the
 * label is an ASCII/UTF-8 string, RFC 9420 §8.5).
 * @param {unknown} value
 * @returns {string}
 */
export function toLabel(value) {
  if (typeof value === 'string') return value;
  const bytes = toBytes(value, 'label');
  try {
    return utf8Strict.decode(bytes);
  } catch (err) {
    throw new MLSError('invalidInput', 'label bytes are not UTF-8', { cause: err });
  }
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

/** @param {Uint8Array} a @param {Uint8Array} b */
export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** uint64 big-endian, as MLS encodes an epoch (RFC 9420 §8.1 GroupContext). */
export function u64be(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

/** A copy of `bytes` that owns its own buffer. */
export function copyBytes(bytes) {
  return new Uint8Array(bytes);
}

/**
 * Packs byte strings as `uint32 length || bytes` each.
 * @param {Uint8Array[]} parts
 */
export function packBytes(parts) {
  const total = parts.reduce((n, p) => n + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const part of parts) {
    view.setUint32(offset, part.length);
    out.set(part, offset + 4);
    offset += 4 + part.length;
  }
  return out;
}

/**
 * Inverse of packBytes.
 * @param {Uint8Array} packed
 * @returns {Uint8Array[]}
 */
export function unpackBytes(packed) {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const parts = [];
  let offset = 0;
  while (offset < packed.length) {
    if (offset + 4 > packed.length) throw new MLSError('corruptState', 'corrupt stored record');
    const length = view.getUint32(offset);
    if (offset + 4 + length > packed.length) throw new MLSError('corruptState', 'corrupt stored record');
    parts.push(packed.slice(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return parts;
}
