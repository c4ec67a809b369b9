/**
 * Failover of the page's signaling client (web/app/signaling.js) between
 * several instances of one deployment (docs/deployment.md): the `servers=`
 * addresses it accepts (each on the page's own origin), and the rotation
 * (a connection the server ended sends the next connect to the next address,
 * round robin; opening tries each address once). The instances here are
 * stand-in WebSockets answering `join` (Node has no browser WebSocket); the
 * Python side runs the same rotation against real servers
 * (tests/signaling/test_failover.py).
 */

import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';

import { SignalingClient, SignalingError, wsUrlsFromParam } from '../app/signaling.js';

/** Instances by address: `up` decides whether a connection opens; `sockets` are the open ones. */
const instances = new Map();

function instance(url) {
  if (!instances.has(url)) instances.set(url, { up: true, sockets: [], joins: [] });
  return instances.get(url);
}

/** A browser-shaped WebSocket whose server side is `instances`. */
class StandInSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = StandInSocket.CONNECTING;
    setTimeout(() => {
      const server = instance(url);
      if (!server.up) {
        this.readyState = StandInSocket.CLOSED;
        this.onerror?.({});
        this.onclose?.({ code: 1006 });
        return;
      }
      this.readyState = StandInSocket.OPEN;
      server.sockets.push(this);
      this.onopen?.({});
    }, 0);
  }

  send(text) {
    const frame = JSON.parse(text);
    const server = instance(this.url);
    if (frame.type === 'join') server.joins.push({ since: frame.since ?? null });
    const reply = frame.type === 'join'
      ? { type: 'ack', re: frame.id, identity: 'alice', last_seq: 4, members: ['alice'] }
      : { type: 'ack', re: frame.id };
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(reply) }), 0);
  }

  /** The client closing it. */
  close(code = 1000) {
    this.#end(code);
  }

  /** The server side ending it (an instance going away). */
  drop(code = 1006) {
    this.#end(code);
  }

  #end(code) {
    if (this.readyState === StandInSocket.CLOSED) return;
    this.readyState = StandInSocket.CLOSED;
    const server = instance(this.url);
    server.sockets = server.sockets.filter((s) => s !== this);
    setTimeout(() => this.onclose?.({ code }), 0);
  }
}

globalThis.WebSocket = StandInSocket;

const A = 'ws://calls.example:8080/a/ws';
const B = 'ws://calls.example:8080/b/ws';
const C = 'ws://calls.example:8080/c/ws';

/** Stops an instance: it ends its connections and refuses new ones. */
function stop(url) {
  const server = instance(url);
  server.up = false;
  for (const socket of [...server.sockets]) socket.drop();
}

function nextEvent(client, type) {
  return new Promise((resolve) => {
    client.onevent = (event) => {
      if (event.type === type) resolve(event);
    };
  });
}

beforeEach(() => instances.clear());

const page = { href: 'https://calls.example/room?servers=x', protocol: 'https:', host: 'calls.example' };

test('servers=: paths and URLs on the page origin, the page server by default', () => {
  assert.deepEqual(wsUrlsFromParam(null, page), ['wss://calls.example/ws']);
  assert.deepEqual(wsUrlsFromParam(' , ', page), ['wss://calls.example/ws']);
  assert.deepEqual(wsUrlsFromParam('/a/ws, https://calls.example/b/ws,wss://calls.example/c/ws?x=1', page),
    ['wss://calls.example/a/ws', 'wss://calls.example/b/ws', 'wss://calls.example/c/ws']);
  const local = { href: 'http://127.0.0.1:8080/', protocol: 'http:', host: '127.0.0.1:8080' };
  assert.deepEqual(wsUrlsFromParam('/ws,ws://127.0.0.1:8080/b/ws', local),
    ['ws://127.0.0.1:8080/ws', 'ws://127.0.0.1:8080/b/ws']);
});

test('servers=: an address off the page origin is refused', () => {
  const refused = [
    'wss://evil.example/ws', // another host: the room token would go there
    'wss://calls.example:8443/ws', // another port
    'ws://calls.example/ws', // a plain connection from an https page
    'http://calls.example/ws',
    'wss://user:pw@calls.example/ws',
    'ftp://calls.example/ws',
    'https://[bad',
  ];
  for (const entry of refused) {
    assert.throws(() => wsUrlsFromParam(`/ws,${entry}`, page),
      (err) => err instanceof SignalingError && err.code === 'bad_address', entry);
  }
});

test('one address or several; an empty list is refused', () => {
  assert.deepEqual(new SignalingClient(A, 'r', 't').wsUrls, [A]);
  const client = new SignalingClient([A, B], 'r', 't');
  assert.deepEqual(client.wsUrls, [A, B]);
  assert.equal(client.wsUrl, A);
  assert.throws(() => new SignalingClient([], 'r', 't'), TypeError);
  assert.throws(() => new SignalingClient([A, ''], 'r', 't'), TypeError);
});

test('a connection the server ended sends the next connect to the next address, round robin', async () => {
  const client = new SignalingClient([A, B], 'room', 'token');
  await client.connect();
  assert.equal(client.wsUrl, A);
  assert.equal(instance(A).sockets.length, 1);
  const closed = nextEvent(client, 'closed');
  stop(A);
  assert.equal((await closed).code, 1006);
  assert.equal(client.wsUrl, B);
  await client.connect({ since: client.lastSeq });
  assert.equal(instance(B).sockets.length, 1);
  assert.deepEqual(instance(B).joins, [{ since: 4 }]); // catching up from its cursor
  instance(A).up = true; // the first instance back
  const again = nextEvent(client, 'closed');
  stop(B);
  await again;
  await client.connect({ since: client.lastSeq });
  assert.equal(client.wsUrl, A);
  assert.equal(instance(A).sockets.length, 1);
  client.close();
});

test('opening skips addresses that do not answer, and fails when none does', async () => {
  instance(A).up = false;
  instance(B).up = false;
  const client = new SignalingClient([A, B, C], 'room', 'token');
  await client.connect();
  assert.equal(client.wsUrl, C);
  assert.equal(instance(C).sockets.length, 1);
  client.close();

  instance(C).up = false;
  const none = new SignalingClient([A, B, C], 'room', 'token');
  await assert.rejects(none.connect(), (err) => err instanceof SignalingError && err.code === 'closed');
  assert.equal(none.connected, false);
});

test('a connection the client replaced itself stays on the same address', async () => {
  const client = new SignalingClient([A, B], 'room', 'token');
  await client.connect();
  await client.connect({ since: client.lastSeq });
  assert.equal(client.wsUrl, A);
  assert.equal(instance(A).joins.length, 2);
  assert.equal(instance(B).joins.length, 0);
  client.close();
});
