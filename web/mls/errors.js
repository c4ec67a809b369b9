/**
 * Typed errors of the MLS Web API. Every failure of the public API is an
 * MLSError with a stable `code`; messages never carry key material.
 *
 * The codes are the Python `mls.errors` classes' `code`s: one list,
 * tests/contracts/mls_error_codes.json, which both languages test against.
 * @module mls/errors
 */

/**
 * Error codes raised here (meanings in the JSON list):
 * - `invalidInput`: an argument of the wrong type (or an MLSBytes of the wrong type)
 * - `invalidArgument`: an argument of the right type with a value out of range
 * - `malformed`: bytes that are no valid RFC 9420 encoding
 * - `invalidMessage`: a well-formed message that MLS rejects, or of the wrong kind
 * - `badSignature`, `badMembershipTag`, `cryptoFailure`: a signature, a
 *   membership tag, an AEAD/HPKE open or a confirmation tag failed
 * - `ratchetKeyUnavailable`: a message key already used, too old or too far ahead (§9)
 * - `unknownIdentity`, `unknownKeyPackage`, `unknownGroup`: nothing stored for
 *   this client identifier, KeyPackage or group
 * - `wrongGroup`, `wrongEpoch`, `staleCommit`: a message of another group, of
 *   another epoch, a commit of an epoch already left (another commit won)
 * - `notMember`: a client identifier that is no member of the group
 * - `commitPending`, `noPendingCommit`: a commit is already pending; none is
 * - `groupInactive`: this member was removed, or a ReInit was committed
 * - `missingRatchetTree`: a Welcome without the ratchet tree, and none given
 * - `invalidOperation`: an operation the group state does not allow (for
 *   example removing oneself by commit, RFC 9420 §12.2)
 * - `unsupported`: a cipher suite or feature this implementation lacks
 * - `storage`, `corruptState`, `tamperedRecord`: the store failed; a stored
 *   record cannot be decoded; a sealed record fails authentication
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

/**
 * The code of an error ts-mls threw, as far as its class and message tell:
 * the same code the Python side raises for that failure.
 * @param {unknown} err
 */
function tsMlsCode(err) {
  const name = err?.name;
  const message = String(err?.message ?? '');
  if (name === 'CodecError') return 'malformed';
  if (name === 'CryptoVerificationError') {
    if (/signature/i.test(message)) return 'badSignature';
    if (/membership/i.test(message)) return 'badMembershipTag';
    return 'cryptoFailure';
  }
  if (name === 'CryptoError' || name === 'OperationError') return 'cryptoFailure'; // WebCrypto: AEAD open failed
  if (name === 'DependencyError') return 'unsupported';
  if (/Desired gen/.test(message)) return 'ratchetKeyUnavailable';
  if (/No RatchetTree passed/.test(message)) return 'missingRatchetTree';
  if (name === 'UsageError') return 'invalidOperation';
  return 'invalidMessage';
}

/**
 * An MLSError for a failure inside ts-mls (an MLSError passes through).
 * @param {string} what
 * @param {unknown} err
 */
export function rejected(what, err) {
  if (err instanceof MLSError) return err;
  return new MLSError(tsMlsCode(err), `${what}: ${err?.message ?? String(err)}`, { cause: err });
}
