/**
 * Loopback-only ICE for local calls (the browser side of media/loopback.py).
 *
 * With `--allow-loopback-in-peer-connection` Chromium gathers a 127.0.0.1
 * candidate, but it still offers its other interfaces too; a page in
 * loopback mode drops every non-loopback candidate it sends or receives:
 * SDP `a=candidate` lines (filterSdp) and trickled candidates
 * (isLoopbackCandidate), as the Python peers do.
 * @module app/loopback
 */

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Whether the page runs in loopback mode: served from a loopback host, or `?loopback=1`. */
export function loopbackMode(location = globalThis.location) {
  const flag = new URLSearchParams(location.search).get('loopback');
  if (flag !== null) return flag === '1' || flag === 'true';
  return LOOPBACK_HOSTS.has(location.hostname);
}

/** @param {string} address */
function isLoopbackAddress(address) {
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)) return true;
  return bare === '::1' || bare === '0:0:0:0:0:0:0:1';
}

/**
 * True for an ICE candidate (`candidate:...`, or its `a=` SDP attribute,
 * RFC 8839 §5.1) whose connection address is a loopback address.
 * @param {string} candidate
 */
export function isLoopbackCandidate(candidate) {
  let text = candidate.trim();
  if (text.startsWith('a=')) text = text.slice(2);
  if (text.startsWith('candidate:')) text = text.slice('candidate:'.length);
  const fields = text.split(/\s+/);
  return fields.length >= 8 && isLoopbackAddress(fields[4]);
}

/** `sdp` without its non-loopback `a=candidate` lines. */
export function filterSdp(sdp) {
  return sdp.split(/(?<=\n)/).filter((line) => !line.startsWith('a=candidate:') || isLoopbackCandidate(line)).join('');
}

/** The only codecs negotiated: SFrame's codec-aware framing knows them (media/framing.py). */
export const CODECS = Object.freeze({ video: 'video/VP8', audio: 'audio/opus' });

/**
 * Restricts a transceiver to VP8 (video) or Opus (audio) (setCodecPreferences).
 * @param {RTCRtpTransceiver} transceiver
 * @param {'audio'|'video'} kind
 */
export function preferCodecs(transceiver, kind) {
  const capabilities = RTCRtpReceiver.getCapabilities(kind);
  const wanted = CODECS[kind].toLowerCase();
  const codecs = (capabilities?.codecs ?? []).filter((codec) => codec.mimeType.toLowerCase() === wanted);
  if (codecs.length === 0) throw new Error(`this browser cannot receive ${CODECS[kind]}`);
  transceiver.setCodecPreferences(codecs);
}
