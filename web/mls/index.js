/**
 * The MLS Web API (Firefox's prototype, see the MLS Web API explainer) in
 * JavaScript over ts-mls: `new MLS(store)` gives identities, KeyPackages and
 * group views; every value in or out is RFC 9420 wire format.
 * @module mls
 */

export { MLS, clientIdOf, KEY_PACKAGE_BACKDATE_SECONDS, KEY_PACKAGE_VALIDITY_SECONDS } from './mls.js';
export { MLSGroupView } from './group.js';
export { MLSError } from './errors.js';
export { PAST_EPOCHS } from './records.js';
export { IndexedDBStore, MemoryStore, defaultStore } from './store.js';
