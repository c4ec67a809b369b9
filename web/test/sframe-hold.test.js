/**
 * Frames held until their MLS epoch is installed (RFC 9605 §4.4.4, §5.2):
 * the cases of tests/contracts/sframe_hold.json (shared with
 * tests/sframe/test_sframe_hold.py) against MLSKeyManager and HoldBuffer; the same
 * cases with every frame sealed by Python and opened here after the delayed
 * install, and the reverse; then the MLS worker endpoint
 * (web/sframe/worker-core.js) holding a receiver's frames and releasing them
 * in order through the stand-in RTCRtpScriptTransform (test/fake-webrtc.js).
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { repoRoot } from './helpers.js';
import { runPython } from './python.js';
import { FakeVideoFrame, FakeWorker } from './fake-webrtc.js';
import { fromHex, toHex } from '../sframe/bytes.js';
import { SFrameContext } from '../sframe/context.js';
import { HoldBuffer } from '../sframe/hold.js';
import { MLSKeyManager, indexBitsFor, mlsKid } from '../sframe/mlskeys.js';
import { SFrameError } from '../sframe/errors.js';
import { sealFrame } from '../sframe/framing.js';
import { getCipherSuite } from '../sframe/suites.js';
import { SFrameMLSSession } from '../sframe-transform.js';

const FIXTURE = JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'contracts', 'sframe_hold.json'), 'utf8'));
const CASES = FIXTURE.cases.map((c) => ({ ...FIXTURE.defaults, ...c }));

/** The fixture's stand-in for MLS-Exporter: bytes (epoch + i) mod 256. */
const baseKey = (epoch, nk) => Uint8Array.from({ length: nk }, (_, i) => (epoch + i) & 0xff);
const exporterFor = (epoch) => ({ exportSecret: async (label, context, length) => baseKey(epoch, length) });

function plaintext(name, size) {
  const seed = [...new TextEncoder().encode(name)].reduce((a, b) => a + b, 0);
  return Uint8Array.from({ length: size }, (_, i) => (seed + 31 * i) & 0xff);
}

/** Seals a case's frames: KID of (epoch, sender, context) per §5.2; name -> bytes. */
async function sealCase(c) {
  const ctx = new SFrameContext(c.cipher_suite);
  const nk = getCipherSuite(c.cipher_suite).Nk;
  const sealed = {};
  for (const step of c.steps.filter((s) => 'frame' in s)) {
    const kid = mlsKid(step.epoch, step.sender, step.context ?? 0, c.epoch_bits, indexBitsFor(c.group_size));
    if (!ctx.send.has(kid)) await ctx.addSendKey(kid, baseKey(step.epoch, nk));
    const bytes = await ctx.protect(kid, plaintext(step.frame, step.size ?? c.size));
    if (step.forge) bytes[bytes.length - 1] ^= 1;
    sealed[step.frame] = bytes;
  }
  return sealed;
}

/** One receiver as the worker drives it: open, or hold when the key is pending; retry after each install. */
class Receiver {
  constructor(c) {
    this.c = c;
    this.now = 0;
    this.km = new MLSKeyManager(c.cipher_suite, {
      epochBits: c.epoch_bits, retainEpochs: c.retain_epochs, retainSeconds: c.retain_seconds, clock: () => this.now,
    });
    const { max_age: maxAge, max_frames: maxFrames, max_bytes: maxBytes } = c.hold;
    this.hold = new HoldBuffer({ maxAge, maxFrames, maxBytes });
    this.outcomes = { opened: [], expired: [], evicted: [], dropped: [], authentication: [] };
  }

  async step(step, sealed) {
    this.now = step.at;
    this.note('expired', this.hold.expire(this.now));
    if ('install' in step) {
      await this.km.installEpoch(exporterFor(step.install), step.install, this.c.own_index, this.c.group_size);
      for (const held of this.hold.take()) await this.receive(held.item, held.arrived);
    } else if ('frame' in step) {
      await this.receive({ name: step.frame, sealed, size: step.size ?? this.c.size }, this.now);
    }
  }

  async receive(item, arrived) {
    let result;
    try {
      result = await this.km.unprotect(item.sealed);
    } catch (err) {
      if (!(err instanceof SFrameError)) throw err;
      if (err.kind === 'keyID' && err.pending) this.note('evicted', this.hold.hold(item, item.sealed.length, arrived));
      else if (err.kind === 'keyID') this.outcomes.dropped.push(item.name);
      else if (err.kind === 'authentication') this.outcomes.authentication.push(item.name);
      else throw err;
      return;
    }
    assert.equal(toHex(result.plaintext), toHex(plaintext(item.name, item.size)));
    this.outcomes.opened.push(item.name);
  }

