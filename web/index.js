/**
 * mlscall-web: the MLS Web API (RFC 9420) over ts-mls, SFrame (RFC 9605)
 * over WebCrypto and `SFrameTransform` on RTCRtpScriptTransform, in one
 * import. The same names come one part at a time from `mlscall-web/mls`,
 * `mlscall-web/sframe` and `mlscall-web/sframe-transform`.
 * @module mlscall-web
 */

export * from './mls/index.js';
export * from './sframe/index.js';
export * from './sframe-transform.js';
