/**
 * The membership machine's defaults (docs/membership.md) against
 * tests/contracts/membership_defaults.json, which also pins Python's
 * MembershipConfig() (tests/membership/test_membership_defaults.py): DEFAULT_CONFIG of
 * web/app/membership.js, what a machine built without a config uses, and the
 * page's Call options that it passes on unchanged.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { repoRoot } from './helpers.js';
import { DEFAULT_OPTIONS } from '../app/call.js';
import { DEFAULT_CONFIG, Membership } from '../app/membership.js';
import { MLS } from '../mls/mls.js';
import { MemoryStore } from '../mls/store.js';

const FIXTURE = JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'contracts', 'membership_defaults.json'), 'utf8'));
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const DEFAULTS = Object.fromEntries(Object.entries(FIXTURE.defaults).map(([key, value]) => [camel(key), value]));

test('DEFAULT_CONFIG has the fixture fields, camelCased, and no other', () => {
  assert.deepEqual(Object.keys(DEFAULT_CONFIG).sort(), Object.keys(DEFAULTS).sort());
});

test('DEFAULT_CONFIG values are the fixture values', () => {
  assert.deepEqual({ ...DEFAULT_CONFIG }, DEFAULTS);
});

test('a machine built without a config uses the defaults, and a partial config keeps the others', () => {
  assert.deepEqual(new Membership(new MLS(new MemoryStore())).config, DEFAULTS);
  const machine = new Membership(new MLS(new MemoryStore()), { config: { rejoinAfter: null } });
  assert.deepEqual(machine.config, { ...DEFAULTS, rejoinAfter: null });
});

test("the page's Call options it passes to the machine unchanged default to the machine's", () => {
  for (const key of ['confirmDelay', 'switchDelay', 'keyPackageInterval', 'selfUpdateInterval', 'rejoinAfter']) {
    assert.equal(DEFAULT_OPTIONS[key], DEFAULTS[key], key);
  }
});
