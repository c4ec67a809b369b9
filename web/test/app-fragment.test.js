/**
 * The call page takes its room token from the URL fragment only
 * (app/signaling.js takeFragmentToken): the token leaves the address bar and
 * the history entry at once, a `?token=` is ignored and removed, and other
 * parameters stay.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { takeFragmentToken } from '../app/signaling.js';

/** A location and a history recording replaceState calls. */
function page(href) {
  const calls = [];
  const history = {
    state: { kept: true },
    replaceState(state, unused, url) {
      calls.push({ state, unused, url });
    },
  };
  return { location: { href }, history, calls };
}

const TOKEN = 'mlscall1.eyJleHAiOjF9.dGFn-_';

test('a fragment token is returned and removed from the address bar, other parameters kept', () => {
  const { location, history, calls } = page(`http://127.0.0.1:8080/?room=r1&video=320x240#token=${TOKEN}&x=1`);
  assert.equal(takeFragmentToken(location, history), TOKEN);
  assert.deepEqual(calls, [{ state: { kept: true }, unused: '', url: '/?room=r1&video=320x240#x=1' }]);
  assert.ok(!calls[0].url.includes(TOKEN));
});

test('a fragment holding only the token leaves no fragment behind', () => {
  const { location, history, calls } = page(`http://localhost:9/?room=r#token=${TOKEN}`);
  assert.equal(takeFragmentToken(location, history), TOKEN);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, '/?room=r');
});

test('a query-string token is not accepted, and is removed from the address bar', () => {
  const { location, history, calls } = page(`http://127.0.0.1:8080/?token=${TOKEN}&room=r`);
  assert.equal(takeFragmentToken(location, history), null);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, '/?room=r');
});

test('with both, the fragment wins and both are removed', () => {
  const { location, history, calls } = page(`http://127.0.0.1:8080/?token=query-one#token=${TOKEN}`);
  assert.equal(takeFragmentToken(location, history), TOKEN);
  assert.equal(calls[0].url, '/');
});

test('no token: nothing is returned and the history is left alone', () => {
  const { location, history, calls } = page('http://127.0.0.1:8080/?room=r#x=1');
  assert.equal(takeFragmentToken(location, history), null);
  assert.deepEqual(calls, []);
});

test('an empty fragment token counts as none but is removed', () => {
  const { location, history, calls } = page('http://127.0.0.1:8080/?room=r#token=');
  assert.equal(takeFragmentToken(location, history), null);
  assert.equal(calls[0].url, '/?room=r');
});

test('a percent-encoded token is decoded as URLSearchParams decode it', () => {
  const { location, history } = page('http://127.0.0.1:8080/#token=a%2Bb');
  assert.equal(takeFragmentToken(location, history), 'a+b');
});
