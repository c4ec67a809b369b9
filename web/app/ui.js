/**
 * The call view: a tile per participant (video, name, its MLS leaf, one
 * "encrypted" indicator per received stream), the epoch, the verification
 * code, the trust warnings of the membership machine (with "accept the new
 * key" for a changed signature key), the MLS text messages labelled by
 * their MLS-authenticated sender, and the leave button. It renders a Call's
 * state on its "change" events and polls the SFrame counters for the
 * indicators.
 * @module app/ui
 */

/** How long an indicator stays red after the last decryption failure (ms). */
const FAILURE_HOLD_MS = 3000;
const POLL_MS = 500;

/**
 * Indicator of one received stream from two successive counter snapshots:
 * "bad" (red) after authentication, syntax or replay failures, "ok" when
 * frames decrypt, "wait" while frames arrive under a key we do not have yet
 * (a joiner, or a commit in flight), "idle" without frames.
 */
export function streamState(previous, current, lastFailureAt, now) {
  const broken = (s) => (s ? s.failures.authentication + s.failures.syntax + s.failures.replay : 0);
  if (current === undefined) return { state: 'idle', lastFailureAt };
  let failedAt = lastFailureAt;
  if (broken(current) > broken(previous)) failedAt = now;
  if (failedAt !== null && now - failedAt < FAILURE_HOLD_MS) return { state: 'bad', lastFailureAt: failedAt };
  if (current.decrypted > (previous?.decrypted ?? 0)) return { state: 'ok', lastFailureAt: failedAt };
  if (current.failures.keyID > (previous?.failures.keyID ?? 0)) return { state: 'wait', lastFailureAt: failedAt };
  return { state: 'idle', lastFailureAt: failedAt };
}

/**
 * Why a participant's stream shows no decrypted media (null while it
 * decrypts or fails to), from the Call's status(): the participant left the
 * room, ICE (or the DTLS after it) failed, the connection is still being set
 * up or was interrupted, no key yet (we or they are not in the group yet, or
 * their frames are under an epoch we have not reached), or nothing arrives
 * on a working connection.
 * @param {object} status what Call.status() resolves to
 * @param {string} identity
 * @param {'ok'|'bad'|'wait'|'idle'} state the stream's streamState()
 */
export function missingMediaReason(status, identity, state) {
  if (state === 'ok' || state === 'bad') return null;
  if (!status.present.includes(identity)) return 'peer gone';
  if (status.sfu?.interrupted) return 'media server interrupted';
  // in an SFU room every stream comes on the one subscribing connection
  const link = status.sfu ? status.sfu.subscriber ?? undefined : status.links[identity];
  if (link?.ice === 'failed') return 'ICE failed';
  if (link?.state === 'failed') return 'connection failed';
  if (state === 'wait' || status.epoch === null || !status.members.includes(identity)) return 'no key yet';
  if (link === undefined || link.state === 'new' || link.state === 'connecting') return 'connecting';
  if (link.ice === 'disconnected' || link.state === 'disconnected') return 'connection interrupted';
  return 'no media';
}

const WARNING_TEXT = {
  duplicate_identity: 'a commit gave this identity a second leaf: that leaf is not trusted and is being removed',
  not_present: 'a commit added this identity, which never joined the room: not trusted, being removed',
  foreign_welcome: 'a Welcome for another group than the room\'s was refused',
  welcome_members: 'a Welcome whose members are not the room\'s participants was refused',
  key_changed: 'this identity has another signature key than before: its media is hidden until you accept the new key',
  sender_mismatch: 'the server named another sender for a message than the MLS-authenticated one',
  sfu_kid_changed: 'an SFU stream first sent by another member now carries this member\'s frames (SFrame KID): shown as this member\'s',
  sfu_from_mismatch: 'the server named another sender for an SFU stream than the member whose SFrame KID its frames carry',
};

/** One line describing a trust warning of the membership machine (docs/membership.md). */
export function warningText(warning) {
  const leaf = warning.leafIndex === null || warning.leafIndex === undefined ? '' : ` (leaf ${warning.leafIndex})`;
  const what = WARNING_TEXT[warning.kind] ?? warning.kind;
  return `${warning.identity || 'someone'}${leaf}: ${what}${warning.detail ? ` — ${warning.detail}` : ''}`;
}

const STATE_TEXT = {
  ok: 'encrypted',
  wait: 'waiting for key',
  bad: 'decrypt failures',
  idle: 'no media',
};

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'class') node.className = value;
    else if (name in node && typeof value !== 'string') node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** One participant's tile. */
