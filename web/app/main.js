/**
 * The call page: a join form (name and room, prefilled from `?room=` and
 * `?name=`), then the call view. Query parameters: `room`, `name`,
 * `loopback=1|0` (default: on when the page comes from a loopback host),
 * `video=WIDTHxHEIGHT` (camera size asked for), `servers=` (the signaling
 * instances to use and fail over between, comma-separated paths or URLs on
 * this page's origin, e.g. `servers=/a/ws,/b/ws`; default: this page's
 * server). A room token comes in the
 * URL fragment, `#token=...` (never the query string, which reaches server
 * logs): it is taken out of the address bar and history at once; without
 * one the development server's loopback-only `POST /token` mints one.
 *
 * `window.mlscall.call` is the running Call (for the console and the
 * end-to-end tests).
 * @module app/main
 */

import { Call } from './call.js';
import { loopbackMode } from './loopback.js';
import { fetchToken, takeFragmentToken, wsUrlsFromParam } from './signaling.js';
import { CallView } from './ui.js';

const fragmentToken = takeFragmentToken();
const params = new URLSearchParams(location.search);
const joinForm = document.getElementById('join');
const callSection = document.getElementById('call');
const errorText = document.getElementById('join-error');

window.mlscall = { call: null };

/** Camera constraints from `?video=WIDTHxHEIGHT` (default 640x360). */
function videoConstraints() {
  const match = /^(\d{2,4})x(\d{2,4})$/.exec(params.get('video') ?? '');
  const [width, height] = match ? [Number(match[1]), Number(match[2])] : [640, 360];
  return { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
}

function randomName() {
  return `guest-${Math.floor(1000 + Math.random() * 9000)}`;
}

joinForm.elements.room.value = params.get('room') ?? 'demo';
joinForm.elements.name.value = params.get('name') ?? randomName();
if (loopbackMode()) document.getElementById('loopback-note').hidden = false;

let stream = null;
let view = null;

async function join(name, room) {
  const wsUrls = wsUrlsFromParam(params.get('servers'));
  stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: videoConstraints() });
  const token = fragmentToken ?? await fetchToken(location.origin, room, name);
  const call = new Call({ wsUrl: wsUrls, room, token, stream, options: { loopback: loopbackMode() } });
  window.mlscall.call = call;
  await call.start();
  const query = new URLSearchParams(location.search);
  query.set('room', room);
  history.replaceState(null, '', `?${query}`);
  joinForm.hidden = true;
  callSection.hidden = false;
  view = new CallView(callSection, call, stream, { onLeave: () => leave() });
}

async function leave() {
  const call = window.mlscall.call;
  view?.destroy();
  view = null;
  callSection.hidden = true;
  await call?.stop();
  for (const track of stream?.getTracks() ?? []) track.stop();
  stream = null;
  joinForm.hidden = false;
  joinForm.elements.join.disabled = false;
}

joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const name = joinForm.elements.name.value.trim();
  const room = joinForm.elements.room.value.trim();
  joinForm.elements.join.disabled = true;
  errorText.textContent = '';
  join(name, room).catch(async (err) => {
    console.warn('joining failed:', err);
    errorText.textContent = `Could not join: ${err.message}`;
    await window.mlscall.call?.stop().catch(() => {});
    for (const track of stream?.getTracks() ?? []) track.stop();
    joinForm.elements.join.disabled = false;
  });
});

window.addEventListener('pagehide', () => {
  window.mlscall.call?.stop();
});
