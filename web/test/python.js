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

/**
 * A long-lived Python process playing members of MLS groups through the
 * public `mls` API, driven line by line (JSON over stdin/stdout). Each member
 * name gets its own `MLS` object (in memory, or in a SQLite file when
 * `config.sqlite` names one); bytes cross as {b64}. `restart(who)` reopens a
 * SQLite-backed member from its file, as a new process would.
 */
const MLS_PEER = String.raw`
import base64, dataclasses, json, sys
from mls import MLS, GroupConfig, GroupView, SQLiteStorage

members, views, paths = {}, {}, {}

def decode(value):
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value

def encode(who, value):
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, GroupView):
        views[who] = value
        return {"group_id": encode(who, value.group_id), "epoch": value.epoch}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], GroupView):
        return [encode(who, value[0]), encode(who, value[1])]
    if dataclasses.is_dataclass(value):
        return {f.name: encode(who, getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [encode(who, v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(type(value))

def open_member(who, config):
    config = dict(config)
    path = config.pop("sqlite", None)
    if path is not None:
        paths[who] = (path, config)
    storage = SQLiteStorage(path) if path is not None else None
    members[who] = MLS(storage=storage, cipher_suite=1, config=GroupConfig(**config))

for line in sys.stdin:
    request = json.loads(line)
    who = request["who"]
    try:
        if who not in members:
            open_member(who, request.get("config", {}))
        if request["on"] == "restart":
            path, config = paths[who]
            members[who].storage.close()
            view = views.get(who)
            open_member(who, dict(config, sqlite=path))
            if view is not None:
                views[who] = members[who].group_get(view.group_id, view.client_id)
            result = views.get(who)
        else:
            target = members[who] if request["on"] == "mls" else views[who]
            result = getattr(target, request["call"])
            if callable(result):
                result = result(*decode(request["args"]))
        reply = {"ok": encode(who, result)}
    except Exception as err:
        reply = {"error": type(err).__name__ + ": " + str(err)}
    print(json.dumps(reply), flush=True)
`;

function fromPeer(value) {
  if (Array.isArray(value)) return value.map(fromPeer);
  if (value !== null && typeof value === 'object') {
    if ('b64' in value) return new Uint8Array(Buffer.from(value.b64, 'base64'));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromPeer(v)]));
  }
  return value;
}

function toPeer(value) {
  if (value instanceof Uint8Array) return { b64: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(toPeer);
  if (value !== null && typeof value === 'object' && 'content' in value) return toPeer(value.content);
  return value;
}

export class PythonMlsPeer {
  constructor() {
    if (!existsSync(venvPython)) throw new Error(`no Python venv at ${venvPython}`);
    this.child = spawn(venvPython, ['-c', MLS_PEER], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    this.buffer = '';
    this.waiting = [];
    this.child.stderr.on('data', (chunk) => { this.stderr += chunk; });
    this.child.stdout.on('data', (chunk) => {
      this.buffer += chunk;
      let newline = this.buffer.indexOf('\n');
      while (newline >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        this.waiting.shift()?.resolve(line);
        newline = this.buffer.indexOf('\n');
      }
    });
    this.child.on('close', (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`python exited ${code}: ${this.stderr.slice(-2000)}`));
    });
  }

  /** One request; rejects with the Python exception's class name and message. */
  async call(who, on, method, args = [], config = {}) {
    const line = await new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ who, on, config, call: method, args: args.map(toPeer) })}\n`);
    });
    const reply = JSON.parse(line);
    if ('error' in reply) throw new Error(`python ${who}.${method}: ${reply.error}`);
    return fromPeer(reply.ok);
  }

  /**
   * A member handle: `mls(name, ...args)` calls its MLS object, `view(name,
   * ...args)` its current group view (attribute read when not callable),
   * `restart()` reopens it from its SQLite file.
   * @param {string} who
   * @param {Record<string, unknown>} [config] GroupConfig fields, plus `sqlite` (a path)
   */
  member(who, config = {}) {
    return {
      name: who,
      mls: (method, ...args) => this.call(who, 'mls', method, args, config),
      view: (method, ...args) => this.call(who, 'view', method, args, config),
      restart: () => this.call(who, 'restart', '', [], config),
    };
  }

  /** Ends the Python process; resolves once it has exited. */
  close() {
    const exited = this.child.exitCode !== null
      ? Promise.resolve() : new Promise((resolve) => { this.child.once('close', resolve); });
    this.child.stdin.end();
    return exited;
  }
}