class Tile {
  constructor(identity, { local = false } = {}) {
    this.identity = identity;
    this.video = element('video', { autoplay: true, playsInline: true, muted: true });
    this.audio = local ? null : element('audio', { autoplay: true });
    this.badges = {};
    this.leaf = element('span', { class: 'leaf' });
    const caption = element('figcaption', {}, element('span', { class: 'name' }, local ? `${identity} (you)` : identity), this.leaf);
    for (const kind of local ? ['sending'] : ['video', 'audio']) {
      const badge = element('span', { class: 'badge idle', 'data-kind': kind }, kind);
      this.badges[kind] = badge;
      caption.append(badge);
    }
    this.node = element('figure', { class: `tile${local ? ' local' : ''}`, 'data-identity': identity },
      this.video, ...(this.audio ? [this.audio] : []), caption);
    this.stream = null;
    this.previous = {};
    this.lastFailureAt = {};
  }

  /** Shows `stream` (remote: video in the video element, sound in the audio element). */
  show(stream) {
    if (this.stream === stream) return;
    this.stream = stream;
    this.video.srcObject = stream;
    if (stream === null) {
      if (this.audio !== null) this.audio.srcObject = null;
      return;
    }
    this.video.play().catch(() => {});
    if (this.audio !== null) {
      this.audio.srcObject = stream;
      this.audio.play().catch((err) => console.warn(`audio of ${this.identity} does not play yet: ${err.message}`));
    }
  }

  /** The MLS leaf this participant's credential holds in the group (or why it has none / is not trusted). */
  setLeaf(text, untrusted) {
    this.leaf.textContent = text;
    this.node.classList.toggle('untrusted', untrusted);
  }

  setBadge(kind, state, title) {
    const badge = this.badges[kind];
    badge.className = `badge ${state}`;
    badge.textContent = `${kind} ${STATE_TEXT[state]}`;
    badge.title = title;
  }

  /** Updates the stream indicators from the Call's status (this participant's SFrame counters and link). */
  update(status, now) {
    const counters = status.remotes[this.identity];
    for (const kind of ['video', 'audio']) {
      const current = counters?.[kind];
      const { state, lastFailureAt } = streamState(this.previous[kind], current, this.lastFailureAt[kind] ?? null, now);
      this.lastFailureAt[kind] = lastFailureAt;
      this.previous[kind] = current === undefined ? undefined : structuredClone(current);
      const title = current === undefined ? 'nothing received yet'
        : `${current.decrypted} frames decrypted; failures: authentication ${current.failures.authentication}, `
          + `unknown key ${current.failures.keyID}, malformed ${current.failures.syntax}, replay ${current.failures.replay}`;
      this.setBadge(kind, state, title);
      const reason = missingMediaReason(status, this.identity, state);
      if (reason !== null) this.badges[kind].textContent = `${kind} ${reason}`;
    }
  }
}

export class CallView {
  /**
   * @param {HTMLElement} root the call section of the page
   * @param {import('./call.js').Call} call
   * @param {MediaStream} localStream
   * @param {{onLeave: () => void}} handlers
   */
  constructor(root, call, localStream, { onLeave }) {
    this.root = root;
    this.call = call;
    this.tiles = new Map();
    this.root.replaceChildren();
    this.roomText = element('span', { class: 'room' });
    this.epochText = element('span', { class: 'epoch' });
    this.membersText = element('span', { class: 'members' });
    this.notice = element('div', { class: 'notice', hidden: true });
    this.warnings = element('ul', { class: 'warnings', role: 'alert', hidden: true });
    this.leaveButton = element('button', { type: 'button', class: 'leave' }, 'Leave');
    this.leaveButton.addEventListener('click', () => onLeave());
    this.code = element('code', { class: 'code' }, '—');
    this.grid = element('div', { class: 'tiles' });
    this.messages = element('ol', { class: 'messages' });
    this.input = element('input', { type: 'text', name: 'message', placeholder: 'Message to the group (MLS encrypted)', autocomplete: 'off', maxLength: 500 });
    const form = element('form', { class: 'compose' }, this.input, element('button', { type: 'submit' }, 'Send'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = '';
      call.sendMessage(text).catch((err) => this.showNotice(`Message not sent: ${err.message}`));
    });
    this.root.append(
      element('div', { class: 'bar' }, this.roomText, this.epochText, this.membersText, this.leaveButton),
      element('div', { class: 'verify' }, element('span', {}, 'Verification code'), this.code,
        element('small', {}, 'Compare it with the other participants: equal codes mean one group with the same keys.')),
      this.notice,
      this.warnings,
      this.grid,
      element('section', { class: 'chat' }, element('h2', {}, 'Messages'), this.messages, form),
    );
    this.local = new Tile(call.identity || 'you', { local: true });
    this.local.show(localStream);
    this.grid.append(this.local.node);
    this.onChange = () => this.render();
    call.addEventListener('change', this.onChange);
    this.timer = setInterval(() => this.poll().catch((err) => console.warn('stats:', err.message)), POLL_MS);
    this.render();
  }

  showNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  #tile(identity) {
    let tile = this.tiles.get(identity);
    if (tile === undefined) {
      tile = new Tile(identity);
      this.tiles.set(identity, tile);
      this.grid.append(tile.node);
    }
    return tile;
  }

  /** Tiles, epoch, members and code from the call's state. */
  render() {
    const call = this.call;
    if (call.identity && this.local.identity !== call.identity) {
      this.local.identity = call.identity;
      this.local.node.dataset.identity = call.identity;
      this.local.node.querySelector('.name').textContent = `${call.identity} (you)`;
    }
    this.roomText.textContent = `Room ${call.room}`;
    const epoch = call.group === null ? null : call.group.epoch;
    this.epochText.textContent = epoch === null ? 'not in the group yet' : `epoch ${epoch}`;
    this.membersText.textContent = `${call.members.size} in the group, ${call.present.size + 1} in the room`;
    this.code.textContent = call.verification ?? '—';
    const members = call.members;
    // tiles whose media came on an SFU stream that was flagged (another member's KID, or not the server's `from`)
    const flagged = new Set(call.warnings.filter((w) => w.kind.startsWith('sfu_')).map((w) => w.identity));
    for (const identity of call.present) {
      const tile = this.#tile(identity);
      tile.node.classList.toggle('relabelled', flagged.has(identity));
      const trusted = call.trusted(identity);
      // a changed signature key not accepted yet: its media is not shown
      tile.show(trusted ? call.remoteStreams.get(identity) ?? null : null);
      const leaf = members.get(identity);
      tile.setLeaf(!trusted ? 'key changed · media hidden' : leaf === undefined ? 'not in the group' : `leaf ${leaf}`, !trusted);
    }
    const own = members.get(call.identity);
    this.local.setLeaf(own === undefined ? '' : `leaf ${own}`, false);
    for (const [identity, tile] of this.tiles) {
      if (!call.present.has(identity)) {
        tile.node.remove();
        this.tiles.delete(identity);
      }
    }
    if (call.ended && !call.stopped) this.showNotice(`Disconnected: ${call.endReason ?? 'the call ended'}`);
    else if (call.reconnecting) this.showNotice('Reconnecting to the signaling server…');
    else if (call.sfu?.interrupted) this.showNotice('The media server is interrupted: the call resumes when it is back.');
    else if (call.removed) this.showNotice('You were removed from the group.');
    else if (call.group === null) this.showNotice('Waiting to be added to the group…');
    else this.showNotice('');
    this.warnings.hidden = call.warnings.length === 0;
    this.warnings.replaceChildren(...call.warnings.map((w) => {
      const item = element('li', { 'data-kind': w.kind }, warningText(w));
      if (w.kind === 'key_changed' && !call.trusted(w.identity)) {
        const accept = element('button', { type: 'button', class: 'accept-key' }, 'Accept the new key');
        accept.addEventListener('click', () => call.acceptKey(w.identity).catch((err) => this.showNotice(err.message)));
        item.append(' ', accept);
      }
      return item;
    }));
    this.messages.replaceChildren(...call.messages.map((m) => element('li', {},
      element('b', { title: m.leafIndex === null ? '' : `MLS leaf ${m.leafIndex}` }, m.from), ' ', m.text)));
  }

  /** Stream indicators from the SFrame counters. */
  async poll() {
    const status = await this.call.status();
    const now = performance.now();
    for (const tile of this.tiles.values()) tile.update(status, now);
    const sending = status.sendingEpoch !== null;
    this.local.setBadge('sending', sending ? 'ok' : 'wait', sending ? `sending under epoch ${status.sendingEpoch}` : 'no sending key yet');
    this.local.badges.sending.textContent = sending ? `sending encrypted · epoch ${status.sendingEpoch}` : 'sending · no key yet';
  }

  destroy() {
    clearInterval(this.timer);
    this.call.removeEventListener('change', this.onChange);
    this.root.replaceChildren();
  }
}
