/**
 * A WebSocket client of the mlscall signaling protocol (docs/protocol.md),
 * the browser counterpart of Python's signaling.client.SignalingClient.
 *
 * Requests carry an `id`; `request()` resolves with the `ack` whose `re`
 * matches, or rejects with a SignalingError for an `error` reply. Every
 * other frame the server pushes (presence, log entries, relayed WebRTC
 * signaling) goes to `onevent`; when the connection ends, `onevent` gets
 * `{type: "closed", code}` (not for a connection the client dropped
 * itself to connect again). `lastSeq` is the log cursor to rejoin with
 * (`connect({since})`). MLS fields travel as standard base64 and are
 * Uint8Arrays on this side.
 *
 * Failover: the client takes one WebSocket address or several (instances of
 * one deployment sharing a store, docs/deployment.md). A connection the
 * server or the network ended moves it to the next address, round robin, and
 * `connect()` tries each address once from the current one; so the call's
 * rejoin (which backs off, bounded by its reconnect timeout) reaches another
 * instance and catches up there from `lastSeq`.
 * @module app/signaling
 */

export const SUBPROTOCOL = 'mlscall.v1';
export const PROTOCOL_VERSION = 1;

/** Fields holding MLS bytes (base64 on the wire), as docs/protocol.md lists them. */
const BINARY_FIELDS = ['group_id', 'commit', 'proposal', 'welcome', 'ciphertext', 'key_package'];

/** Error codes of docs/protocol.md the call logic tells apart. */
export const ErrorCode = Object.freeze({
  CONFLICT: 'conflict',
  WRONG_GROUP: 'wrong_group',
  NOT_FOUND: 'not_found',
  TOO_MANY_KEY_PACKAGES: 'too_many_key_packages',
  CLOSED: 'closed',
  TIMEOUT: 'timeout',
  REPLACED: 'replaced',
  LOG_TRUNCATED: 'log_truncated',
  BAD_ADDRESS: 'bad_address',
});

export class SignalingError extends Error {
  /**
   * @param {string} code a docs/protocol.md error code, or "closed" / "timeout" (client side)
   * @param {string} message
   * @param {Record<string, unknown>} [details] extra fields of the error reply (e.g. `epoch`)
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.details = details;
  }
}

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** @param {string} text standard base64 */
export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function decodeBinaryFields(frame) {
  for (const name of BINARY_FIELDS) {
    if (typeof frame[name] === 'string') frame[name] = fromBase64(frame[name]);
  }
  return frame;
}

/**
 * A room token from a development server's loopback-only `POST /token`.
 * @param {string} baseUrl e.g. location.origin
 * @returns {Promise<string>}
 */
export async function fetchToken(baseUrl, room, identity) {
  const response = await fetch(new URL('/token', baseUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ room, identity }),
  });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new SignalingError(reply.code ?? 'internal', reply.message ?? `POST /token answered ${response.status}`);
  }
  return reply.token;
}

/**
 * Takes the room token out of the page's address: from the URL fragment
 * (`#token=...`, which browsers never send to a server, so it reaches no
 * access log and no Referer), then removes it from the address bar and the
 * current history entry (`history.replaceState`). A `token` in the query
 * string is not accepted (query strings reach server logs) but is removed
 * all the same. Other query and fragment parameters stay.
 * @param {{href: string}} [location]
 * @param {{state: unknown, replaceState: (state: unknown, unused: string, url: string) => void}} [history]
 * @returns {string|null} the token, or null when the fragment names none
 */
