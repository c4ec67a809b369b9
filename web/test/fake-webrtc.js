/**
 * A stand-in for the browser pieces the SFrame transform uses, enough to
 * run web/sframe-transform.js and web/sframe/worker-core.js in Node:
 * a Worker whose global scope runs installSFrameWorker in this thread,
 * RTCRtpScriptTransform, RTCRtpSender/RTCRtpReceiver whose `transform`
 * setter fires `rtctransform` with a transformer, and encoded frames.
 */

import { installSFrameWorker } from '../sframe/worker-core.js';

export class FakeWorker {
  constructor() {
    this.scope = new EventTarget();
    this.endpoints = installSFrameWorker(this.scope);
  }

  postMessage(data) {
    const event = new Event('message');
    event.data = data;
    this.scope.dispatchEvent(event);
  }
}

globalThis.RTCRtpScriptTransform = class RTCRtpScriptTransform {
  constructor(worker, options) {
    this.worker = worker;
    this.options = structuredClone(options);
  }
};

/** What the worker sees: RTCRtpScriptTransformer with streams the test drives. */
class Transformer {
  constructor(options) {
    this.options = options;
    const input = new TransformStream();
    const output = new TransformStream();
    this.readable = input.readable;
    this.writable = output.writable;
    this.input = input.writable.getWriter();
    this.keyFramesGenerated = 0;
    this.keyFrameRequests = 0;
    /** every frame the transform let out, in order (read continuously: no backpressure stall) */
    this.outputs = [];
    const reader = output.readable.getReader();
    const pump = () => reader.read().then(({ value, done }) => {
      if (done) return;
      this.outputs.push(value);
      pump();
    });
    pump();
  }

  generateKeyFrame() {
    this.keyFramesGenerated += 1;
    return Promise.resolve();
  }

  sendKeyFrameRequest() {
    this.keyFrameRequests += 1;
    return Promise.resolve();
  }
}

class FakeRtpEndpoint {
  set transform(transform) {
    this.current = transform;
    this.transformer = new Transformer(transform.options);
    const event = new Event('rtctransform');
    event.transformer = this.transformer;
    transform.worker.scope.dispatchEvent(event);
    const endpoint = transform.worker.endpoints.get(transform.options.sframe);
    const records = transform.options.role === 'encrypt' ? endpoint.senders : endpoint.receivers;
    /** the worker's counters for this transformer */
    this.record = records.at(-1);
  }

  get transform() {
    return this.current;
  }

  /** Frames the worker has handled so far, and how many it let through. */
  counts() {
    const r = this.record;
    if ('framesEncrypted' in r) return { handled: r.framesEncrypted + r.framesDropped + r.framesWithheld, passed: r.framesEncrypted };
    const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
    return { handled: r.framesDecrypted + failed, passed: r.framesDecrypted };
  }

  /**
   * Pushes frames through the transform; returns those it let out, in order.
   * Waits until the worker has handled every frame (dropped frames never come out).
   */
  async run(frames) {
    const before = this.counts();
    for (const frame of frames) this.transformer.input.write(frame);
    const tick = () => new Promise((resolve) => { setImmediate(resolve); });
    while (this.counts().handled < before.handled + frames.length) await tick();
    while (this.transformer.outputs.length < this.counts().passed) await tick();
    return this.transformer.outputs.slice(before.passed);
  }
}

globalThis.RTCRtpSender = class RTCRtpSender extends FakeRtpEndpoint {};
globalThis.RTCRtpReceiver = class RTCRtpReceiver extends FakeRtpEndpoint {};

export class FakeVideoFrame {
  constructor(bytes, { type = 'delta', mimeType = 'video/VP8', ssrc = 1234 } = {}) {
    this.type = type;
    this.data = Uint8Array.from(bytes).buffer;
    this.timestamp = 9000;
    this.metadata = { mimeType, synchronizationSource: ssrc, rtpTimestamp: 9000 };
  }

  getMetadata() {
    return this.metadata;
  }
}

export class FakeAudioFrame {
  constructor(bytes, { mimeType = 'audio/opus' } = {}) {
    this.data = Uint8Array.from(bytes).buffer;
    this.timestamp = 480;
    this.metadata = { mimeType, synchronizationSource: 99, rtpTimestamp: 480 };
  }

  getMetadata() {
    return this.metadata;
  }
}

/** Copies of frames (the transform rewrites `data` in place). */
export function cloneFrame(frame) {
  const copy = Object.create(Object.getPrototypeOf(frame));
  Object.assign(copy, frame);
  copy.data = frame.data.slice(0);
  return copy;
}
