/**
 * `MLSGroupView`: one client's view of one group (MLS Web API explainer),
 * over ts-mls. Each operation loads the stored state, works on it, and
 * stores the result; a failed operation stores nothing.
 *
 * Handshakes this client creates (proposals; commits from add, remove,
 * close, update, commit) are PublicMessages (RFC 9420 §6.2) by default, so
 * that a delivery service can read their epoch, or PrivateMessages (the
 * MLS option `handshakeWireFormat`); Welcomes carry the ratchet_tree
 * extension (§12.4.3.3). Commits do not change the state: the group moves
 * to the new epoch when the commit comes back through receive() (the
 * delivery service accepted it), or on applyPendingCommit(). One commit is
 * pending at a time; a different commit for the same epoch received first
 * wins, and the pending one is dropped.
 *
 * Results have the fields of the Python `mls` API's (camelCase here):
 * docs/mls.md has the table, tests/contracts/mls_api.json the contract.
 * @module mls/group
 */

import {
  createApplicationMessage, createCommit, createProposal, ciphersuites,
  makePskIndex, mlsExporter, processMessage, zeroOutUint8Array,
} from 'ts-mls';
import { encode } from 'ts-mls/codec/tlsEncoder.js';
import { varLenDataEncoder } from 'ts-mls/codec/variableLength.js';
import { createGroupInfo } from 'ts-mls/createCommit.js';
import { defaultExtensionTypes } from 'ts-mls/defaultExtensionType.js';
import { decryptSenderData } from 'ts-mls/privateMessage.js';
import { encodeProposal } from 'ts-mls/proposal.js';
import { protocolVersions } from 'ts-mls/protocolVersion.js';

