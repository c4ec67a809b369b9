/**
 * RFC 9420 wire format at the API boundary: every value in or out of the
 * Web API is an MLSMessage (§6) or a TLS-encoded structure, decoded and
 * encoded with ts-mls's codecs.
 * @module mls/wire
 */

import { decodeMlsMessage, encodeMlsMessage } from 'ts-mls';
import { decodeCredential, encodeCredential } from 'ts-mls/credential.js';
import { decodeRatchetTree, encodeRatchetTree } from 'ts-mls/ratchetTree.js';

import { MLSError } from './errors.js';

/**
 * Decodes one whole MLSMessage (§6); trailing bytes are an error.
 * @param {Uint8Array} bytes
 * @param {string[]} wireformats accepted wire formats
 * @param {string} what
 */
export function decodeMessage(bytes, wireformats, what) {
  let decoded;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch (err) {
    throw new MLSError('malformed', `${what} is not a valid MLSMessage`, { cause: err });
  }
  if (decoded === undefined || decoded[1] !== bytes.length) {
    throw new MLSError('malformed', `${what} is not a valid MLSMessage`);
  }
  const [message] = decoded;
  if (message.version !== 'mls10') throw new MLSError('invalidMessage', `${what}: unsupported protocol version`);
  if (!wireformats.includes(message.wireformat)) {
    throw new MLSError('invalidMessage', `${what}: expected ${wireformats.join(' or ')}, got ${message.wireformat}`);
  }
  return message;
}

/** @param {Record<string, unknown>} content an MlsMessageContent */
export function encodeMessage(content) {
  return encodeMlsMessage({ version: 'mls10', ...content });
}

/**
 * Fields of a PublicMessage or PrivateMessage readable without decryption
 * (§6.2, §6.3): group, epoch, content type, and the sender of a PublicMessage.
 * @param {import('ts-mls').MLSMessage} message
 */
export function framingInfo(message) {
  if (message.wireformat === 'mls_public_message') {
    const { content } = message.publicMessage;
    return {
      groupId: content.groupId,
      epoch: content.epoch,
      contentType: content.contentType,
      senderLeafIndex: content.sender.senderType === 'member' ? content.sender.leafIndex : undefined,
    };
  }
  const pm = message.privateMessage;
  return { groupId: pm.groupId, epoch: pm.epoch, contentType: pm.contentType, senderLeafIndex: undefined };
}

/** Credential (§5.3) as TLS bytes. */
export function encodeBasicCredential(identity) {
  return encodeCredential({ credentialType: 'basic', identity });
}

/** Any Credential (§5.3) as TLS bytes. */
export function encodeCredentialBytes(credential) {
  return encodeCredential(credential);
}

/** @param {Uint8Array} bytes a TLS-encoded Credential */
export function decodeCredentialBytes(bytes) {
  let decoded;
  try {
    decoded = decodeCredential(bytes, 0);
  } catch (err) {
    throw new MLSError('malformed', 'credential is not a TLS-encoded Credential', { cause: err });
  }
  if (decoded === undefined || decoded[1] !== bytes.length) {
    throw new MLSError('malformed', 'credential is not a TLS-encoded Credential');
  }
  return decoded[0];
}

/** The ratchet_tree extension's content (§12.4.3.3): optional<Node> ratchet_tree<V>. */
export function encodeTree(tree) {
  return encodeRatchetTree(tree);
}

/** @param {Uint8Array} bytes the ratchet_tree extension's content */
export function decodeTree(bytes) {
  let decoded;
  try {
    decoded = decodeRatchetTree(bytes, 0);
  } catch (err) {
    throw new MLSError('malformed', 'ratchet tree cannot be decoded', { cause: err });
  }
  if (decoded === undefined || decoded[1] !== bytes.length) {
    throw new MLSError('malformed', 'ratchet tree cannot be decoded');
  }
  return decoded[0];
}
