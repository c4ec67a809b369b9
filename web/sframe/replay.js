/**
 * Optional receiver anti-replay (RFC 9605 §9.3, §10.3): a sliding window
 * over the CTR values of one KID, as SRTP's replay list (RFC 3711 §3.3.2).
 * Same semantics as the Python `sframe.replay.ReplayWindow`.
 * @module sframe/replay
 */

import { SFrameError } from './errors.js';

export class ReplayWindow {
  /**
   * Accepts each CTR at most once; a CTR `size` or more below the highest
   * accepted one is rejected as too old.
   * @param {number} size
   */
  constructor(size) {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new SFrameError('invalidParameter', 'replay window size must be a positive integer');
    }
    this.size = size;
    this.bigSize = BigInt(size);
    this.highest = -1n;
    this.bitmap = 0n; // bit i set <=> CTR (highest - i) was accepted
    this.mask = (1n << this.bigSize) - 1n;
  }

  /**
   * @param {bigint} ctr
   * @param {bigint} kid for the error only
   * @throws {SFrameError} kind "replay"
   */
  check(ctr, kid) {
    const behind = this.highest - ctr;
    if (behind < 0n) return;
    if (behind >= this.bigSize) {
      throw new SFrameError('replay', `CTR ${ctr} is older than the replay window`, { keyID: kid });
    }
    if ((this.bitmap >> behind) & 1n) {
      throw new SFrameError('replay', `CTR ${ctr} was already received`, { keyID: kid });
    }
  }

  /**
   * Records `ctr` as received (only after authentication).
   * @param {bigint} ctr
   */
  accept(ctr) {
    const ahead = ctr - this.highest;
    if (ahead > 0n) {
      this.bitmap = ahead < this.bigSize ? ((this.bitmap << ahead) | 1n) & this.mask : 1n;
      this.highest = ctr;
    } else {
      this.bitmap |= 1n << -ahead;
    }
  }
}
