/**
 * Test helpers: locating the repository, and reading the shared SFrame
 * vectors with 64-bit integers kept exact (JSON numbers above 2^53 would
 * lose precision through JSON.parse).
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sframeVectorsDir = path.join(repoRoot, '..', 'shared', 'vectors', 'sframe');

/**
 * Parses a vectors file, turning every integer field into a BigInt.
 * @param {string} name file name inside vectors/sframe
 * @returns {Record<string, Array<Record<string, any>>>}
 */
export function loadSFrameVectors(name) {
  const text = readFileSync(path.join(sframeVectorsDir, name), 'utf8');
  const quoted = text.replace(/("(?:kid|ctr|cipher_suite)"\s*:\s*)(\d+)/g, '$1"$2"');
  return JSON.parse(quoted, (key, value) => (
    (key === 'kid' || key === 'ctr') ? BigInt(value) : key === 'cipher_suite' ? Number(value) : value
  ));
}
