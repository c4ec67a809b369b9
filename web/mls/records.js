/**
 * Stored records of the MLS Web API and their keys:
 *
 *   identity/<clientId>      signature key pair (CryptoKey, or sealed bytes)
 *   keypackage/<ref>         a KeyPackage and its sealed private keys, until
 *                            a Welcome consumes it (RFC 9420 §16.8)
 *   group/<groupId>/<clientId>  sealed ts-mls GroupState, the commit this
 *                            client created in the current epoch that waits
 *                            to be received back or applied, and digests of
 *                            the proposals it sent in this epoch
 *   meta/storage-key         the storage key (see vault.js)
 * @module mls/records
 */

import { decodeGroupState, encodeGroupState } from 'ts-mls';
import { defaultClientConfig } from 'ts-mls/clientConfig.js';
import { defaultKeyRetentionConfig } from 'ts-mls/keyRetentionConfig.js';

import { toHex } from './bytes.js';
import { MLSError } from './errors.js';

/** Past epochs kept to open late application messages (§15.3): Python's GroupConfig.past_epochs default. */
export const PAST_EPOCHS = 4;

/** ts-mls client configuration of every group: its defaults, with PAST_EPOCHS retained. */
const clientConfig = {
  ...defaultClientConfig,
  keyRetentionConfig: { ...defaultKeyRetentionConfig, retainKeysForEpochs: PAST_EPOCHS },
};

export const identityKey = (clientId) => `identity/${toHex(clientId)}`;
export const keyPackageKey = (ref) => `keypackage/${toHex(ref)}`;
export const groupKey = (groupId, clientId) => `group/${toHex(groupId)}/${toHex(clientId)}`;

/**
 * @typedef {object} PendingCommit
 * @property {Uint8Array} commit the MLSMessage as sent
 * @property {{iv: Uint8Array, ciphertext: Uint8Array}} state sealed GroupState after it
 */

/**
 * @typedef {object} GroupRecord
 * @property {number} cipherSuite
 * @property {Uint8Array} groupId
 * @property {Uint8Array} clientId
 * @property {{iv: Uint8Array, ciphertext: Uint8Array}} state
 * @property {PendingCommit[]} pending at most one
 * @property {string[]} [proposed] SHA-256 (hex) of each proposal this client sent in the current epoch
 */

/** Encodes and seals ts-mls client states under their record key. */
export class GroupRecords {
  #store;
  #vault;

  constructor(store, vault) {
    this.#store = store;
    this.#vault = vault;
  }

  /** @param {string} key @returns {Promise<GroupRecord|undefined>} */
  get(key) {
    return this.#store.get(key);
  }

  /** @param {string} key @param {GroupRecord} record */
  put(key, record) {
    return this.#store.put(key, record);
  }

  delete(key) {
    return this.#store.delete(key);
  }

  /** @param {string} key @param {import('ts-mls').ClientState} state */
  async seal(key, state) {
    return this.#vault.seal(key, encodeGroupState(state));
  }

  /** @returns {Promise<import('ts-mls').ClientState>} */
  async open(key, sealed) {
    const bytes = await this.#vault.open(key, sealed);
    let decoded;
    try {
      decoded = decodeGroupState(bytes, 0);
    } catch (err) {
      throw new MLSError('corruptState', 'stored group state cannot be decoded', { cause: err });
    }
    if (decoded === undefined) throw new MLSError('corruptState', 'stored group state cannot be decoded');
    return { ...decoded[0], clientConfig };
  }
}
