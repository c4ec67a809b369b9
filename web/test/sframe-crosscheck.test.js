/**
 * Cross-check with the Python packages (`sframe`, `media.framing`): the
 * same inputs give byte-identical SFrame ciphertexts; Python protects and
 * JS unprotects, and the reverse; the same bad inputs give the same error
 * (JS kind <-> Python class, PYTHON_ERROR_CLASS). Covers suites 1-8, KIDs and
 * CTRs up to 2^64-1, frame sizes, codec-aware framing and MLSKeyManager.
 */

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { runPython, testBytes } from './python.js';
import { concatBytes, fromHex, toHex } from '../sframe/bytes.js';
import { PYTHON_ERROR_CLASS, SFrameError } from '../sframe/errors.js';
import { decodeHeader, encodeHeader } from '../sframe/header.js';
import { SFrameContext } from '../sframe/context.js';
import { MLSKeyManager } from '../sframe/mlskeys.js';
import { escapeEmulation, openFrame, sealFrame } from '../sframe/framing.js';
import { getCipherSuite } from '../sframe/suites.js';

const PYTHON = String.raw`
import hashlib, json, sys
from sframe import SFrameContext, MLSKeyManager, SFrameError
from sframe.header import decode_header
from media.errors import MediaError
from media.framing import FrameCodec, open_frame, seal_frame

job = json.load(sys.stdin)

def attempt(fn):
    try:
        return {"ok": fn()}
    except (SFrameError, MediaError) as exc:
        return {"error": type(exc).__name__}

def sframe_case(c):
    suite, kid, ctr = c["suite"], int(c["kid"]), int(c["ctr"])
    base = bytes.fromhex(c["base_key"])
    md, pt = bytes.fromhex(c["metadata"]), bytes.fromhex(c["pt"])
    tx = SFrameContext(suite)
    tx.add_send_key(kid, base, initial_counter=ctr)
    rx = SFrameContext(suite)
    rx.add_recv_key(kid, base)
    codec = c.get("codec")
    if codec:
        ct = seal_frame(FrameCodec(codec), pt, lambda p, m: tx.protect(kid, p, m))
        unprotect = lambda w: open_frame(FrameCodec(codec), w, lambda x, m: rx.unprotect(x, m).plaintext).hex()
    else:
        ct = tx.protect(kid, pt, md)
        unprotect = lambda w: rx.unprotect(w, md).plaintext.hex()
    return {
        "ct": ct.hex(),
        "from_js": attempt(lambda: unprotect(bytes.fromhex(c["js_ct"]))),
        "bad": [attempt(lambda b=b: unprotect(bytes.fromhex(b))) for b in c["bad"]],
    }

class Exporter:
    def __init__(self, epoch):
        self.epoch = epoch
    def export_secret(self, label, context, length):
        assert label == b"SFrame 1.0 Base Key" and context == b""
        return hashlib.sha512(b"test-exporter|" + label + b"|" + str(self.epoch).encode()).digest()[:length]

def mls_case(c):
    mgr = MLSKeyManager(c["suite"], retain_epochs=c["retain_epochs"], clock=lambda: 0.0)
    sent, received = [], []
    for i, step in enumerate(c["steps"]):
        out_sent, out_recv = [], []
        if "install" in step:
            mgr.install_epoch(Exporter(step["install"]), step["install"], c["py_index"], c["group_size"],
                              switch_sender=step.get("switch", True))
        if step.get("switch_sender"):
            mgr.switch_sender()
        for f in step.get("py_frames", []):
            ct = mgr.protect(bytes.fromhex(f["pt"]), bytes.fromhex(f["md"]), context=int(f["context"]))
            out_sent.append({"ct": ct.hex(), "kid": str(decode_header(ct)[0])})
        for f in step.get("js_frames", []):
            def unprotect(f=f):
                r = mgr.unprotect(bytes.fromhex(f["ct"]), bytes.fromhex(f["md"]))
                return {"pt": r.plaintext.hex(), "kid": str(r.kid), "ctr": str(r.ctr), "epoch": r.epoch,
                        "sender_index": r.sender_index, "context": str(r.context)}
            out_recv.append(attempt(unprotect))
        sent.append(out_sent)
        received.append(out_recv)
    return {"sent": sent, "received": received, "epochs": list(mgr.epochs)}

print(json.dumps({"sframe": [sframe_case(c) for c in job["sframe"]],
                  "mls": [mls_case(c) for c in job["mls"]]}))
`;

