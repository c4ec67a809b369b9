/**
 * `MLSGroupView`: one client's view of one group (MLS Web API explainer),
 * over ts-mls. Each operation loads the stored state, works on it, and
 * stores the result; a failed operation stores nothing.
 *
 * Commits this client creates (add, remove, close, update, commit) are sent
 * as PublicMessage (RFC 9420 §6.2) so that a delivery service can read their
 * epoch, with the ratchet_tree extension in their Welcome (§12.4.3.3). They
 * do not change the state: the group moves to the new epoch when the commit
 * comes back through receive() (the delivery service accepted it), or on
 * applyPendingCommit(). A different commit for the same epoch received
 * first wins, and the pending ones are dropped.
 * @module mls/group
 */

import {
  createApplicationMessage, createCommit, createProposal,
  makePskIndex, mlsExporter, acceptAll, processMessage, zeroOutUint8Array,
} from 'ts-mls';
import { encode } from 'ts-mls/codec/tlsEncoder.js';
import { varLenDataEncoder } from 'ts-mls/codec/variableLength.js';
import { createGroupInfo } from 'ts-mls/createCommit.js';

import { bytesEqual, copyBytes, toBytes, toLabel, u64be } from './bytes.js';
import { MLSError } from './errors.js';
import { groupKey } from './records.js';
import {
  decodeMessage, encodeCredentialBytes, encodeMessage, encodeTree, framingInfo,
} from './wire.js';

const subtle = globalThis.crypto.subtle;

/** Leaves of a ts-mls ratchet tree (array of nodes, leaves at even indices) with their leaf index. */
function* leaves(tree) {
  for (let i = 0; i < tree.length; i += 2) {
    const node = tree[i];
    if (node !== undefined && node.nodeType === 'leaf') yield [i / 2, node.leaf];
  }
}

async function hashKey(signaturePublicKey) {
  return new Uint8Array(await subtle.digest('SHA-256', signaturePublicKey));
}

/** The leaf of the member whose client identifier is `clientId`, or throws notMember. */
async function leafIndexOf(state, clientId) {
  for (const [index, leaf] of leaves(state.ratchetTree)) {
    if (bytesEqual(await hashKey(leaf.signaturePublicKey), clientId)) return index;
  }
  throw new MLSError('notMember', 'no member of the group has this client identifier');
}

/**
 * A signed GroupInfo with the external_pub extension (§12.4.3.2) encoded as
 * the RFC says: its extension_data is `struct { HPKEPublicKey external_pub; }`,
 * so the key keeps its own length prefix. ts-mls 1.6.4's
 * createGroupInfoWithExternalPub leaves that prefix out (fixed upstream in
 * ts-mls PR #449), and RFC stacks cannot join from such a GroupInfo.
 */
async function groupInfoWithExternalPub(state, impl) {
  const keyPair = await impl.hpke.deriveKeyPair(state.keySchedule.externalSecret);
  const extensionData = encode(varLenDataEncoder)(await impl.hpke.exportPublicKey(keyPair.publicKey));
  return createGroupInfo(state.groupContext, state.confirmationTag, state, [{ extensionType: 'external_pub', extensionData }], impl);
}

/** @param {unknown} err */
function rejected(what, err) {
  if (err instanceof MLSError) return err;
  return new MLSError('invalidMessage', `${what}: ${err?.message ?? String(err)}`, { cause: err });
}

export class MLSGroupView {
  #mls;
  #key;
  #epoch;
  #leafIndex;
  #leafCount;

  /**
   * Made by MLS (groupCreate, groupGet, groupJoin); not for direct use.
   * @param {import('./mls.js').MLS} mls
   * @param {Uint8Array} groupId
   * @param {Uint8Array} clientId
   * @param {import('ts-mls').ClientState} state
   */
  constructor(mls, groupId, clientId, state) {
    this.#mls = mls;
    this.#key = groupKey(groupId, clientId);
    /** The group identifier, constant across views of the same group. */
    this.groupId = groupId;
    /** The client identifier: what makes this a view of the group. */
    this.clientId = clientId;
    this.#observe(state);
  }

  /** The epoch (uint64 as BigInt) as of this view's last operation. */
  get epoch() {
    return this.#epoch;
  }

