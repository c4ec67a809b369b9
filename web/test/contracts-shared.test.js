/**
 * Shared contracts of Python and JS (tests/contracts/, README.md there), case
 * by case; tests/project/test_contracts_shared.py runs the same files against Python:
 * - verification_code.json: verificationCode (app/verification.js) of an
 *   epoch authenticator (RFC 9420 §8.7);
 * - kid_layout.json: the SFrame KID of an MLS sender (RFC 9605 §5.2) by
 *   mlsKid, indexBitsFor and MLSKeyManager.kidFor (sframe/mlskeys.js);
 * - codec_clear_bytes.json: the codec-aware clear bytes of encoded frames
 *   (RFC 9605 §4.4 metadata) by sframe/framing.js.
 * Errors are named by their Python class; a JS SFrameError matches through
 * PYTHON_ERROR_CLASS[kind].
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { repoRoot } from './helpers.js';
import { verificationCode } from '../app/verification.js';
import { fromHex, toHex } from '../sframe/bytes.js';
import { PYTHON_ERROR_CLASS, SFrameError } from '../sframe/errors.js';
import {
  escapeEmulation, frameCodec, isKeyframe, openFrame, sealFrame, splitAnnexB, unescapeEmulation,
} from '../sframe/framing.js';
import { MLSKeyManager, indexBitsFor, mlsKid } from '../sframe/mlskeys.js';

const load = (name) => JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'contracts', name), 'utf8'));
const VERIFICATION = load('verification_code.json');
const KID = load('kid_layout.json');
const CODEC = load('codec_clear_bytes.json');

/** An assert.throws/rejects matcher for the fixture's Python error class name. */
const pythonError = (name) => (err) => {
  assert.ok(err instanceof SFrameError, `not an SFrameError: ${err}`);
  assert.equal(PYTHON_ERROR_CLASS[err.kind], name, `kind ${err.kind}`);
  return true;
};

describe('verification_code.json', () => {
  for (const c of VERIFICATION.cases) {
    test(c.name, async () => {
      const authenticator = fromHex(c.epoch_authenticator);
      if (c.rejected) {
        await assert.rejects(verificationCode(authenticator), TypeError);
      } else {
        assert.equal(await verificationCode(authenticator), c.code);
      }
    });
  }

  test('codes differ per authenticator', () => {
    const codes = VERIFICATION.cases.filter((c) => 'code' in c).map((c) => c.code);
    assert.ok(codes.length >= 8);
    assert.equal(new Set(codes).size, codes.length);
  });
});

describe('kid_layout.json', () => {
  for (const c of KID.layout) {
    test(`layout: ${c.name}`, () => {
      const run = () => mlsKid(BigInt(c.epoch), c.sender_index, BigInt(c.context), c.epoch_bits, c.index_bits);
      if ('error' in c) {
        assert.throws(run, pythonError(c.error));
      } else {
        assert.equal(run(), BigInt(c.kid));
      }
    });
  }

  for (const c of KID.index_bits) {
    test(`index bits of a group of ${c.group_size}`, () => {
      assert.equal(indexBitsFor(c.group_size), c.index_bits);
    });
  }

  for (const c of KID.manager) {
    test(`MLSKeyManager.kidFor: ${c.name}`, async () => {
      const manager = new MLSKeyManager(4, { epochBits: c.epoch_bits, indexBits: c.index_bits });
      const exporter = { exportSecret: async (label, context, length) => new Uint8Array(length) };
      await manager.installEpoch(exporter, c.epoch, 0, c.group_size);
      assert.equal(manager.kidFor(c.epoch, c.sender_index, c.context), BigInt(c.kid));
    });
  }
});

describe('codec_clear_bytes.json', () => {
  for (const c of CODEC.frames) {
    test(`seal and open: ${c.name}`, async () => {
      const frame = fromHex(c.frame);
      assert.equal(isKeyframe(c.codec, frame), c.keyframe);
      const sealed = [];
      const seal = async (plaintext, metadata) => {
        sealed.push([toHex(plaintext), toHex(metadata)]);
        return fromHex(c.sframe);
      };
      if ('seal_error' in c) {
        await assert.rejects(sealFrame(c.codec, frame, seal), pythonError(c.seal_error));
        assert.deepEqual(sealed, []);
        return;
      }
      const wire = await sealFrame(c.codec, frame, seal);
      assert.deepEqual(sealed, [[c.plaintext, c.metadata]]);
      assert.equal(toHex(wire), c.wire);
      assert.equal(isKeyframe(c.codec, wire), c.keyframe); // read from the clear bytes only
      const opened = [];
      const open = async (ciphertext, metadata) => {
        opened.push([toHex(ciphertext), toHex(metadata)]);
        return fromHex(c.plaintext);
      };
      assert.equal(toHex(await openFrame(c.codec, wire, open)), c.opened ?? c.frame);
      assert.deepEqual(opened, [[c.sframe, c.metadata]]);
    });
  }

  for (const c of CODEC.open_errors) {
    test(`open refuses: ${c.name}`, async () => {
      const calls = [];
      const open = async (ciphertext) => { calls.push(ciphertext); return new Uint8Array(0); };
      await assert.rejects(openFrame(c.codec, fromHex(c.wire), open), pythonError(c.error));
      assert.deepEqual(calls, []);
    });
  }

  for (const c of CODEC.emulation_prevention) {
    test(`emulation prevention: ${c.name}`, () => {
      const escaped = escapeEmulation(fromHex(c.raw));
      assert.equal(toHex(escaped), c.escaped);
      assert.equal(toHex(unescapeEmulation(fromHex(c.escaped))), c.raw);
      const withTrailer = `${c.escaped}80`;
      for (const code of ['000000', '000001', '000002']) {
        assert.ok(!withTrailer.match(new RegExp(`^(..)*${code}`)), `${code} in ${withTrailer}`);
      }
    });
  }

  for (const c of CODEC.annex_b) {
    test(`Annex B: ${c.name}`, () => {
      const stream = fromHex(c.stream);
      if ('error' in c) {
        assert.throws(() => splitAnnexB(stream), pythonError(c.error));
      } else {
        assert.deepEqual(splitAnnexB(stream).map(toHex), c.units);
      }
    });
  }

  for (const c of CODEC.mime_types) {
    test(`codec of ${c.mime_type}`, () => {
      if ('error' in c) {
        assert.throws(() => frameCodec(c.mime_type), pythonError(c.error));
      } else {
        assert.equal(frameCodec(c.mime_type), c.codec);
      }
    });
  }
});
