/**
 * Dedicated worker running SFrame for RTCRtpScriptTransform. Created by
 * web/sframe-transform.js as
 * `new Worker(new URL('./sframe-worker.js', import.meta.url), {type: 'module'})`.
 */

import { installSFrameWorker } from './sframe/worker-core.js';

installSFrameWorker(self);