const KIDS = [0n, 7n, 8n, 291n, 0xffffn, 1n << 40n, (1n << 64n) - 1n];
const CTRS = [0n, 5n, 255n, 17767n, 1n << 32n, (1n << 64n) - 2n];
const SIZES = [0, 1, 16, 333, 4096];

/** Expected error kind of a bad input, as JS reports it. */
async function jsKind(fn) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof SFrameError) return err.kind;
    throw err;
  }
  return 'ok';
}

// ---------------------------------------------------------------- plain SFrame + framing

/** A NAL unit body as an encoder writes it: zero runs, emulation-prevented, no trailing zero. */
function nalBody(rand, length) {
  const raw = rand(length, { zeroRuns: true });
  raw[raw.length - 1] |= 0x80;
  return escapeEmulation(raw);
}

function h264Frame(rand, nalCount) {
  const parts = [];
  for (let i = 0; i < nalCount; i += 1) {
    const body = nalBody(rand, 5 + 40 * i);
    const header = [0x67, 0x68, 0x65, 0x41][i % 4];
    parts.push(Uint8Array.of(0, 0, 0, 1, header), body);
  }
  return concatBytes(...parts);
}

function buildSFrameCases() {
  const cases = [];
  const rand = testBytes(7);
  let n = 0;
  for (const suite of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const { Nk } = getCipherSuite(suite);
    for (let i = 0; i < 4; i += 1, n += 1) {
      cases.push({
        name: `suite ${suite} kid=${KIDS[n % KIDS.length]} ctr=${CTRS[n % CTRS.length]} size=${SIZES[n % SIZES.length]}`,
        suite,
        kid: KIDS[n % KIDS.length],
        ctr: CTRS[n % CTRS.length],
        base_key: toHex(rand(i % 2 ? Nk : 16)),
        metadata: toHex(rand(i * 3)),
        pt: toHex(rand(SIZES[n % SIZES.length])),
      });
    }
  }
  const vp8Key = rand(300); vp8Key[0] &= 0xfe;
  const vp8Delta = rand(120); vp8Delta[0] |= 1;
  const shortDelta = Uint8Array.of(0x31, 0x02, 0x00);
  const frames = [
    ['vp8', 'VP8 keyframe', vp8Key],
    ['vp8', 'VP8 delta frame', vp8Delta],
    ['vp8', 'VP8 delta frame with 3 bytes', shortDelta],
    ['h264', 'H.264 one NAL unit', h264Frame(rand, 1)],
    ['h264', 'H.264 four NAL units', h264Frame(rand, 4)],
    (() => { // the receiver gets 4-byte start codes back
      const body = nalBody(rand, 200);
      return ['h264', 'H.264 3-byte start code', concatBytes(Uint8Array.of(0, 0, 1, 0x65), body),
        concatBytes(Uint8Array.of(0, 0, 0, 1, 0x65), body)];
    })(),
    ['audio', 'Opus frame', rand(160)],
  ];
  for (const [codec, name, frame, expected] of frames) {
    for (const suite of [1, 4]) {
      cases.push({
        name: `${name} (suite ${suite})`, suite, codec, kid: 0x123n, ctr: 4660n,
        base_key: toHex(rand(16)), metadata: '', pt: toHex(frame), expected: toHex(expected ?? frame),
      });
    }
  }
  return cases;
}

/** JS-side protect of one case, returning the ciphertext and the bad inputs to try on both sides. */
async function jsProtect(c) {
  const tx = new SFrameContext(c.suite);
  await tx.addSendKey(c.kid, fromHex(c.base_key), { initialCounter: c.ctr });
  const pt = fromHex(c.pt);
  const seal = (p, m) => tx.protect(c.kid, p, m);
  const ct = c.codec ? await sealFrame(c.codec, pt, seal) : await tx.protect(c.kid, pt, fromHex(c.metadata));
  const bad = [];
  const flipped = ct.slice(); flipped[flipped.length - 1] ^= 0x01;
  bad.push(flipped);
  if (!c.codec) {
    const { length } = decodeHeader(ct);
    bad.push(concatBytes(encodeHeader(c.kid ^ 1n, c.ctr), ct.subarray(length))); // unknown KID
    bad.push(ct.subarray(0, 1)); // header truncated when KID or CTR >= 8; else tag too short
    bad.push(new Uint8Array(0)); // empty
    bad.push(concatBytes(Uint8Array.of(0x88, 0x00, 0x09), ct.subarray(length))); // non-minimal KID
  } else if (c.codec === 'vp8') {
    bad.push(ct.subarray(0, (ct[0] & 1) === 0 ? 10 : 3)); // no SFrame ciphertext after the clear bytes
  } else if (c.codec === 'h264') {
    bad.push(ct.subarray(0, ct.length - 1)); // last NAL unit without the 0x80 trailer
    bad.push(ct.subarray(4)); // no start code
  }
  return { ct, bad };
}

