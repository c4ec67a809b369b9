/**
 * `MLS`: the entry point of the MLS Web API (Firefox's prototype, see the
 * MLS Web API explainer), over ts-mls. Identities, credentials, KeyPackages,
 * and creating, loading and joining groups; operations on a group are on
 * MLSGroupView (group.js).
 *
 * Everything in or out is RFC 9420 wire format: KeyPackages and Welcomes as
 * MLSMessage (§6), credentials as TLS-encoded Credential (§5.3).
 * @module mls/mls
 */

import {
  createGroup, defaultCapabilities, emptyPskIndex, generateKeyPackageWithKey, joinGroup,
} from 'ts-mls';
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';

import { bytesEqual, copyBytes, packBytes, toBytes, unpackBytes } from './bytes.js';
import { MLSError, rejected } from './errors.js';
import { MLSGroupView } from './group.js';
import { GroupRecords, groupKey, identityKey, keyPackageKey } from './records.js';
import { defaultStore } from './store.js';
import { loadSuite, signingHandle } from './suite.js';
import { Vault } from './vault.js';
import {
  decodeCredentialBytes, decodeMessage, decodeTree, encodeBasicCredential, encodeMessage,
} from './wire.js';

const subtle = globalThis.crypto.subtle;

/**
 * KeyPackage lifetime (§7.2): starts an hour in the past to survive clock
 * skew, lasts 90 days (the Python API's GroupConfig defaults). A group's tree
 * keeps a member's KeyPackage leaf, and its lifetime, until that member
 * commits or updates, and joiners check those lifetimes (§7.3).
 */
export const KEY_PACKAGE_BACKDATE_SECONDS = 3600n;
export const KEY_PACKAGE_VALIDITY_SECONDS = 90n * 24n * 3600n;

/** Wire formats a group may send its handshakes in (§6). */
const HANDSHAKE_WIRE_FORMATS = ['mls_public_message', 'mls_private_message'];

/** Default length of a group identifier made by groupCreate. */
const GROUP_ID_LENGTH = 16;

/** @param {unknown} value */
function clientIdBytes(value) {
  return toBytes(value, 'clientId', { expectType: ['client-identifier'] });
}

/** The client identifier of a signature public key: SHA-256 of it (the key itself stays unexposed). */
export async function clientIdOf(signaturePublicKey) {
  return new Uint8Array(await subtle.digest('SHA-256', signaturePublicKey));
}

function keyPackageLifetime() {
  const now = BigInt(Math.floor(Date.now() / 1000));
  return { notBefore: now - KEY_PACKAGE_BACKDATE_SECONDS, notAfter: now + KEY_PACKAGE_VALIDITY_SECONDS };
}

export class MLS {
  #store;
  #vault;
  #cipherSuite;
  /** @type {Promise<{impl: import('ts-mls').CiphersuiteImpl, webcryptoSignature: string|undefined}>|null} */
  #suite = null;
  /** @type {Map<string, CryptoKey>} client identifier (hex of the handle) -> signing key */
  #signingKeys = new Map();
  /** @type {Map<string, Promise<void>>} per group record: the tail of its operation queue */
  #locks = new Map();
  #commitReceivedProposals;
  #handshakeWireFormat;

  /**
   * @param {object} [store] an IndexedDBStore or MemoryStore (default: IndexedDB where available)
   * @param {{cipherSuite?: number, commitReceivedProposals?: boolean, handshakeWireFormat?: string}} [options]
   *   cipherSuite: RFC 9420 §17.1 id, default 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519);
   *   commitReceivedProposals: receive() of another member's proposal answers
   *   with a commit covering it, as in the explainer (default true; Python's
   *   GroupConfig.commit_received_proposals);
   *   handshakeWireFormat: 'mls_public_message' (default: a delivery service
   *   can read a handshake's epoch and type, §6.2) or 'mls_private_message'
   *   (Python's GroupConfig.handshake_wire_format)
   */
  constructor(store = defaultStore(), {
    cipherSuite = 1, commitReceivedProposals = true, handshakeWireFormat = 'mls_public_message',
  } = {}) {
    if (typeof commitReceivedProposals !== 'boolean') {
      throw new MLSError('invalidInput', 'commitReceivedProposals must be a boolean');
    }
    if (!HANDSHAKE_WIRE_FORMATS.includes(handshakeWireFormat)) {
      throw new MLSError('invalidArgument', `handshakeWireFormat must be one of ${HANDSHAKE_WIRE_FORMATS.join(', ')}`);
    }
    this.#store = store;
    this.#vault = new Vault(store);
    this.#cipherSuite = cipherSuite;
    this.#commitReceivedProposals = commitReceivedProposals;
    this.#handshakeWireFormat = handshakeWireFormat;
    /** @internal */
    this._records = new GroupRecords(store, this.#vault);
  }

  get cipherSuite() {
    return this.#cipherSuite;
  }

  get commitReceivedProposals() {
    return this.#commitReceivedProposals;
  }

  get handshakeWireFormat() {
    return this.#handshakeWireFormat;
  }

  /** @internal the ts-mls cipher suite implementation, with WebCrypto signing */
  _suite() {
    if (this.#suite === null) {
      this.#suite = loadSuite(this.#cipherSuite, (clientId) => this.#signingKey(clientId));
      this.#suite.catch(() => { this.#suite = null; });
    }
    return this.#suite;
  }

  async #signingKey(clientId) {
    const key = identityKey(clientId);
    let cryptoKey = this.#signingKeys.get(key);
    if (cryptoKey === undefined) {
      const record = await this.#store.get(key);
      if (record === undefined || record.privateKey === undefined) {
        throw new MLSError('unknownIdentity', 'no signature key stored for this client identifier');
      }
      cryptoKey = record.privateKey;
      this.#signingKeys.set(key, cryptoKey);
    }
    return cryptoKey;
  }

