/**
 * Frames held until the key of their KID arrives (RFC 9605 §4.4.4): "the
 * client MAY buffer the ciphertext and retry decryption once a key with that
 * KID is received". Same semantics as the Python `sframe.hold.HoldBuffer`.
 *
 * With MLS keys (§5.2) this happens to every joiner (frames sealed under the
 * epoch its Welcome starts arrive before the Welcome) and to a member that
 * receives frames of the next epoch before it processes the commit:
 * MLSKeyManager.unprotect tells them apart with an SFrameError of kind
 * "keyID" whose `pending` is true.
 *
 * A HoldBuffer keeps such items per receiver in arrival order, bounded in
 * age, count and bytes (the oldest goes first). It reads no clock: callers
 * pass the times (seconds). Items are opaque: the caller retries them with
 * take() once a key is installed and holds again, with their arrival time,
 * those still waiting.
 * @module sframe/hold
 */

import { SFrameError } from './errors.js';

export const DEFAULT_MAX_AGE = 1.0;
export const DEFAULT_MAX_FRAMES = 256;
export const DEFAULT_MAX_BYTES = 2 * 1024 * 1024;

/** @typedef {{item: any, size: number, arrived: number}} HeldFrame */

export class HoldBuffer {
  /**
   * An item expires once more than `maxAge` seconds passed since it arrived
   * (expire), and is evicted when holding another would exceed `maxFrames`
   * or `maxBytes` (hold); `maxFrames` 0 holds nothing.
   * @param {{maxAge?: number, maxFrames?: number, maxBytes?: number}} [limits]
   */
  constructor({ maxAge = DEFAULT_MAX_AGE, maxFrames = DEFAULT_MAX_FRAMES, maxBytes = DEFAULT_MAX_BYTES } = {}) {
    if (typeof maxAge !== 'number' || !Number.isInteger(maxFrames) || !Number.isInteger(maxBytes)) {
      throw new SFrameError('invalidParameter', 'maxAge must be a number, maxFrames and maxBytes integers');
    }
    if (!(maxAge >= 0) || maxFrames < 0 || maxBytes < 0) {
      throw new SFrameError('invalidParameter', 'maxAge, maxFrames and maxBytes must be >= 0');
    }
    this.maxAge = maxAge;
    this.maxFrames = maxFrames;
    this.maxBytes = maxBytes;
    /** @type {HeldFrame[]} oldest first */
    this.held = [];
    /** bytes held */
    this.size = 0;
  }

  /** Items held. */
  get length() {
    return this.held.length;
  }

  /** When the oldest held item expires, or null if nothing is held. */
  get deadline() {
    return this.held.length === 0 ? null : this.held[0].arrived + this.maxAge;
  }

  /** The held items, oldest first (a copy). */
  items() {
    return this.held.slice();
  }

  /**
   * Holds `item` (`size` bytes, arrived at `arrived`) after every held one;
   * returns what no longer fits, oldest first. An item that alone exceeds a
   * bound is returned at once, the held ones kept.
   * @returns {HeldFrame[]}
   */
  hold(item, size, arrived) {
    if (!Number.isInteger(size) || size < 0) throw new SFrameError('invalidParameter', 'size must be a non-negative integer');
    if (typeof arrived !== 'number') throw new SFrameError('invalidParameter', 'arrived must be a number');
    const entry = { item, size, arrived };
    if (size > this.maxBytes || this.maxFrames === 0) return [entry];
    this.held.push(entry);
    this.size += size;
    const evicted = [];
    while (this.held.length > 0 && (this.held.length > this.maxFrames || this.size > this.maxBytes)) {
      evicted.push(this.pop());
    }
    return evicted;
  }

  /**
   * Removes and returns the items held more than maxAge at `now`, oldest first.
   * @returns {HeldFrame[]}
   */
  expire(now) {
    const expired = [];
    const limit = now - this.maxAge;
    while (this.held.length > 0 && this.held[0].arrived < limit) expired.push(this.pop());
    return expired;
  }

  /**
   * Removes and returns every held item, oldest first.
   * @returns {HeldFrame[]}
   */
  take() {
    const taken = this.held;
    this.held = [];
    this.size = 0;
    return taken;
  }

  pop() {
    const entry = this.held.shift();
    this.size -= entry.size;
    return entry;
  }
}
