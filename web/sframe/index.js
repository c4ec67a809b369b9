/**
 * SFrame (RFC 9605) in JavaScript over WebCrypto, byte-compatible with the
 * Python `sframe` package: the per-sender context (§4.4), headers (§4.3),
 * the cipher suites (§4.5) and the MLS-keyed key manager (§5.2).
 * @module sframe
 */

export { SFrameContext } from './context.js';
export { SFrameError, ERROR_KINDS } from './errors.js';
export { CIPHER_SUITES, getCipherSuite } from './suites.js';
export { encodeHeader, decodeHeader } from './header.js';
export { MLSKeyManager, BASE_KEY_LABEL, mlsKid } from './mlskeys.js';
