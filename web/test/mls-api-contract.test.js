/**
 * The MLS Web API contract (tests/contracts/): the JS API runs the same
 * calls, results and error codes as the Python `mls` API
 * (tests/mls/test_mls_api_contract.py runs the same files). Field and method
 * names of the contract are snake_case; here they are camelCase.
 */

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { MLS, MLSError, MLSGroupView, MemoryStore } from '../mls/index.js';
import { repoRoot } from './helpers.js';

const contracts = path.join(repoRoot, 'tests', 'contracts');
const API = JSON.parse(readFileSync(path.join(contracts, 'mls_api.json'), 'utf8'));
const ERROR_CODES = JSON.parse(readFileSync(path.join(contracts, 'mls_error_codes.json'), 'utf8')).codes;
const CODES = new Set(ERROR_CODES.map((entry) => entry.code));

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const utf8 = new TextEncoder();
const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));
const toHex = (bytes) => Buffer.from(bytes).toString('hex');

function client(options) {
  const init = {};
  for (const [key, value] of Object.entries(options)) {
    assert.ok(['commit_received_proposals', 'handshake_wire_format'].includes(key), `unknown client option ${key}`);
    init[camel(key)] = value;
  }
  return new MLS(new MemoryStore(), init);
}

function resolve(ref, saved) {
  const [name, ...fields] = ref.slice(1).split('.');
  assert.ok(name in saved, `no saved value ${name}`);
  return fields.reduce((value, field) => value[camel(field)], saved[name]);
}

function argument(arg, saved) {
  if (typeof arg === 'string') {
    assert.ok(arg.startsWith('$'), arg);
    return resolve(arg, saved);
  }
  if (arg !== null && typeof arg === 'object') {
    if ('text' in arg) return arg.text;
    if ('hex' in arg) return fromHex(arg.hex);
    assert.fail(`unknown argument form ${JSON.stringify(arg)}`);
  }
  return arg;
}

const isBytes = (value) => value instanceof Uint8Array;

function sameValue(a, b) {
  if (isBytes(a) && isBytes(b)) return toHex(a) === toHex(b);
  if (typeof a === 'bigint' || typeof b === 'bigint') return BigInt(a) === BigInt(b);
  return a === b;
}

function match(value, expected, saved, where) {
  if (expected === null) {
    assert.ok(value === null || value === undefined, `${where}: ${value} is not null`);
  } else if (expected === 'bytes') {
    assert.ok(isBytes(value) && value.length > 0, `${where}: not non-empty bytes`);
  } else if (expected === 'view') {
    assert.ok(value instanceof MLSGroupView, `${where}: not a group view`);
  } else if (typeof expected === 'number') {
    assert.ok(typeof value === 'number' || typeof value === 'bigint', `${where}: ${value} is not a number`);
    assert.equal(Number(value), expected, where);
  } else if (typeof expected === 'boolean' || typeof expected === 'string') {
    assert.equal(value, expected, where);
  } else if ('text' in expected) {
    assert.ok(isBytes(value), `${where}: not bytes`);
    assert.equal(toHex(value), toHex(utf8.encode(expected.text)), where);
  } else if ('hex' in expected) {
    assert.ok(isBytes(value), `${where}: not bytes`);
    assert.equal(toHex(value), expected.hex, where);
  } else if ('bytes_len' in expected) {
    assert.ok(isBytes(value) && value.length === expected.bytes_len, `${where}: not ${expected.bytes_len} bytes`);
  } else if ('same' in expected) {
    assert.ok(sameValue(value, resolve(expected.same, saved)), `${where}: differs from ${expected.same}`);
  } else if ('differs' in expected) {
    assert.ok(!sameValue(value, resolve(expected.differs, saved)), `${where}: same as ${expected.differs}`);
  } else if ('items' in expected) {
    assert.ok(Array.isArray(value) && value.length === expected.items.length, `${where}: not ${expected.items.length} items`);
    expected.items.forEach((item, i) => match(value[i], item, saved, `${where}[${i}]`));
  } else {
    assert.ok(value !== null && typeof value === 'object' && !isBytes(value), `${where}: not a result object`);
    for (const [key, item] of Object.entries(expected)) {
      assert.ok(camel(key) in value, `${where}: no field ${camel(key)}`);
      match(value[camel(key)], item, saved, `${where}.${camel(key)}`);
    }
  }
}

async function runStep(step, saved) {
  const target = saved[step.on];
  const where = `${step.on}.${camel(step.call ?? step.get)}`;
  if ('get' in step) {
    match(target[camel(step.get)], step.expect, saved, where);
    return;
  }
  const args = (step.args ?? []).map((arg) => argument(arg, saved));
  const method = target[camel(step.call)];
  assert.equal(typeof method, 'function', `${where} is no method`);
  if ('raises' in step) {
    await assert.rejects(method.apply(target, args), (err) => {
      assert.ok(err instanceof MLSError, `${where}: ${err}`);
      assert.equal(err.code, step.raises, `${where}: ${err.message}`);
      return true;
    });
    return;
  }
  const result = await method.apply(target, args);
  if ('save' in step) saved[step.save] = result;
  if ('expect' in step) match(result, step.expect, saved, where);
}

describe('MLS Web API contract (tests/contracts/mls_api.json)', () => {
  for (const scenario of API.scenarios) {
    test(scenario.name, async () => {
      const saved = Object.fromEntries(Object.entries(scenario.clients).map(([name, options]) => [name, client(options)]));
      for (const [index, step] of scenario.steps.entries()) {
        try {
          await runStep(step, saved);
        } catch (err) {
          err.message = `step ${index}: ${err.message}`;
          throw err;
        }
      }
    });
  }
});

describe('MLS error codes (tests/contracts/mls_error_codes.json)', () => {
  test('every code the JS API raises is in the list', () => {
    const dir = path.join(repoRoot, 'web', 'mls');
    const used = new Set();
    for (const file of readdirSync(dir).filter((name) => name.endsWith('.js'))) {
      const source = readFileSync(path.join(dir, file), 'utf8');
      for (const [, code] of source.matchAll(/new MLSError\(\s*'([A-Za-z]+)'/g)) used.add(code);
      if (file === 'errors.js') { // the codes given to ts-mls's errors
        for (const [, code] of source.matchAll(/return '([A-Za-z]+)';/g)) used.add(code);
      }
    }
    assert.ok(used.size >= 20, `found ${used.size} codes`);
    assert.deepEqual([...used].filter((code) => !CODES.has(code)), []);
  });

  test('every code of the contract is in the list', () => {
    const raised = API.scenarios.flatMap((s) => s.steps.filter((step) => 'raises' in step).map((step) => step.raises));
    assert.ok(raised.length > 0);
    assert.deepEqual(raised.filter((code) => !CODES.has(code)), []);
  });

  test('the list gives each code once, with the Python class that raises it', () => {
    assert.equal(CODES.size, ERROR_CODES.length);
    for (const entry of ERROR_CODES) assert.match(entry.python, /^[A-Z][A-Za-z]*Error$/);
  });

  test('a failure inside ts-mls keeps a listed code', async () => {
    const mls = new MLS(new MemoryStore());
    const id = await mls.generateIdentity();
    await assert.rejects(mls.generateKeyPackage(id, new Uint8Array([9, 9])), (err) => CODES.has(err.code));
    await assert.rejects(mls.groupJoin(id, new Uint8Array([0, 1, 0, 3, 9])), (err) => CODES.has(err.code));
  });
});