function jsUnprotector(c) {
  const rx = new SFrameContext(c.suite);
  const ready = rx.addRecvKey(c.kid, fromHex(c.base_key));
  return async (wire) => {
    await ready;
    if (c.codec) {
      return openFrame(c.codec, wire, async (x, m) => (await rx.unprotect(x, m)).plaintext);
    }
    return (await rx.unprotect(wire, fromHex(c.metadata))).plaintext;
  };
}

// ---------------------------------------------------------------- MLS key manager

const encoder = new TextEncoder();

class TestExporter {
  constructor(epoch, nk) {
    this.epoch = epoch;
    this.nk = nk;
  }

  async exportSecret(label, context, length) {
    assert.equal(label, 'SFrame 1.0 Base Key');
    assert.equal(context.length, 0);
    assert.equal(length, this.nk);
    const digest = await crypto.subtle.digest('SHA-512', encoder.encode(`test-exporter|${label}|${this.epoch}`));
    return { secret: new Uint8Array(digest, 0, length) };
  }
}

function buildMlsCases() {
  const rand = testBytes(11);
  const frames = (count, context) => Array.from({ length: count }, (_, i) => ({
    pt: toHex(rand(20 + 50 * i)), md: toHex(rand(i % 2 ? 4 : 0)), context: String(context),
  }));
  return [1, 4, 5].map((suite) => ({
    suite,
    group_size: 5,
    py_index: 1,
    js_index: 3,
    retain_epochs: 15,
    steps: [
      { install: 1, py_frames: frames(2, 0), js_frames: frames(2, 0) },
      { py_frames: frames(1, 1), js_frames: frames(1, 1n << 40n) },
      { install: 2, py_frames: frames(2, 0), js_frames: frames(2, 0) },
      { install: 3, switch: false, py_frames: frames(1, 0), js_frames: frames(1, 0) }, // transition
      { switch_sender: true, py_frames: frames(1, 0), js_frames: frames(1, 0) },
      { install: 17, py_frames: frames(2, 0), js_frames: frames(2, 0) }, // evicts epoch 1 (E = 4)
      // Epoch 1 was dropped: its KIDs now name epoch 17, so its frames fail authentication;
      // epoch 2 frames still decrypt.
      { late_from: [0, 2] },
    ],
  }));
}

async function applyStep(mgr, step, index, c) {
  const nk = getCipherSuite(c.suite).Nk;
  if (step.install !== undefined) {
    await mgr.installEpoch(new TestExporter(step.install, nk), step.install, index, c.group_size,
      { switchSender: step.switch ?? true });
  }
  if (step.switch_sender) mgr.switchSender();
}

async function jsMlsSend(c, index, which) {
  const mgr = new MLSKeyManager(c.suite, { retainEpochs: c.retain_epochs, clock: () => 0 });
  const sent = [];
  for (const step of c.steps) {
    await applyStep(mgr, step, index, c);
    const out = [];
    for (const f of step[which] ?? []) {
      out.push(await mgr.protect(fromHex(f.pt), fromHex(f.md), { context: BigInt(f.context) }));
    }
    sent.push(out);
  }
  return sent;
}

// ---------------------------------------------------------------- the run

const sframeCases = buildSFrameCases();
const mlsCases = buildMlsCases();
const js = { sframe: [], mlsSent: [], mlsTwin: [] };
let py;

