/**
 * Runs a Python snippet with the project's venv (the `sframe` and `media`
 * packages importable from the repository root), JSON in, JSON out.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { repoRoot } from './helpers.js';

export const venvPython = path.join(repoRoot, '.venv', 'bin', 'python');

/**
 * @param {string} script Python source reading JSON on stdin and printing JSON
 * @param {unknown} input
 * @param {number} [timeoutMs]
 * @returns {Promise<any>}
 */
export function runPython(script, input, timeoutMs = 60000) {
  if (!existsSync(venvPython)) throw new Error(`no Python venv at ${venvPython}`);
  return new Promise((resolve, reject) => {
    const child = spawn(venvPython, ['-c', script], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`python exited with ${code}: ${stderr.slice(-2000)}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout));
      } catch (err) {
        reject(new Error(`python printed no JSON: ${stdout.slice(0, 500)} ${stderr.slice(-500)}`));
      }
    });
    child.stdin.end(JSON.stringify(input, (_, v) => (typeof v === 'bigint' ? v.toString() : v)));
  });
}

/**
 * Deterministic test bytes (xorshift32; test data only, not crypto).
 * @param {number} seed
 */
export function testBytes(seed) {
  let x = (seed * 2654435761) >>> 0 || 1;
  return (length, { zeroRuns = false } = {}) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += 1) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      const r = x & 7; // with zeroRuns: many 00 00 0x runs (start code and EPB patterns)
      out[i] = !zeroRuns ? x & 0xff : r < 3 ? 0 : r === 3 ? (x >>> 8) & 3 : (x >>> 16) & 0xff;
    }
    return out;
  };
}
