/**
 * The call page says why a participant's media is missing (web/app/ui.js
 * missingMediaReason) from the Call's status: peer gone, ICE failed, no key
 * yet, connecting, interrupted, or nothing arriving; nothing while frames
 * decrypt or fail to.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { missingMediaReason } from '../app/ui.js';

/** A Call.status() with bob present, in the group, over a link in `state`/`ice`. */
function status({ present = ['bob'], members = ['alice', 'bob'], epoch = 1, link = { state: 'connected', ice: 'connected' } } = {}) {
  return { present, members, epoch, links: link === null ? {} : { bob: link }, remotes: {} };
}

test('no reason while frames decrypt or fail to decrypt', () => {
  assert.equal(missingMediaReason(status(), 'bob', 'ok'), null);
  assert.equal(missingMediaReason(status(), 'bob', 'bad'), null);
});

test('a participant who left the room is gone, whatever the link says', () => {
  assert.equal(missingMediaReason(status({ present: [] }), 'bob', 'idle'), 'peer gone');
  assert.equal(missingMediaReason(status({ present: [], link: { state: 'failed', ice: 'failed' } }), 'bob', 'idle'), 'peer gone');
});

test('ICE failure and other connection failures are named', () => {
  assert.equal(missingMediaReason(status({ link: { state: 'failed', ice: 'failed' } }), 'bob', 'idle'), 'ICE failed');
  assert.equal(missingMediaReason(status({ link: { state: 'failed', ice: 'connected' } }), 'bob', 'idle'), 'connection failed');
  assert.equal(missingMediaReason(status({ link: { state: 'failed', ice: 'failed' } }), 'bob', 'wait'), 'ICE failed');
});

test('no key yet: frames under an unknown key, or we or they are not in the group', () => {
  assert.equal(missingMediaReason(status(), 'bob', 'wait'), 'no key yet');
  assert.equal(missingMediaReason(status({ epoch: null, members: [] }), 'bob', 'idle'), 'no key yet');
  assert.equal(missingMediaReason(status({ members: ['alice'] }), 'bob', 'idle'), 'no key yet');
});

test('a link being set up, interrupted, or connected with nothing arriving', () => {
  assert.equal(missingMediaReason(status({ link: null }), 'bob', 'idle'), 'connecting');
  assert.equal(missingMediaReason(status({ link: { state: 'connecting', ice: 'checking' } }), 'bob', 'idle'), 'connecting');
  assert.equal(missingMediaReason(status({ link: { state: 'disconnected', ice: 'disconnected' } }), 'bob', 'idle'), 'connection interrupted');
  assert.equal(missingMediaReason(status(), 'bob', 'idle'), 'no media');
});
