/**
 * Codec-aware SFrame framing: which bytes of an encoded frame stay clear.
 * Byte-for-byte the rules of the Python `media/framing.py` (see its module
 * docstring for the rationale); the clear bytes are passed to SFrame as
 * metadata, so they are authenticated, never encrypted (RFC 9605 §4.4, §9.4).
 *
 * VP8 (RFC 6386 §9.1 frame tag): `clear || SFrame(rest)`, clear = first 10
 *   bytes of a keyframe (`frame[0] & 1 == 0`), first 3 of a delta frame;
 *   metadata = clear.
 * H.264 (Annex B): NAL units `hdr_i || body_i`; one SFrame ciphertext per frame:
 *   plaintext = body_1 || ... || body_k
 *   metadata  = u16(k) || hdr_1..hdr_k || u32(len body_1)..u32(len body_{k-1})
 *   the ciphertext is cut into k segments (segment i < k is len(body_i)
 *   bytes, the last takes the rest), and wire NAL unit i is
 *   `hdr_i || EPB(segment_i) || 0x80` (H.264 §7.4.1 emulation prevention,
 *   so no start code appears in ciphertext), each after a 4-byte start code.
 * Audio (Opus...): `SFrame(frame)`, empty metadata.
 *
 * Crypto-free: `seal(plaintext, metadata)` and `open(ciphertext, metadata)`
 * are supplied by the caller and may be async.
 * @module sframe/framing
 */

import { SFrameError } from './errors.js';
import { asBytes, concatBytes } from './bytes.js';

export const VP8_KEYFRAME_CLEAR_BYTES = 10;
export const VP8_DELTA_FRAME_CLEAR_BYTES = 3;
export const H264_NAL_HEADER_SIZE = 1;
export const H264_TRAILER = 0x80;
const ANNEX_B_START_CODE = Uint8Array.of(0, 0, 0, 1);

const malformed = (message) => new SFrameError('malformedFrame', message);

/**
 * The framing rule for an RTP codec MIME type ("video/VP8"...).
 * @param {string} mimeType
 * @returns {'vp8'|'h264'|'audio'}
 */
export function frameCodec(mimeType) {
  const mime = String(mimeType).toLowerCase();
  if (mime === 'video/vp8') return 'vp8';
  if (mime === 'video/h264') return 'h264';
  if (mime.startsWith('audio/')) return 'audio';
  throw new SFrameError('unsupportedCodec', `no SFrame framing for ${mimeType}`);
}

// --- VP8 ---------------------------------------------------------------------

/**
 * Clear byte count of a VP8 frame: 10 for a keyframe, 3 otherwise.
 * @param {Uint8Array} frame
 */
export function vp8ClearBytes(frame) {
  if (frame.length === 0) throw malformed('empty VP8 frame');
  return (frame[0] & 1) === 0 ? VP8_KEYFRAME_CLEAR_BYTES : VP8_DELTA_FRAME_CLEAR_BYTES;
}

export async function sealVp8(frame, seal) {
  const n = vp8ClearBytes(frame);
  if (frame.length < n) throw malformed('VP8 frame shorter than its frame header');
  const clear = frame.subarray(0, n);
  return concatBytes(clear, asBytes(await seal(frame.subarray(n), clear), 'SFrame ciphertext'));
}

export async function openVp8(wire, open) {
  const n = vp8ClearBytes(wire);
  if (wire.length <= n) throw malformed('VP8 frame has no SFrame ciphertext');
  const clear = wire.subarray(0, n);
  return concatBytes(clear, asBytes(await open(wire.subarray(n), clear), 'plaintext'));
}

// --- H.264 -------------------------------------------------------------------

/**
 * H.264 §7.4.1 emulation prevention: insert 0x03 after `00 00` whenever the
 * next byte is 0x00..0x03.
 * @param {Uint8Array} data
 */
