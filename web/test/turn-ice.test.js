// The page's use of the join reply's TURN servers (docs/protocol.md, `join`,
// `ice_servers`): which entries it takes, and which it keeps in loopback mode
// (as media.call_peer.ice_servers_from_reply and media.mesh.usable_ice_servers).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { iceServersFromReply } from '../app/call.js';
import { iceServerHost, usableIceServers } from '../app/link.js';

test('the join reply ice_servers: well-formed entries only', () => {
  const good = { urls: 'turn:127.0.0.1:3478', username: '1700000600:alice', credential: 'c2VjcmV0' };
  const list = { urls: ['turn:127.0.0.1:3478?transport=udp'] };
  const reply = { ice_servers: [{ urls: 3 }, 'turn:x', { urls: ['turn:127.0.0.1'], username: 1 }, null, good, list] };
  assert.deepEqual(iceServersFromReply(reply), [good, list]);
  assert.deepEqual(iceServersFromReply({}), []);
  assert.deepEqual(iceServersFromReply({ ice_servers: 'turn:127.0.0.1' }), []);
});

test('loopback mode keeps only servers on a loopback address', () => {
  assert.equal(iceServerHost('turn:127.0.0.1:3478?transport=udp'), '127.0.0.1');
  assert.equal(iceServerHost('turn:[::1]:3478'), '::1');
  assert.equal(iceServerHost('turns:turn.example.org?transport=tcp'), 'turn.example.org');
  const local = { urls: 'turn:127.0.0.1:3478', username: 'u', credential: 'c' };
  const remote = { urls: ['turn:127.0.0.1:3478', 'turn:turn.example.org:3478'] };
  assert.deepEqual(usableIceServers([local, remote], true), [local]);
  assert.deepEqual(usableIceServers([local, remote], false), [local, remote]);
});