  /** This member's leaf index (the SFrame sender index, RFC 9605 §5.2). */
  get leafIndex() {
    return this.#leafIndex;
  }

  /** Leaves of the ratchet tree: a bound above every member's leaf index. */
  get leafCount() {
    return this.#leafCount;
  }

  #observe(state) {
    this.#epoch = state.groupContext.epoch;
    this.#leafIndex = state.privatePath.leafIndex;
    this.#leafCount = Math.floor((state.ratchetTree.length + 1) / 2);
  }

  /**
   * Runs `fn(state, record)` on the stored state, exclusively; stores what it
   * returns ({state?, pending?}) and hands back its `result`.
   * @template T
   * @param {(state: import('ts-mls').ClientState, record: object, impl: import('ts-mls').CiphersuiteImpl) =>
   *   Promise<{state?: import('ts-mls').ClientState, pending?: object[], result: T, after?: () => void}>} fn
   * @returns {Promise<T>}
   */
  #operate(fn) {
    return this.#mls._exclusive(this.#key, async () => {
      const records = this.#mls._records;
      const record = await records.get(this.#key);
      if (record === undefined) throw new MLSError('unknownGroup', 'no state stored for this group and client');
      const state = await records.open(this.#key, record.state);
      const { impl } = await this.#mls._suite();
      const out = await fn(state, record, impl);
      const newState = out.state ?? state;
      if (out.state !== undefined || out.pending !== undefined) {
        await records.put(this.#key, {
          ...record,
          state: out.state !== undefined ? await records.seal(this.#key, out.state) : record.state,
          pending: out.pending ?? record.pending,
        });
      }
      out.after?.();
      this.#observe(newState);
      return out.result;
    });
  }

  #epochBytes(state) {
    return u64be(state.groupContext.epoch);
  }

  /**
   * Creates a commit (PublicMessage) of `proposals` plus the pending ones,
   * keeping the resulting state as pending.
   */
  async #commit(state, record, impl, proposals) {
    let result;
    try {
      result = await createCommit(
        { state, cipherSuite: impl },
        { wireAsPublicMessage: true, ratchetTreeExtension: true, extraProposals: proposals },
      );
    } catch (err) {
      throw new MLSError('invalidOperation', `commit failed: ${err.message}`, { cause: err });
    }
    const { newState } = result;
    const commit = encodeMessage(result.commit);
    const groupInfo = encodeMessage({
      wireformat: 'mls_group_info', groupInfo: await groupInfoWithExternalPub(newState, impl),
    });
    const output = {
      type: 'commit-output',
      groupId: this.groupId,
      commit,
      groupInfo,
      ratchetTree: encodeTree(newState.ratchetTree),
      clientId: this.clientId,
    };
    if (result.welcome !== undefined) output.welcome = encodeMessage({ wireformat: 'mls_welcome', welcome: result.welcome });
    const pending = [...record.pending, { commit, state: await this.#mls._records.seal(this.#key, newState) }];
    return { output, pending };
  }

  #commitWith(proposalsOf) {
    return this.#operate(async (state, record, impl) => {
      const { output, pending } = await this.#commit(state, record, impl, await proposalsOf(state));
      return { pending, result: output };
    });
  }

  #propose(proposalOf) {
    return this.#operate(async (state, record, impl) => {
      const proposal = await proposalOf(state);
      let result;
      try {
        result = await createProposal(state, true, proposal, impl);
      } catch (err) {
        throw new MLSError('invalidOperation', `proposal failed: ${err.message}`, { cause: err });
      }
      return { state: result.newState, result: { type: 'proposal', content: encodeMessage(result.message) } };
    });
  }

  /** Deletes this client's state for the group. */
  async deleteState() {
    await this.#mls._exclusive(this.#key, () => this.#mls._records.delete(this.#key));
  }

  /** Commits an Add (§12.1.1) of the KeyPackage's owner; the output has the Welcome. */
  async add(keyPackage) {
    const keyPackageMessage = this.#keyPackage(keyPackage);
    return this.#commitWith(async () => [{ proposalType: 'add', add: { keyPackage: keyPackageMessage.keyPackage } }]);
  }

  /** Proposes an Add (§12.1.1) as a PublicMessage. */
  async proposeAdd(keyPackage) {
    const keyPackageMessage = this.#keyPackage(keyPackage);
    return this.#propose(async () => ({ proposalType: 'add', add: { keyPackage: keyPackageMessage.keyPackage } }));
  }

  #keyPackage(keyPackage) {
    return decodeMessage(toBytes(keyPackage, 'keyPackage', { expectType: ['key-package'] }), ['mls_key_package'], 'keyPackage');
  }

  /** Commits the Remove (§12.1.3) of another member; removing oneself must be proposed. */
  async remove(remClientId) {
    const target = toBytes(remClientId, 'clientId', { expectType: ['client-identifier'] });
    if (bytesEqual(target, this.clientId)) {
      throw new MLSError('invalidOperation', 'a member cannot commit its own removal; use proposeRemove');
    }
    return this.#commitWith(async (state) => [{ proposalType: 'remove', remove: { removed: await leafIndexOf(state, target) } }]);
  }

  /** Proposes the Remove (§12.1.3) of a member, possibly oneself. */
  async proposeRemove(remClientId) {
    const target = toBytes(remClientId, 'clientId', { expectType: ['client-identifier'] });
    return this.#propose(async (state) => ({ proposalType: 'remove', remove: { removed: await leafIndexOf(state, target) } }));
  }

  /** Commits the removal of every other member. */
  async close() {
    return this.#commitWith(async (state) => [...leaves(state.ratchetTree)]
      .filter(([index]) => index !== state.privatePath.leafIndex)
      .map(([index]) => ({ proposalType: 'remove', remove: { removed: index } })));
  }

  /** Commits the pending proposals with an UpdatePath (§12.4): with none, a self-update of this leaf. */
  async commit() {
    return this.#commitWith(async () => []);
  }

  /** A self-update: a commit with a fresh UpdatePath for this leaf (§12.4.1), plus any pending proposals. */
  async update() {
    return this.commit();
  }

  /** Group identifier, epoch and members (client identifier, credential, leaf index). */
  async details() {
    return this.#operate(async (state) => {
      const members = [];
      for (const [leafIndex, leaf] of leaves(state.ratchetTree)) {
        members.push({
          clientId: await hashKey(leaf.signaturePublicKey),
          credential: encodeCredentialBytes(leaf.credential),
          leafIndex,
        });
      }
      return {
        result: {
          type: 'group-info',
          groupId: this.groupId,
          groupEpoch: this.#epochBytes(state),
          epoch: state.groupContext.epoch,
          members,
          leafIndex: state.privatePath.leafIndex,
          leafCount: Math.floor((state.ratchetTree.length + 1) / 2),
          active: state.groupActiveState.kind === 'active',
        },
      };
    });
  }

  /** Encrypts an application message (PrivateMessage, §6.3) for the current epoch. */
  async send(message) {
    const plaintext = toBytes(message, 'message', { allowString: true, expectType: ['application-message-plaintext'] });
    return this.#operate(async (state, _record, impl) => {
      let result;
      try {
        result = await createApplicationMessage(state, plaintext, impl);
      } catch (err) {
        throw new MLSError('invalidOperation', `cannot send: ${err.message}`, { cause: err });
      }
      return {
        state: result.newState,
        result: {
          type: 'application-message-ciphertext',
          content: encodeMessage({ wireformat: 'mls_private_message', privateMessage: result.privateMessage }),
        },
        after: () => result.consumed.forEach(zeroOutUint8Array),
      };
    });
  }

  /**
   * Processes a PublicMessage or PrivateMessage of this group: an
   * application message (returns its plaintext), a proposal (kept; with
   * `commitReceivedProposals`, answered with a commit covering it), or a
   * commit (moves to the next epoch; this client's own commit coming back
   * applies its pending state).
   */
  async receive(message) {
    const bytes = toBytes(message, 'message');
    const decoded = decodeMessage(bytes, ['mls_public_message', 'mls_private_message'], 'message');
    const info = framingInfo(decoded);
    if (!bytesEqual(info.groupId, this.groupId)) {
      throw new MLSError('wrongGroup', 'message is for another group');
    }
    return this.#operate(async (state, record, impl) => {
      const epoch = state.groupContext.epoch;
      if (info.contentType === 'commit') {
        const own = record.pending.find((p) => bytesEqual(p.commit, bytes));
        if (own !== undefined) {
          const newState = await this.#mls._records.open(this.#key, own.state);
          return { state: newState, pending: [], result: this.#received('commit-processed', newState) };
        }
      }
      if (info.contentType !== 'application' && info.epoch !== epoch) {
        throw new MLSError('wrongEpoch', `handshake message for epoch ${info.epoch}, group is at ${epoch}`);
      }
      if (info.senderLeafIndex === state.privatePath.leafIndex && info.contentType === 'commit') {
        throw new MLSError('invalidMessage', 'a commit of this client that is not pending (already applied or dropped)');
      }
      let processed;
      try {
        processed = await processMessage(decoded, state, makePskIndex(state, {}), acceptAll, impl);
      } catch (err) {
        throw rejected('message rejected', err);
      }
      const newState = processed.newState;
      const after = () => processed.consumed.forEach(zeroOutUint8Array);
      if (processed.kind === 'applicationMessage') {
        const result = this.#received('application-message-plaintext', newState);
        result.content = processed.message;
        return { state: newState, result, after };
      }
      if (info.contentType === 'commit') {
        return { state: newState, pending: [], result: this.#received('commit-processed', newState), after };
      }
      // a proposal (§12.1): kept until a commit covers it
      const result = this.#received('proposal', newState);
      const ownLeaf = newState.privatePath.leafIndex;
      const removesSelf = Object.values(newState.unappliedProposals).some(
        (p) => p.proposal.proposalType === 'remove' && p.proposal.remove.removed === ownLeaf,
      );
      if (!this.#mls.commitReceivedProposals || info.senderLeafIndex === ownLeaf || removesSelf) {
        return { state: newState, result, after };
      }
      const { output, pending } = await this.#commit(newState, record, impl, []);
      result.type = 'commit-output';
      result.commitOutput = output;
      return { state: newState, pending, result, after };
    });
  }

  #received(type, state) {
    const result = {
      type, groupId: this.groupId, groupEpoch: this.#epochBytes(state), epoch: state.groupContext.epoch,
    };
    if (type === 'commit-processed') result.removed = state.groupActiveState.kind === 'removedFromGroup';
    return result;
  }

  /** Moves to the epoch of this client's latest pending commit, without receiving it back. */
  async applyPendingCommit() {
    return this.#operate(async (_state, record) => {
      const latest = record.pending.at(-1);
      if (latest === undefined) throw new MLSError('noPendingCommit', 'no pending commit');
      const newState = await this.#mls._records.open(this.#key, latest.state);
      return { state: newState, pending: [], result: this.#received('commit-processed', newState) };
    });
  }

  /**
   * MLS-Exporter(label, context, length) of the current epoch (§8.5).
   * @returns {Promise<{type: 'exporter-output', groupId: Uint8Array, groupEpoch: Uint8Array,
   *   label: Uint8Array, context: Uint8Array, secret: Uint8Array}>}
   */
  async exportSecret(label, context, length) {
    const labelText = toLabel(label);
    const contextBytes = copyBytes(toBytes(context, 'context', { allowString: true, expectType: ['exporter-context'] }));
    const size = Number(length);
    if (!Number.isInteger(size) || size < 0 || size > 0xffff) {
      throw new MLSError('invalidInput', 'exporter length must be an integer in 0..65535');
    }
    return this.#operate(async (state, _record, impl) => ({
      result: {
        type: 'exporter-output',
        groupId: this.groupId,
        groupEpoch: this.#epochBytes(state),
        label: new TextEncoder().encode(labelText),
        context: contextBytes,
        secret: await mlsExporter(state.keySchedule.exporterSecret, labelText, contextBytes, size, impl),
      },
    }));
  }

  /** The epoch_authenticator of the current epoch (§8.7). */
  async epochAuthenticator() {
    return this.#operate(async (state) => ({ result: copyBytes(state.keySchedule.epochAuthenticator) }));
  }
}