export function takeFragmentToken(location = globalThis.location, history = globalThis.history) {
  const url = new URL(location.href);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const token = fragment.get('token');
  if (token === null && !url.searchParams.has('token')) return null;
  fragment.delete('token');
  url.searchParams.delete('token');
  const rest = fragment.toString();
  history.replaceState(history.state, '', `${url.pathname}${url.search}${rest ? `#${rest}` : ''}`);
  return token || null;
}

/** The WebSocket address of the server that served this page. */
export function defaultWsUrl(location = globalThis.location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/**
 * The WebSocket addresses of the page's `servers=` parameter (comma-separated),
 * or the page's own server without one. Each entry is a path (`/a/ws`) or an
 * absolute http(s)/ws(s) URL and must be on the page's own origin (the room
 * token goes to it): instances of one deployment behind one origin, e.g. a
 * reverse proxy routing `/a/ws` and `/b/ws` to two instances.
 * @param {string|null} value the parameter's value
 * @param {{href: string, protocol: string, host: string}} [location]
 * @returns {string[]}
 */
export function wsUrlsFromParam(value, location = globalThis.location) {
  const entries = (value ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (entries.length === 0) return [defaultWsUrl(location)];
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return entries.map((entry) => {
    let url;
    try {
      url = new URL(entry, location.href);
    } catch {
      throw new SignalingError(ErrorCode.BAD_ADDRESS, `not a server address: ${entry}`);
    }
    const own = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
    if (own !== scheme || url.host !== location.host || url.username !== '' || url.password !== '') {
      throw new SignalingError(ErrorCode.BAD_ADDRESS, `a server address must be on this page's origin: ${entry}`);
    }
    return `${scheme}//${url.host}${url.pathname}`;
  });
}

export class SignalingClient {
  /**
   * @param {string|string[]} wsUrl one WebSocket address or several, tried in turn
   * @param {string} room
   * @param {string} token
   * @param {{requestTimeout?: number}} [options] seconds before a request gives up (default 10)
   */
  constructor(wsUrl, room, token, { requestTimeout = 10 } = {}) {
    const urls = typeof wsUrl === 'string' ? [wsUrl] : [...wsUrl];
    if (urls.length === 0 || !urls.every((url) => typeof url === 'string' && url !== '')) {
      throw new TypeError('wsUrl must be one WebSocket address or a non-empty list of them');
    }
    /** the addresses tried in turn */
    this.wsUrls = Object.freeze(urls);
    this.current = 0;
    this.room = room;
    this.token = token;
    this.requestTimeout = requestTimeout;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: number}>} */
    this.pending = new Map();
    /** highest log `seq` received */
    this.lastSeq = 0;
    this.identity = null;
    /** @type {(event: object) => void} */
    this.onevent = () => {};
  }

  /** The address in use (or tried next). */
  get wsUrl() {
    return this.wsUrls[this.current];
  }

  #rotate() {
    this.current = (this.current + 1) % this.wsUrls.length;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Opens the WebSocket and joins the room; resolves with the join `ack`
   * (catch-up entries follow as events). With `since` (and/or `epoch`) the
   * server replays the log after that cursor (docs/protocol.md, `join`);
   * without, this is a newcomer whose cursor starts at the log's end.
   * @param {{since?: number|null, epoch?: number|null}} [catchUp]
   */
  async connect({ since = null, epoch = null } = {}) {
    this.#drop();
    const ws = await this.#open();
    ws.onmessage = (event) => this.#dispatch(event.data);
    ws.onclose = (event) => this.#closed(ws, event.code);
    const fields = { room: this.room, token: this.token };
    if (since !== null) fields.since = since;
    if (epoch !== null) fields.epoch = epoch;
    let reply;
    try {
      reply = await this.request('join', fields);
    } catch (err) {
      this.#drop(); // a refused join (e.g. log_truncated) leaves nothing open behind
      throw err;
    }
    this.identity = reply.identity;
    if (since === null && epoch === null) this.lastSeq = Math.max(this.lastSeq, reply.last_seq ?? 0);
    return reply;
  }

  /**
   * A WebSocket open to the current address, else to each next one in turn
   * (one round); SignalingError closed when none answers.
   */
  async #open() {
    for (let attempt = 0; ; attempt += 1) {
      const url = this.wsUrl;
      const ws = new WebSocket(url, SUBPROTOCOL);
      this.ws = ws;
      try {
        await new Promise((resolve, reject) => {
          ws.onopen = resolve;
          ws.onerror = () => reject(new SignalingError(ErrorCode.CLOSED, `cannot connect to ${url}`));
        });
        ws.onerror = null;
        return ws;
      } catch (err) {
        if (this.ws === ws) this.ws = null;
        if (attempt === this.wsUrls.length - 1) throw err;
        this.#rotate();
      }
    }
  }

  /** Forgets the current WebSocket (its close is not reported) and closes it. */
  #drop() {
    const ws = this.ws;
    if (ws === null) return;
    this.ws = null;
    ws.onclose = null;
    ws.onmessage = null;
    this.#failPending();
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
  }

  #dispatch(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn('signaling: an unreadable frame from the server');
      return;
    }
    if (frame === null || typeof frame !== 'object') return;
    if (frame.type !== 'error') decodeBinaryFields(frame);
    const request = typeof frame.re === 'number' ? this.pending.get(frame.re) : undefined;
    if (request !== undefined) {
      this.pending.delete(frame.re);
      clearTimeout(request.timer);
      if (frame.type === 'error') {
        const { type, re, code, message, ...details } = frame;
        request.reject(new SignalingError(code ?? 'internal', message ?? '', details));
      } else {
        request.resolve(frame);
      }
      return;
    }
    if (typeof frame.seq === 'number' && !('re' in frame)) this.lastSeq = Math.max(this.lastSeq, frame.seq);
    this.onevent(frame);
  }

  #failPending() {
    for (const request of this.pending.values()) {
      clearTimeout(request.timer);
      request.reject(new SignalingError(ErrorCode.CLOSED, 'the connection closed'));
    }
    this.pending.clear();
  }

  #closed(ws, code) {
    if (ws !== this.ws) return; // a connection already replaced by a newer one
    this.#rotate(); // ended by the server or the network: the next attempt goes elsewhere
    this.#failPending();
    this.onevent({ type: 'closed', code });
  }

  /**
   * Sends a request; resolves with its `ack`.
   * @param {string} type
   * @param {Record<string, unknown>} [fields] Uint8Array values are sent as base64
   */
  request(type, fields = {}) {
    if (!this.connected) return Promise.reject(new SignalingError(ErrorCode.CLOSED, 'not connected'));
    const id = this.nextId;
    this.nextId += 1;
    const frame = { v: PROTOCOL_VERSION, type, id };
    for (const [name, value] of Object.entries(fields)) {
      frame[name] = value instanceof Uint8Array ? toBase64(value) : value;
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalingError(ErrorCode.TIMEOUT, `no answer to ${type} within ${this.requestTimeout} s`));
      }, this.requestTimeout * 1000);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify(frame));
    });
  }

  /** @param {Uint8Array[]} keyPackages */
  publishKeyPackages(keyPackages) {
    return this.request('keypackage.publish', { key_packages: keyPackages.map(toBase64) });
  }

  /**
   * Registers the room's group from its creator's GroupInfo (which carries the ratchet tree);
   * SignalingError wrong_group when the room has a group already.
   * @param {Uint8Array} groupId
   * @param {number} epoch
   * @param {Uint8Array} groupInfo
   */
  createGroup(groupId, epoch, groupInfo) {
    return this.request('group.create', { group_id: groupId, epoch, group_info: groupInfo });
  }

  /** The oldest KeyPackage of `identity` (removed from the directory); SignalingError not_found when none. */
  async claimKeyPackage(identity) {
    return (await this.request('keypackage.claim', { identity })).key_package;
  }

  /**
   * Submits the commit for `epoch`; the ack holds its `seq` and the new `epoch`.
   * @param {Uint8Array} groupId
   * @param {number} epoch
   * @param {Uint8Array} commit
   * @param {Map<string, Uint8Array>} [welcomes] recipient -> Welcome
   */
  commit(groupId, epoch, commit, welcomes = new Map()) {
    const list = [...welcomes].map(([to, welcome]) => ({ to, welcome: toBase64(welcome) }));
    return this.request('commit', { group_id: groupId, epoch, commit, welcomes: list });
  }

  /** Sends an MLS PrivateMessage (RFC 9420 §6.3) to the other members; resolves with its `seq`. */
  async sendApplication(epoch, ciphertext) {
    return (await this.request('application', { epoch, ciphertext })).seq;
  }

  /** Relays WebRTC signaling (`offer`, `answer` or `candidate`) to `to`. */
  async signal(kind, to, data) {
    await this.request(kind, { to, data });
  }

  /** Leaves the room (if still connected) and closes the connection. */
  async leave() {
    if (this.connected) {
      try {
        await this.request('leave');
      } catch (err) {
        if (!(err instanceof SignalingError)) throw err;
      }
    }
    this.close();
  }

  close() {
    if (this.ws !== null && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}