  note(outcome, held) {
    this.outcomes[outcome].push(...held.map((h) => h.item.name));
  }
}

/** Runs a case on the frames `sealed` (name -> bytes); its outcomes, as in `expect`. */
async function runCase(c, sealed) {
  const receiver = new Receiver(c);
  for (const step of c.steps) {
    await receiver.step(step, 'frame' in step ? sealed[step.frame] : null);
    if ('held_after' in step) assert.equal(receiver.hold.length, step.held_after, JSON.stringify(step));
  }
  return { ...receiver.outcomes, held: receiver.hold.items().map((h) => h.item.name) };
}

describe('sframe_hold.json: frames held until their epoch is installed', () => {
  for (const c of CASES) {
    test(c.name, async () => {
      assert.deepEqual(await runCase(c, await sealCase(c)), c.expect);
    });
  }

  test('the cases cover every outcome', () => {
    const seen = new Set(CASES.flatMap((c) => Object.entries(c.expect).filter(([, v]) => v.length > 0).map(([k]) => k)));
    assert.deepEqual([...seen].sort(), ['authentication', 'dropped', 'evicted', 'expired', 'held', 'opened']);
  });

  test('epochAhead: every KID before the first epoch, then up to 2^(E-1) - 1 epochs ahead', async () => {
    const km = new MLSKeyManager(4);
    assert.equal(km.epochAhead(mlsKid(9, 1, 0, 4, 2)), true);
    await km.installEpoch(exporterFor(9), 9, 0, 4);
    assert.equal(km.epochAhead(mlsKid(9, 1, 0, 4, 2)), false);
    assert.deepEqual([10, 11, 12, 13, 14, 15, 16, 17].map((e) => km.epochAhead(mlsKid(e, 1, 0, 4, 2))),
      [true, true, true, true, true, true, true, false]);
    assert.equal(km.epochAhead(mlsKid(8, 1, 0, 4, 2)), false);
    assert.throws(() => km.epochAhead(-1n), { kind: 'invalidParameter' });
  });

  test('HoldBuffer refuses bad limits and items without changing its state', () => {
    for (const limits of [{ maxAge: '1' }, { maxFrames: 1.5 }, { maxBytes: null }, { maxAge: -0.5 }, { maxAge: NaN }, { maxFrames: -1 }]) {
      assert.throws(() => new HoldBuffer(limits), { kind: 'invalidParameter' }, JSON.stringify(limits));
    }
    const buffer = new HoldBuffer();
    buffer.hold('a', 10, 0);
    assert.throws(() => buffer.hold('b', -1, 0), { kind: 'invalidParameter' });
    assert.throws(() => buffer.hold('b', 1, 'now'), { kind: 'invalidParameter' });
    assert.deepEqual(buffer.items().map((h) => h.item), ['a']);
    assert.equal(buffer.size, 10);
    assert.equal(buffer.deadline, 1);
    assert.deepEqual(buffer.take().map((h) => h.item), ['a']);
    assert.equal(buffer.length, 0);
    assert.equal(buffer.deadline, null);
  });
});

describe('sframe_hold.json across languages: sealed by one, opened by the other after a delayed install', () => {
  const PYTHON = String.raw`
import json, sys
sys.path[:0] = ["tests/sframe", "tests"]  # the test module, and the conftest it imports
from test_sframe_hold import CASES, Receiver, Sender

job = json.load(sys.stdin)
out = {"sealed": [], "outcomes": []}
for case, js_sealed in zip(CASES, job["sealed"]):
    sender, receiver, mine = Sender(case), Receiver(case), {}
    for step in case["steps"]:
        sealed = None
        if "frame" in step:
            pt, own = sender.seal(step)
            mine[step["frame"]] = own.hex()
            receiver.expected_plaintext[step["frame"]] = pt
            sealed = bytes.fromhex(js_sealed[step["frame"]])
        receiver.step(step, sealed)
    outcomes = dict(receiver.outcomes)
    outcomes["held"] = [h.item[0] for h in receiver.hold]
    out["sealed"].append(mine)
    out["outcomes"].append(outcomes)
print(json.dumps(out))
`;
  let jsSealed;
  let python;
  before(async () => {
    jsSealed = await Promise.all(CASES.map(sealCase));
    const hex = jsSealed.map((frames) => Object.fromEntries(Object.entries(frames).map(([k, v]) => [k, toHex(v)])));
    python = await runPython(PYTHON, { sealed: hex });
  });

  test('Python seals the bytes JS seals, and opens JS frames as the cases expect', () => {
    for (const [i, c] of CASES.entries()) {
      for (const [name, bytes] of Object.entries(jsSealed[i])) assert.equal(python.sealed[i][name], toHex(bytes), `${c.name}: ${name}`);
      assert.deepEqual(python.outcomes[i], c.expect, c.name);
    }
  });

  test('JS opens Python frames as the cases expect', async () => {
    for (const [i, c] of CASES.entries()) {
      const sealed = Object.fromEntries(Object.entries(python.sealed[i]).map(([k, v]) => [k, fromHex(v)]));
      assert.deepEqual(await runCase(c, sealed), c.expect, c.name);
    }
  });
});

