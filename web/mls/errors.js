/**
 * Typed errors of the MLS Web API. Every failure of the public API is an
 * MLSError with a stable `code`; messages never carry key material.
 * @module mls/errors
 */

/**
 * Error codes:
 * - `invalidInput`: an argument of the wrong type or shape
 * - `unknownIdentity`: no signature key pair stored for this client identifier
 * - `unknownKeyPackage`: a Welcome for none of this client's stored KeyPackages
 * - `unknownGroup`: no state stored for this group and client
 * - `wrongGroup`: a message of another group
 * - `wrongEpoch`: a handshake message for an epoch other than the current one
 * - `invalidMessage`: bytes that are no valid MLSMessage, or that MLS rejects
 *   (bad signature, membership tag, confirmation tag, AEAD failure...)
 * - `notMember`: a client identifier that is no member of the group
 * - `noPendingCommit`: applyPendingCommit without a pending commit
 * - `invalidOperation`: an operation the group state does not allow (for
 *   example removing oneself by commit, RFC 9420 §12.2)
 * - `unsupported`: a cipher suite or feature this implementation lacks
 * - `storage`: the store failed (IndexedDB transaction error)
 * - `corruptState`: a stored record that cannot be opened or decoded
 */
export class MLSError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'MLSError';
    this.code = code;
  }
}