before(async () => {
  for (const c of sframeCases) {
    const { ct, bad } = await jsProtect(c);
    js.sframe.push({ ct, bad });
    c.js_ct = toHex(ct);
    c.bad = bad.map(toHex);
  }
  for (const c of mlsCases) {
    const sent = await jsMlsSend(c, c.js_index, 'js_frames');
    js.mlsSent.push(sent);
    js.mlsTwin.push(await jsMlsSend(c, c.py_index, 'py_frames'));
    c.steps.forEach((step, i) => {
      (step.js_frames ?? []).forEach((f, j) => { f.ct = toHex(sent[i][j]); });
      if (step.late_from) {
        step.js_frames = step.late_from.flatMap((k) => c.steps[k].js_frames.map((f) => ({ ...f })));
      }
    });
  }
  py = await runPython(PYTHON, { sframe: sframeCases, mls: mlsCases });
});

describe('SFrameContext and framing: JS <-> Python', () => {
  sframeCases.forEach((c, i) => {
    test(`${c.name}: same ciphertext, both directions, same errors`, async () => {
      const mine = js.sframe[i];
      const theirs = py.sframe[i];
      assert.equal(toHex(mine.ct), theirs.ct, 'JS and Python ciphertexts differ');
      const expected = c.expected ?? c.pt;
      assert.deepEqual(theirs.from_js, { ok: expected }, 'Python could not unprotect the JS ciphertext');
      const unprotect = jsUnprotector(c);
      assert.equal(toHex(await unprotect(fromHex(theirs.ct))), expected);
      assert.equal(theirs.bad.length, mine.bad.length);
      for (const [j, bad] of mine.bad.entries()) {
        const kind = await jsKind(() => unprotect(bad));
        assert.notEqual(kind, 'ok', `bad input #${j} was accepted`);
        assert.deepEqual(theirs.bad[j], { error: PYTHON_ERROR_CLASS[kind] }, `bad input #${j}: JS kind ${kind}`);
      }
    });
  });
});

describe('MLSKeyManager: JS <-> Python', () => {
  mlsCases.forEach((c, ci) => {
    test(`suite ${c.suite}: JS (index ${c.py_index}) sends the same bytes as Python`, () => {
      const twin = js.mlsTwin[ci].map((step) => step.map(toHex));
      const pySent = py.mls[ci].sent.map((step) => step.map((f) => f.ct));
      assert.deepEqual(twin, pySent);
    });

    test(`suite ${c.suite}: Python unprotects JS frames (index ${c.js_index})`, () => {
      c.steps.forEach((step, i) => {
        (step.js_frames ?? []).forEach((f, j) => {
          const r = py.mls[ci].received[i][j];
          const kid = decodeHeader(fromHex(f.ct)).kid;
          const epoch = Number(kid & 15n);
          if (step.late_from && epoch === 1) {
            assert.deepEqual(r, { error: 'AuthenticationFailure' }, `late epoch-1 frame ${j}`);
            return;
          }
          assert.ok(r.ok, `step ${i} frame ${j}: ${JSON.stringify(r)}`);
          assert.equal(r.ok.pt, f.pt);
          assert.equal(r.ok.kid, kid.toString());
          assert.equal(r.ok.sender_index, c.js_index);
          assert.equal(r.ok.context, f.context);
        });
      });
    });

    test(`suite ${c.suite}: JS (index ${c.js_index}) unprotects Python frames, same epochs retained`, async () => {
      const mgr = new MLSKeyManager(c.suite, { retainEpochs: c.retain_epochs, clock: () => 0 });
      let checked = 0;
      for (const [i, step] of c.steps.entries()) {
        await applyStep(mgr, step, c.js_index, c);
        const frames = step.late_from
          ? step.late_from.flatMap((k) => c.steps[k].py_frames.map((f, j) => ({ ...f, sent: py.mls[ci].sent[k][j] })))
          : (step.py_frames ?? []).map((f, j) => ({ ...f, sent: py.mls[ci].sent[i][j] }));
        for (const f of frames) {
          const wire = fromHex(f.sent.ct);
          if (step.late_from && (BigInt(f.sent.kid) & 15n) === 1n) {
            await assert.rejects(mgr.unprotect(wire, fromHex(f.md)), { kind: 'authentication' });
          } else {
            const r = await mgr.unprotect(wire, fromHex(f.md));
            assert.equal(toHex(r.plaintext), f.pt);
            assert.equal(r.kid.toString(), f.sent.kid);
            assert.equal(r.senderIndex, c.py_index);
            assert.equal(r.context.toString(), f.context);
          }
          checked += 1;
        }
      }
      assert.ok(checked >= 10);
      assert.deepEqual(mgr.epochs.map(Number), py.mls[ci].epochs);
    });
  });
});