describe('MLS worker endpoint: a receiver holds frames of an epoch not installed yet', () => {
  const sessions = [];
  after(() => { for (const s of sessions) s.close(); });
  const tick = () => new Promise((resolve) => { setImmediate(resolve); });
  async function until(predicate) {
    for (let i = 0; i < 10000 && !predicate(); i += 1) await tick();
    assert.ok(predicate());
  }

  /** VP8 frames sealed by member 0 in `epoch`: a keyframe, then deltas. */
  async function vp8Frames(epoch, count) {
    const km = new MLSKeyManager(4);
    await km.installEpoch(exporterFor(epoch), epoch, 0, 2);
    const frames = [];
    for (let i = 0; i < count; i += 1) {
      const clear = Uint8Array.from({ length: 120 }, (_, j) => (i * 7 + j) & 0xff);
      if (i === 0) clear.set([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00]); else clear[0] |= 1;
      const sealed = await sealFrame('vp8', clear, (p, m) => km.protect(p, m));
      frames.push({ clear, frame: new FakeVideoFrame(sealed, { type: i === 0 ? 'key' : 'delta' }) });
    }
    return frames;
  }

  function joiner(options = {}) {
    const worker = new FakeWorker();
    const session = new SFrameMLSSession({ worker, ...options });
    sessions.push(session);
    const receiver = new RTCRtpReceiver();
    session.protectReceiver(receiver);
    return { session, receiver, record: receiver.record };
  }

  test('held frames pass on in arrival order, before later ones, once the epoch is installed', async () => {
    const frames = await vp8Frames(3, 5);
    const { session, receiver, record } = joiner();
    for (const { frame } of frames.slice(0, 3)) receiver.transformer.input.write(frame);
    await until(() => record.framesHolding === 3);
    assert.equal(receiver.transformer.outputs.length, 0);
    await session.installEpoch(exporterFor(3), 3, 1, 2);
    for (const { frame } of frames.slice(3)) receiver.transformer.input.write(frame);
    await until(() => receiver.transformer.outputs.length === 5);
    assert.deepEqual(receiver.transformer.outputs.map((f) => toHex(new Uint8Array(f.data))), frames.map((f) => toHex(f.clear)));
    const stats = (await session.stats()).receivers[0];
    assert.equal(stats.framesHeld, 3);
    assert.equal(stats.framesHeldOpened, 3);
    assert.equal(stats.framesHolding, 0);
    assert.equal(stats.keyframesDecrypted, 1);
    assert.deepEqual(stats.failures, { keyID: 0, authentication: 0, replay: 0, syntax: 0, heldExpired: 0 });
    assert.equal(stats.keyframeRequests, 0);
  });

  test('held frames expire apart from other failures; holding off drops them as unknown KIDs', async () => {
    const frames = await vp8Frames(3, 2);
    const { receiver, record } = joiner({ hold: { maxAge: 0.05 } });
    receiver.transformer.input.write(frames[0].frame);
    await until(() => record.framesHolding === 1);
    await new Promise((resolve) => { setTimeout(resolve, 120); }); // the expiry timer fires
    await until(() => record.failures.heldExpired === 1);
    assert.equal(record.failures.keyID, 0);
    assert.equal(record.framesHolding, 0);

    const off = joiner({ hold: false });
    off.receiver.transformer.input.write(frames[1].frame);
    await until(() => off.record.failures.keyID === 1);
    assert.equal(off.record.framesHeld, 0);
    await off.session.installEpoch(exporterFor(3), 3, 1, 2);
    assert.equal(off.receiver.transformer.outputs.length, 0);
  });
});
