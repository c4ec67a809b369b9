/**
 * RFC 9605 Appendix C test vectors (../shared/vectors/sframe), one test per
 * case: header encoding (§4.3), the AES-CTR + HMAC AEAD (§4.5.1) and full
 * SFrame encryption/decryption (§4.4).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { loadSFrameVectors } from './helpers.js';
import { fromHex, toHex } from '../sframe/bytes.js';
import { decodeHeader, encodeHeader } from '../sframe/header.js';
import { importAeadKey } from '../sframe/aead.js';
import { computeNonce } from '../sframe/keys.js';
import { SFrameContext } from '../sframe/context.js';
import { getCipherSuite } from '../sframe/suites.js';

const FILES = ['test-vectors.json', 'test-vectors-head.json', 'test-vectors-aes256.json'];

function headerCase(c) {
  assert.equal(toHex(encodeHeader(c.kid, c.ctr)), c.encoded);
  const decoded = decodeHeader(fromHex(c.encoded));
  assert.equal(decoded.kid, c.kid);
  assert.equal(decoded.ctr, c.ctr);
  assert.equal(decoded.length, c.encoded.length / 2);
}

async function aeadCase(c) {
  const suite = getCipherSuite(c.cipher_suite);
  const key = fromHex(c.key);
  assert.equal(toHex(key.subarray(0, suite.Nka)), c.enc_key);
  assert.equal(toHex(key.subarray(suite.Nka)), c.auth_key);
  const aead = await importAeadKey(suite, key);
  const nonce = fromHex(c.nonce);
  const aad = fromHex(c.aad);
  assert.equal(toHex(await aead.encrypt(nonce, aad, fromHex(c.pt))), c.ct);
  assert.equal(toHex(await aead.decrypt(nonce, aad, fromHex(c.ct))), c.pt);
  const forged = fromHex(c.ct);
  forged[forged.length - 1] ^= 1;
  await assert.rejects(aead.decrypt(nonce, aad, forged), { name: 'SFrameError', kind: 'authentication' });
}

async function sframeCase(c) {
  const metadata = fromHex(c.metadata);
  const header = encodeHeader(c.kid, c.ctr);
  assert.equal(toHex(header) + c.metadata, c.aad);
  assert.equal(toHex(computeNonce(fromHex(c.sframe_salt), c.ctr)), c.nonce);

  const sender = new SFrameContext(c.cipher_suite);
  await sender.addSendKey(c.kid, fromHex(c.base_key), { initialCounter: c.ctr });
  assert.equal(toHex(await sender.protect(c.kid, fromHex(c.pt), metadata)), c.ct);

  const receiver = new SFrameContext(c.cipher_suite);
  await receiver.addRecvKey(c.kid, fromHex(c.base_key));
  const result = await receiver.unprotect(fromHex(c.ct), metadata);
  assert.equal(toHex(result.plaintext), c.pt);
  assert.equal(result.kid, c.kid);
  assert.equal(result.ctr, c.ctr);
  await assert.rejects(receiver.unprotect(fromHex(c.ct), new Uint8Array(0)), { kind: 'authentication' });
}

const RUNNERS = {
  header: headerCase,
  aes_ctr_hmac: aeadCase,
  aes_256_ctr_hmac: aeadCase,
  sframe: sframeCase,
  sframe_aes_256_ctr_hmac: sframeCase,
};

for (const file of FILES) {
  const vectors = loadSFrameVectors(file);
  for (const [section, cases] of Object.entries(vectors)) {
    const run = RUNNERS[section];
    test(`${file} has a runner for section ${section}`, () => {
      assert.ok(run, `no runner for section ${section}`);
      assert.ok(cases.length > 0);
    });
    if (!run) continue;
    cases.forEach((c, i) => {
      const label = c.cipher_suite ? `suite ${c.cipher_suite}` : `kid=${c.kid} ctr=${c.ctr}`;
      test(`${file} ${section} #${i} (${label})`, () => run(c));
    });
  }
}