  /**
   * The signature key pair as ts-mls takes it: a handle for a CryptoKey, or the sealed bytes.
   * @internal
   */
  async _signatureKeyPair(clientId) {
    const key = identityKey(clientId);
    const record = await this.#store.get(key);
    if (record === undefined) throw new MLSError('unknownIdentity', 'no signature key stored for this client identifier');
    if (record.cipherSuite !== this.#cipherSuite) {
      throw new MLSError('invalidInput', `identity belongs to cipher suite ${record.cipherSuite}`);
    }
    const signKey = record.privateKey !== undefined
      ? signingHandle(clientId) : await this.#vault.open(key, record.sealedKey);
    return { signKey, publicKey: record.publicKey };
  }

  /**
   * Runs `fn` alone among the operations of this MLS object on one group
   * record, so that read-modify-write of the stored state never interleaves.
   * @internal
   * @template T
   * @param {string} key
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async _exclusive(key, fn) {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    let release;
    const done = new Promise((resolve) => { release = resolve; });
    const tail = previous.then(() => done);
    this.#locks.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  /** Deletes all MLS state of this store: identities, KeyPackages, groups. */
  async deleteState() {
    await this.#store.clear();
    this.#signingKeys.clear();
    this.#vault.reset();
  }

  /**
   * A new signature key pair (§5.1.2) for the cipher suite; returns its
   * client identifier, SHA-256 of the public key. With Ed25519 the private
   * key is a non-extractable CryptoKey.
   * @returns {Promise<{type: 'client-identifier', content: Uint8Array}>}
   */
  async generateIdentity() {
    const { impl, webcryptoSignature } = await this._suite();
    let pair = null;
    if (webcryptoSignature !== undefined) {
      try {
        pair = await subtle.generateKey(webcryptoSignature, false, ['sign', 'verify']);
      } catch {
        pair = null; // this platform's WebCrypto lacks the algorithm: ts-mls's signer below
      }
    }
    let publicKey;
    let clientId;
    if (pair !== null) {
      publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
      clientId = await clientIdOf(publicKey);
      await this.#store.put(identityKey(clientId), {
        cipherSuite: this.#cipherSuite, publicKey, privateKey: pair.privateKey,
      });
    } else {
      const generated = await impl.signature.keygen();
      publicKey = generated.publicKey;
      clientId = await clientIdOf(publicKey);
      const key = identityKey(clientId);
      await this.#store.put(key, {
        cipherSuite: this.#cipherSuite, publicKey, sealedKey: await this.#vault.seal(key, generated.signKey),
      });
    }
    return { type: 'client-identifier', content: clientId };
  }

  /**
   * A basic credential (§5.3) with `content` (bytes, or a string as UTF-8) as identity.
   * @returns {Promise<{type: 'credential-basic', content: Uint8Array}>}
   */
  async generateCredential(content) {
    const identity = copyBytes(toBytes(content, 'credential content', { allowString: true }));
    return { type: 'credential-basic', content: encodeBasicCredential(identity) };
  }

  /**
   * A KeyPackage (§10) signed by the client's identity; its private keys are
   * kept until a Welcome for it arrives. Lifetime from one hour ago.
   * @returns {Promise<{type: 'key-package', content: Uint8Array}>}
   */
  async generateKeyPackage(clientId, credential) {
    const cid = clientIdBytes(clientId);
    const cred = decodeCredentialBytes(toBytes(credential, 'credential', { expectType: ['credential-basic'] }));
    const { impl } = await this._suite();
    const signatureKeyPair = await this._signatureKeyPair(cid);
    const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
      cred, defaultCapabilities(), keyPackageLifetime(), [], signatureKeyPair, impl,
    );
    const ref = await makeKeyPackageRef(publicPackage, impl.hash);
    const content = encodeMessage({ wireformat: 'mls_key_package', keyPackage: publicPackage });
    const key = keyPackageKey(ref);
    await this.#store.put(key, {
      clientId: copyBytes(cid),
      keyPackage: content,
      privateKeys: await this.#vault.seal(key, packBytes([privatePackage.initPrivateKey, privatePackage.hpkePrivateKey])),
    });
    return { type: 'key-package', content };
  }

  /**
   * Creates a one-member group (§11) for the client.
   * @param {unknown} clientId
   * @param {unknown} credential
   * @param {unknown} [groupId] default: 16 random bytes
   * @returns {Promise<MLSGroupView>}
   */
  async groupCreate(clientId, credential, groupId) {
    const cid = copyBytes(clientIdBytes(clientId));
    const cred = decodeCredentialBytes(toBytes(credential, 'credential', { expectType: ['credential-basic'] }));
    const gid = groupId === undefined || groupId === null
      ? globalThis.crypto.getRandomValues(new Uint8Array(GROUP_ID_LENGTH))
      : copyBytes(toBytes(groupId, 'groupId', { allowString: true, expectType: ['group-identifier'] }));
    const { impl } = await this._suite();
    const signatureKeyPair = await this._signatureKeyPair(cid);
    const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
      cred, defaultCapabilities(), keyPackageLifetime(), [], signatureKeyPair, impl,
    );
    const key = groupKey(gid, cid);
    return this._exclusive(key, async () => {
      if (await this._records.get(key) !== undefined) {
        throw new MLSError('invalidOperation', 'this client already has state for this group identifier');
      }
      let state;
      try {
        state = await createGroup(gid, publicPackage, privatePackage, [], impl);
      } catch (err) {
        throw new MLSError('invalidInput', `group creation failed: ${err.message}`, { cause: err });
      }
      await this._records.put(key, {
        cipherSuite: this.#cipherSuite, groupId: gid, clientId: cid, state: await this._records.seal(key, state), pending: [],
      });
      return new MLSGroupView(this, gid, cid, state);
    });
  }

  /**
   * The view of a stored group for a client, or null.
   * @returns {Promise<MLSGroupView|null>}
   */
  async groupGet(groupId, clientId) {
    const gid = copyBytes(toBytes(groupId, 'groupId', { allowString: true, expectType: ['group-identifier'] }));
    const cid = copyBytes(clientIdBytes(clientId));
    const key = groupKey(gid, cid);
    const record = await this._records.get(key);
    if (record === undefined) return null;
    return new MLSGroupView(this, gid, cid, await this._records.open(key, record.state));
  }

  /**
   * Joins a group from a Welcome (§12.4.3.1) addressed to one of the
   * client's KeyPackages. The ratchet tree comes from the Welcome's
   * ratchet_tree extension, or from `ratchetTree` (the extension's content).
   * @returns {Promise<MLSGroupView>}
   */
  async groupJoin(clientId, welcome, ratchetTree) {
    const cid = copyBytes(clientIdBytes(clientId));
    const message = decodeMessage(toBytes(welcome, 'welcome', { expectType: ['welcome'] }), ['mls_welcome'], 'welcome');
    const tree = ratchetTree === undefined || ratchetTree === null
      ? undefined : decodeTree(toBytes(ratchetTree, 'ratchetTree'));
    const { impl } = await this._suite();
    if (message.welcome.cipherSuite !== impl.name) {
      throw new MLSError('invalidMessage', `welcome is for cipher suite ${message.welcome.cipherSuite}`);
    }
    let found;
    for (const secrets of message.welcome.secrets) {
      const kpKey = keyPackageKey(secrets.newMember);
      const record = await this.#store.get(kpKey);
      if (record !== undefined && bytesEqual(record.clientId, cid)) {
        found = { kpKey, record };
        break;
      }
    }
    if (found === undefined) throw new MLSError('unknownKeyPackage', 'the welcome is for none of this client\'s KeyPackages');
    const { keyPackage } = decodeMessage(found.record.keyPackage, ['mls_key_package'], 'stored key package');
    const [initPrivateKey, hpkePrivateKey] = unpackBytes(await this.#vault.open(found.kpKey, found.record.privateKeys));
    const { signKey } = await this._signatureKeyPair(cid);
    let state;
    try {
      state = await joinGroup(
        message.welcome, keyPackage, { initPrivateKey, hpkePrivateKey, signaturePrivateKey: signKey }, emptyPskIndex, impl, tree,
      );
    } catch (err) {
      throw rejected('welcome rejected', err);
    }
    const gid = copyBytes(state.groupContext.groupId);
    const key = groupKey(gid, cid);
    return this._exclusive(key, async () => {
      await this._records.put(key, {
        cipherSuite: this.#cipherSuite, groupId: gid, clientId: cid, state: await this._records.seal(key, state), pending: [],
      });
      await this.#store.delete(found.kpKey); // a KeyPackage's private keys serve one join (§16.8)
      return new MLSGroupView(this, gid, cid, state);
    });
  }
}