export function escapeEmulation(data) {
  const out = new Uint8Array(data.length + Math.floor(data.length / 2) + 1);
  let n = 0;
  let zeros = 0;
  for (const b of data) {
    if (zeros >= 2 && b <= 3) {
      out[n++] = 3;
      zeros = 0;
    }
    out[n++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return out.slice(0, n);
}

/**
 * Inverse of escapeEmulation: drop the 0x03 of every `00 00 03`.
 * @param {Uint8Array} data
 */
export function unescapeEmulation(data) {
  const out = new Uint8Array(data.length);
  let n = 0;
  let zeros = 0;
  for (const b of data) {
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out[n++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return out.slice(0, n);
}

/** Index of the next `00 00 01` at or after `from`, or -1. */
function findStartCode(stream, from) {
  for (let i = from; i + 2 < stream.length; i += 1) {
    if (stream[i + 2] > 1) {
      i += 2; // no start code can begin at i, i+1 or i+2
    } else if (stream[i] === 0 && stream[i + 1] === 0 && stream[i + 2] === 1) {
      return i;
    }
  }
  return -1;
}

/** `bytes` without its trailing zero bytes. */
function stripTrailingZeros(bytes) {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end -= 1;
  return bytes.subarray(0, end);
}

/**
 * NAL units of an Annex B byte stream (ITU-T H.264 §B.2); zero bytes before
 * a start code are trailing_zero_8bits, not part of the NAL unit.
 * @param {Uint8Array} stream
 * @returns {Uint8Array[]} views into `stream`
 */
export function splitAnnexB(stream) {
  const first = findStartCode(stream, 0);
  if (first < 0 || stream.subarray(0, first).some((b) => b !== 0)) {
    throw malformed('H.264 frame does not start with a start code');
  }
  const units = [];
  let pos = first + 3;
  for (;;) {
    const next = findStartCode(stream, pos);
    const end = next < 0 ? stream.length : next;
    units.push(stripTrailingZeros(stream.subarray(pos, end)));
    if (next < 0) return units;
    pos = next + 3;
  }
}

function h264Metadata(headers, lengths) {
  const out = new Uint8Array(2 + headers.length + 4 * lengths.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, headers.length);
  out.set(headers, 2);
  lengths.forEach((length, i) => view.setUint32(2 + headers.length + 4 * i, length));
  return out;
}

/**
 * Wire NAL units for the NAL units of one frame.
 * @param {Uint8Array[]} nalUnits
 * @param {(pt: Uint8Array, md: Uint8Array) => Promise<Uint8Array>|Uint8Array} seal
 * @returns {Promise<Uint8Array[]>}
 */
export async function sealH264NalUnits(nalUnits, seal) {
  if (nalUnits.length === 0 || nalUnits.length > 0xffff) throw malformed('H.264 frame must hold 1..65535 NAL units');
  if (nalUnits.some((unit) => unit.length < H264_NAL_HEADER_SIZE)) throw malformed('empty H.264 NAL unit');
  const headers = Uint8Array.from(nalUnits, (unit) => unit[0]);
  const lengths = nalUnits.slice(0, -1).map((unit) => unit.length - H264_NAL_HEADER_SIZE);
  const plaintext = concatBytes(...nalUnits.map((unit) => unit.subarray(H264_NAL_HEADER_SIZE)));
  const sframeCt = asBytes(await seal(plaintext, h264Metadata(headers, lengths)), 'SFrame ciphertext');
  const wire = [];
  let pos = 0;
  headers.forEach((header, i) => {
    const end = i < lengths.length ? pos + lengths[i] : sframeCt.length;
    wire.push(concatBytes(Uint8Array.of(header), escapeEmulation(sframeCt.subarray(pos, end)), Uint8Array.of(H264_TRAILER)));
    pos = end;
  });
  return wire;
}

/** sealH264NalUnits over an Annex B frame, returned as Annex B. */
export async function sealH264(stream, seal) {
  const units = await sealH264NalUnits(splitAnnexB(stream), seal);
  return concatBytes(...units.flatMap((unit) => [ANNEX_B_START_CODE, unit]));
}

/** Decrypts an Annex B frame written by sealH264; Annex B out. */
export async function openH264(stream, open) {
  const units = splitAnnexB(stream);
  if (units.length > 0xffff) throw malformed('too many H.264 NAL units');
  const headers = new Uint8Array(units.length);
  const segments = units.map((unit, i) => {
    if (unit.length < H264_NAL_HEADER_SIZE + 1 || unit[unit.length - 1] !== H264_TRAILER) {
      throw malformed('H.264 NAL unit lacks the SFrame framing trailer');
    }
    headers[i] = unit[0];
    return unescapeEmulation(unit.subarray(H264_NAL_HEADER_SIZE, unit.length - 1));
  });
  const lengths = segments.slice(0, -1).map((segment) => segment.length);
  const plaintext = asBytes(await open(concatBytes(...segments), h264Metadata(headers, lengths)), 'plaintext');
  const total = lengths.reduce((a, b) => a + b, 0);
  if (plaintext.length < total) throw malformed('H.264 plaintext shorter than its NAL unit layout');
  const out = [];
  let pos = 0;
  headers.forEach((header, i) => {
    const end = i < lengths.length ? pos + lengths[i] : plaintext.length;
    out.push(ANNEX_B_START_CODE, Uint8Array.of(header), plaintext.subarray(pos, end));
    pos = end;
  });
  return concatBytes(...out);
}

// --- whole frames (audio) ----------------------------------------------------

const EMPTY = new Uint8Array(0);

export async function sealWhole(frame, seal) {
  return asBytes(await seal(frame, EMPTY), 'SFrame ciphertext');
}

export async function openWhole(wire, open) {
  return asBytes(await open(wire, EMPTY), 'plaintext');
}

// --- dispatch ----------------------------------------------------------------

export const H264_NAL_TYPE_IDR = 5;

/**
 * Whether a frame (clear or sealed: the bytes read are clear) starts a new
 * decodable sequence: VP8 keyframe bit, or an H.264 IDR NAL unit (§7.4.1).
 * @param {'vp8'|'h264'|'audio'} codec
 * @param {Uint8Array} frame
 */
export function isKeyframe(codec, frame) {
  if (codec === 'vp8') return frame.length > 0 && (frame[0] & 1) === 0;
  if (codec === 'h264') {
    try {
      return splitAnnexB(frame).some((unit) => unit.length > 0 && (unit[0] & 0x1f) === H264_NAL_TYPE_IDR);
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * Protects one encoded frame with the codec's clear-byte rule.
 * @param {'vp8'|'h264'|'audio'} codec
 * @param {ArrayBuffer|ArrayBufferView} frame
 * @param {(pt: Uint8Array, md: Uint8Array) => Promise<Uint8Array>|Uint8Array} seal
 * @returns {Promise<Uint8Array>}
 */
export async function sealFrame(codec, frame, seal) {
  const bytes = asBytes(frame, 'frame');
  if (codec === 'vp8') return sealVp8(bytes, seal);
  if (codec === 'h264') return sealH264(bytes, seal);
  return sealWhole(bytes, seal);
}

/**
 * Unprotects one encoded frame written by sealFrame.
 * @param {'vp8'|'h264'|'audio'} codec
 * @param {ArrayBuffer|ArrayBufferView} wire
 * @param {(ct: Uint8Array, md: Uint8Array) => Promise<Uint8Array>|Uint8Array} open
 * @returns {Promise<Uint8Array>}
 */
export async function openFrame(codec, wire, open) {
  const bytes = asBytes(wire, 'frame');
  if (codec === 'vp8') return openVp8(bytes, open);
  if (codec === 'h264') return openH264(bytes, open);
  return openWhole(bytes, open);
}