import { bytesEqual, copyBytes, toBytes, toHex, toLabel, u64be } from './bytes.js';
import { MLSError, rejected } from './errors.js';
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
 * A signed GroupInfo with the ratchet_tree (§12.4.3.3) and external_pub
 * (§12.4.3.2) extensions, as the Python API's GroupInfos by default, so a
 * client can join by external commit from it alone. external_pub is encoded
 * as the RFC says: its extension_data is `struct { HPKEPublicKey
 * external_pub; }`, so the key keeps its own length prefix. ts-mls 1.6.4's
 * createGroupInfoWithExternalPub leaves that prefix out (fixed upstream in
 * ts-mls PR #449), and RFC stacks cannot join from such a GroupInfo.
 */
async function groupInfoWithExternalPub(state, impl) {
  const keyPair = await impl.hpke.deriveKeyPair(state.keySchedule.externalSecret);
  const externalPub = encode(varLenDataEncoder)(await impl.hpke.exportPublicKey(keyPair.publicKey));
  const extensions = [
    { extensionType: 'ratchet_tree', extensionData: encodeTree(state.ratchetTree) },
    { extensionType: 'external_pub', extensionData: externalPub },
  ];
  return createGroupInfo(state.groupContext, state.confirmationTag, state, extensions, impl);
}

/** The member at `leafIndex` of `tree` as the API shows members: {clientId, credential, leafIndex}, or null. */
async function memberAt(tree, leafIndex) {
  const node = tree[leafIndex * 2];
  if (node === undefined || node.nodeType !== 'leaf') return null;
  return {
    clientId: await hashKey(node.leaf.signaturePublicKey),
    credential: encodeCredentialBytes(node.leaf.credential),
    leafIndex,
  };
}

/** The leaf index whose signature key is `signaturePublicKey`, or undefined. */
function leafWithKey(tree, signaturePublicKey) {
  for (const [index, leaf] of leaves(tree)) {
    if (bytesEqual(leaf.signaturePublicKey, signaturePublicKey)) return index;
  }
  return undefined;
}

/**
 * The sender's leaf index of a PrivateMessage (§6.3.2, its encrypted
 * sender data) and the ratchet tree of the epoch it belongs to.
 */
async function privateSender(privateMessage, state, impl) {
  const current = privateMessage.epoch === state.groupContext.epoch;
  const epochData = current
    ? { senderDataSecret: state.keySchedule.senderDataSecret, ratchetTree: state.ratchetTree }
    : state.historicalReceiverData.get(privateMessage.epoch);
  if (epochData === undefined) return undefined;
  let senderData;
  try {
    senderData = await decryptSenderData(privateMessage, epochData.senderDataSecret, impl);
  } catch (err) {
    throw rejected('message rejected', err);
  }
  if (senderData === undefined) throw new MLSError('malformed', 'sender data cannot be decoded');
  return { leafIndex: senderData.leafIndex, tree: epochData.ratchetTree };
}

/** A committed ReInit (§12.1.5) as public values, as the Python API's ReInitDetails. */
function reinitDetails(state) {
  const active = state.groupActiveState;
  if (active.kind !== 'suspendedPendingReinit') return null;
  const { reinit } = active;
  return {
    groupId: copyBytes(reinit.groupId),
    version: protocolVersions[reinit.version] ?? reinit.version,
    cipherSuite: ciphersuites[reinit.cipherSuite] ?? reinit.cipherSuite,
    extensions: reinit.extensions.map((e) => ({
      extensionType: typeof e.extensionType === 'number' ? e.extensionType : defaultExtensionTypes[e.extensionType],
      extensionData: copyBytes(e.extensionData),
    })),
  };
}

/** Digest by which this client recognizes its own proposals echoed back. */
async function messageDigest(bytes) {
  return toHex(new Uint8Array(await subtle.digest('SHA-256', bytes)));
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
   * returns ({state?, pending?, proposed?}) and hands back its `result`.
   * @template T
   * @param {(state: import('ts-mls').ClientState, record: object, impl: import('ts-mls').CiphersuiteImpl) =>
   *   Promise<{state?: import('ts-mls').ClientState, pending?: object[], proposed?: string[], result: T, after?: () => void}>} fn
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
      if (out.state !== undefined || out.pending !== undefined || out.proposed !== undefined) {
        const epochChanged = newState.groupContext.epoch !== state.groupContext.epoch;
        await records.put(this.#key, {
          ...record,
          state: out.state !== undefined ? await records.seal(this.#key, out.state) : record.state,
          pending: out.pending ?? record.pending,
          proposed: out.proposed ?? (epochChanged ? [] : record.proposed ?? []),
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

  get #publicHandshakes() {
    return this.#mls.handshakeWireFormat === 'mls_public_message';
  }

  /** @param {import('ts-mls').ClientState} state */
  #checkActive(state) {
    const { kind } = state.groupActiveState;
    if (kind === 'removedFromGroup') throw new MLSError('groupInactive', 'this member was removed from the group');
    if (kind !== 'active') throw new MLSError('groupInactive', 'a ReInit was committed: the group takes no new work (§11.2)');
  }

  /** This member as the API shows members. */
  async #self(state) {
    return memberAt(state.ratchetTree, state.privatePath.leafIndex);
  }

  /**
   * Creates a commit of `proposals` plus the pending ones, keeping the
   * resulting state as the pending commit.
   */
  async #commit(state, record, impl, proposals) {
    this.#checkActive(state);
    if (record.pending.length > 0) {
      throw new MLSError('commitPending', 'a commit is already pending: receive it, apply it or discard it first');
    }
    let result;
    try {
      result = await createCommit(
        { state, cipherSuite: impl },
        { wireAsPublicMessage: this.#publicHandshakes, ratchetTreeExtension: true, extraProposals: proposals },
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
      clientId: this.clientId,
      commit,
      welcome: result.welcome !== undefined ? encodeMessage({ wireformat: 'mls_welcome', welcome: result.welcome }) : null,
      groupInfo,
      ratchetTree: null, // the Welcome and the GroupInfo carry the tree
    };
    const pending = [{ commit, state: await this.#mls._records.seal(this.#key, newState) }];
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
      this.#checkActive(state);
      const proposal = await proposalOf(state);
      let result;
      try {
        result = await createProposal(state, this.#publicHandshakes, proposal, impl);
      } catch (err) {
        throw new MLSError('invalidOperation', `proposal failed: ${err.message}`, { cause: err });
      }
      const content = encodeMessage(result.message);
      const proposed = [...(record.proposed ?? []), await messageDigest(content)];
      return { state: result.newState, proposed, result: { type: 'proposal', content } };
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

  /**
   * Commits one Add (§12.1.1) per KeyPackage, all in one commit (Python's
   * `add_many`); the output has one Welcome for all of them.
   * @param {unknown[]} keyPackages
   */
  async addMany(keyPackages) {
    if (!Array.isArray(keyPackages) || keyPackages.length === 0) {
      throw new MLSError('invalidArgument', 'addMany takes a non-empty array of KeyPackages');
    }
    const messages = keyPackages.map((keyPackage) => this.#keyPackage(keyPackage));
    return this.#commitWith(async () => messages.map((message) => ({ proposalType: 'add', add: { keyPackage: message.keyPackage } })));
  }

  /** Proposes an Add (§12.1.1); a member receiving it answers with a commit (commitReceivedProposals). */
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
    return this.#commitWith(async (state) => {
      const removed = await leafIndexOf(state, target);
      if (removed === state.privatePath.leafIndex) {
        throw new MLSError('invalidOperation', 'a member cannot commit its own removal; use proposeRemove');
      }
      return [{ proposalType: 'remove', remove: { removed } }];
    });
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

  /** Group identifier, epoch, members (client identifier, credential, leaf index) and this member's place. */
  async details() {
    return this.#operate(async (state) => {
      const members = [];
      for (const [leafIndex] of leaves(state.ratchetTree)) members.push(await memberAt(state.ratchetTree, leafIndex));
      const { kind } = state.groupActiveState;
      return {
        result: {
          type: 'group-info',
          groupId: this.groupId,
          groupEpoch: this.#epochBytes(state),
          epoch: state.groupContext.epoch,
          members,
          leafIndex: state.privatePath.leafIndex,
          leafCount: Math.floor((state.ratchetTree.length + 1) / 2),
          removed: kind === 'removedFromGroup',
          reinitPending: kind === 'suspendedPendingReinit',
        },
      };
    });
  }

  /** Encrypts an application message (PrivateMessage, §6.3) for the current epoch. */
  async send(message) {
    const plaintext = toBytes(message, 'message', { allowString: true, expectType: ['application-message-plaintext'] });
    return this.#operate(async (state, record, impl) => {
      this.#checkActive(state);
      if (record.pending.length > 0) {
        throw new MLSError('invalidOperation', 'a commit is pending: receive, apply or discard it before sending (§12.4)');
      }
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
   * application message (its plaintext), a proposal (kept until a commit
   * covers it), or a commit (moves to the next epoch; this client's own
   * commit coming back applies its pending state). `sender` is the
   * MLS-authenticated sender ({clientId, credential, leafIndex}).
   *
   * Another member's proposal is answered with a commit of the pending
   * proposals (type 'commit-output', `commitOutput`) when the MLS option
   * `commitReceivedProposals` is on (the default, as in the explainer), no
   * commit of ours is pending, the group is active and no pending proposal
   * removes this member.
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
          const result = this.#received('commit-processed', newState, {
            content: copyBytes(bytes), sender: await this.#self(state), own: true,
          });
          return { state: newState, pending: [], result };
        }
      }
      if (info.contentType !== 'application' && info.epoch !== epoch) {
        if (info.contentType === 'commit' && info.epoch < epoch) {
          throw new MLSError('staleCommit', `a commit for epoch ${info.epoch}, which the group has left (at ${epoch})`);
        }
        throw new MLSError('wrongEpoch', `handshake message for epoch ${info.epoch}, group is at ${epoch}`);
      }
      if (info.contentType === 'proposal' && (record.proposed ?? []).includes(await messageDigest(bytes))) {
        const result = this.#received('proposal', state, {
          content: new Uint8Array(0), sender: await this.#self(state), own: true,
        });
        return { result };
      }
      if (state.groupActiveState.kind === 'removedFromGroup') {
        throw new MLSError('groupInactive', 'this member was removed from the group');
      }
      if (state.groupActiveState.kind !== 'active' && info.epoch === epoch) {
        throw new MLSError('groupInactive', 'a ReInit was committed: the group takes no more messages (§12.4.2)');
      }
      if (info.senderLeafIndex === state.privatePath.leafIndex && info.contentType === 'commit') {
        throw new MLSError('invalidMessage', 'a commit of this client that is not pending (already applied or dropped)');
      }
      const application = info.contentType === 'application' && decoded.wireformat === 'mls_private_message'
        ? await privateSender(decoded.privateMessage, state, impl) : undefined;
      let event = null;
      const observe = (incoming) => {
        event = incoming;
        return 'accept';
      };
      let processed;
      try {
        processed = await processMessage(decoded, state, makePskIndex(state, {}), observe, impl);
      } catch (err) {
        throw rejected('message rejected', err);
      }
      const newState = processed.newState;
      const after = () => processed.consumed.forEach(zeroOutUint8Array);
      const authenticatedData = copyBytes(decoded.wireformat === 'mls_private_message'
        ? decoded.privateMessage.authenticatedData : decoded.publicMessage.content.authenticatedData);
      if (processed.kind === 'applicationMessage') {
        const sender = application !== undefined ? await memberAt(application.tree, application.leafIndex) : null;
        const result = this.#received('application-message-plaintext', newState, {
          epoch: info.epoch, content: copyBytes(processed.message), sender, authenticatedData,
        });
        return { state: newState, result, after };
      }
      if (info.contentType === 'commit') {
        let senderLeaf = event?.senderLeafIndex;
        let tree = state.ratchetTree;
        if (senderLeaf === undefined && decoded.wireformat === 'mls_public_message') { // an external commit (§12.4.3.2)
          const path = decoded.publicMessage.content.commit.path;
          tree = newState.ratchetTree;
          senderLeaf = path !== undefined ? leafWithKey(tree, path.leafNode.signaturePublicKey) : undefined;
        }
        const sender = senderLeaf !== undefined ? await memberAt(tree, senderLeaf) : null;
        const result = this.#received('commit-processed', newState, { content: copyBytes(bytes), sender, authenticatedData });
        return { state: newState, pending: [], result, after };
      }
      // a proposal (§12.1): kept until a commit covers it
      const proposal = event?.proposal;
      const sender = proposal?.senderLeafIndex !== undefined ? await memberAt(state.ratchetTree, proposal.senderLeafIndex) : null;
      const result = this.#received('proposal', newState, {
        content: proposal !== undefined ? encodeProposal(proposal.proposal) : new Uint8Array(0), sender, authenticatedData,
      });
      const ownLeaf = newState.privatePath.leafIndex;
      const removesSelf = Object.values(newState.unappliedProposals).some(
        (p) => p.proposal.proposalType === 'remove' && p.proposal.remove.removed === ownLeaf,
      );
      if (!this.#mls.commitReceivedProposals || record.pending.length > 0 || removesSelf) {
        return { state: newState, result, after };
      }
      const { output, pending } = await this.#commit(newState, record, impl, []);
      result.type = 'commit-output';
      result.commitOutput = output;
      return { state: newState, pending, result, after };
    });
  }

  /** A Received result (Python's `Received`) of `state`'s epoch, with `fields` set. */
  #received(type, state, fields = {}) {
    const epoch = fields.epoch ?? state.groupContext.epoch;
    return {
      type,
      groupId: this.groupId,
      groupEpoch: u64be(epoch),
      epoch,
      content: fields.content ?? new Uint8Array(0),
      sender: fields.sender ?? null,
      authenticatedData: fields.authenticatedData ?? new Uint8Array(0),
      own: fields.own ?? false,
      removed: type === 'commit-processed' && state.groupActiveState.kind === 'removedFromGroup',
      reinit: type === 'commit-processed' ? reinitDetails(state) : null,
      commitOutput: null,
    };
  }

  /** Moves to the epoch of this client's pending commit, without receiving it back. */
  async applyPendingCommit() {
    return this.#operate(async (state, record) => {
      const latest = record.pending.at(-1);
      if (latest === undefined) throw new MLSError('noPendingCommit', 'no pending commit');
      const newState = await this.#mls._records.open(this.#key, latest.state);
      const result = this.#received('commit-processed', newState, {
        content: copyBytes(latest.commit), sender: await this.#self(state), own: true,
      });
      return { state: newState, pending: [], result };
    });
  }

  /** Whether a commit of this client is pending (Python's `has_pending_commit`). */
  async hasPendingCommit() {
    return this.#operate(async (_state, record) => ({ result: record.pending.length > 0 }));
  }

  /** Drops this client's pending commit, if any (refused by the delivery service), staying in the current epoch. */
  async discardPendingCommit() {
    return this.#operate(async () => ({ pending: [], result: undefined }));
  }

  /**
   * MLS-Exporter(label, context, length) of the current epoch (§8.5).
   * @returns {Promise<{type: 'exporter-output', groupId: Uint8Array, groupEpoch: Uint8Array,
   *   label: Uint8Array, context: Uint8Array, secret: Uint8Array}>}
   */
  async exportSecret(label, context, length) {
    const labelText = toLabel(label);
    const contextBytes = copyBytes(toBytes(context, 'context', { allowString: true, expectType: ['exporter-context'] }));
    if (typeof length !== 'number' && typeof length !== 'bigint') {
      throw new MLSError('invalidInput', `length must be a number, not ${typeof length}`);
    }
    const size = Number(length);
    if (!Number.isInteger(size) || size < 1 || size > 0xffff) {
      throw new MLSError('invalidArgument', 'exporter length must be an integer in 1..65535');
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

  /**
   * A signed GroupInfo of the current epoch (an MLSMessage) with the
   * ratchet_tree and external_pub extensions, as Python's `group_info()`:
   * what a delivery service builds its keyless view of the group from.
   */
  async groupInfo() {
    return this.#operate(async (state, _record, impl) => {
      this.#checkActive(state);
      const groupInfo = await groupInfoWithExternalPub(state, impl);
      return { result: encodeMessage({ wireformat: 'mls_group_info', groupInfo }) };
    });
  }

  /** The epoch_authenticator of the current epoch (§8.7). */
  async epochAuthenticator() {
    return this.#operate(async (state) => ({ result: copyBytes(state.keySchedule.epochAuthenticator) }));
  }
}
