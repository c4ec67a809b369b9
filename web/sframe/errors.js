/**
 * Typed SFrame errors. Every failure of the public API is an SFrameError
 * whose `kind` says what went wrong; messages never contain key material.
 *
 * The kinds raised while unprotecting are the W3C SFrameTransformErrorEventType
 * values (webrtc-encoded-transform, SFrameTransform): "syntax", "keyID",
 * "authentication"; plus "replay". Each kind matches one exception class of
 * the Python `sframe.errors` module, or of `media.errors` for the codec-aware
 * framing (PYTHON_ERROR_CLASS).
 * @module sframe/errors
 */

/**
 * @typedef {'syntax'|'keyID'|'authentication'|'replay'|'counter'|'cipherSuite'|'invalidParameter'
 *   |'keyManagement'|'malformedFrame'|'unsupportedCodec'} SFrameErrorKind
 */

/** Kind -> the Python `sframe.errors` class raised in the same situation. */
export const PYTHON_ERROR_CLASS = Object.freeze({
  syntax: 'MalformedHeader', // header truncated or not minimal (RFC 9605 §4.3)
  keyID: 'UnknownKID', // no key (yet) for the header's KID (§4.4.4): not a forgery
  authentication: 'AuthenticationFailure', // AEAD tag mismatch, or shorter than the tag (§4.4.4)
  replay: 'ReplayDetected', // (KID, CTR) already accepted or too old (§9.3)
  counter: 'CounterExhausted', // every CTR of a send KID used: never reuse (KID, CTR) (§9.1)
  cipherSuite: 'UnsupportedCipherSuite', // unknown suite id/name (§4.5, §8.1)
  invalidParameter: 'InvalidParameter', // argument out of range (KID, CTR, key length, bits)
  keyManagement: 'KeyManagementError', // KID used for send and receive, stale epoch, no send key
  malformedFrame: 'MalformedFrame', // media.errors: encoded frame without its codec's structure
  unsupportedCodec: 'UnsupportedCodec', // media.errors: no codec-aware framing for this codec
});

export const ERROR_KINDS = Object.freeze(Object.keys(PYTHON_ERROR_CLASS));

export class SFrameError extends Error {
  /**
   * @param {SFrameErrorKind} kind
   * @param {string} message never containing key material
   * @param {{keyID?: bigint, pending?: boolean}} [details]
   */
  constructor(kind, message, details = {}) {
    super(message);
    this.name = 'SFrameError';
    /** @type {SFrameErrorKind} */
    this.kind = kind;
    /** @type {bigint|undefined} the KID parsed from the header ("keyID", "replay") */
    this.keyID = details.keyID;
    /**
     * "keyID" only: the KID names an MLS epoch not installed yet, whose key
     * may still come (Python `sframe.KeyPending`): hold the frame and retry
     * (RFC 9605 §4.4.4, sframe/hold.js)
     */
    this.pending = details.pending ?? false;
  }
}
