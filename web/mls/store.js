/**
 * Storage of MLS state: an IndexedDB store for the browser and an in-memory
 * store (for Node and tests) with the same interface. Values are anything
 * the structured clone algorithm accepts, CryptoKey objects included, so a
 * non-extractable key is stored as a key, never as bytes.
 *
 * Interface (all async): get(key), put(key, value), add(key, value) -> bool
 * (false if the key exists; atomic), delete(key), clear(), close().
 * @module mls/store
 */

import { MLSError } from './errors.js';

/** A store held in memory; values are structured-cloned in and out like IndexedDB. */
export class MemoryStore {
  #records = new Map();

  async get(key) {
    return this.#records.has(key) ? structuredClone(this.#records.get(key)) : undefined;
  }

  async put(key, value) {
    this.#records.set(key, structuredClone(value));
  }

  async add(key, value) {
    if (this.#records.has(key)) return false;
    this.#records.set(key, structuredClone(value));
    return true;
  }

  async delete(key) {
    this.#records.delete(key);
  }

  async clear() {
    this.#records.clear();
  }

  async close() {}
}

const OBJECT_STORE = 'records';

/** @param {IDBRequest} request */
function settle(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * A store in one IndexedDB database (one object store with string keys).
 * The browser partitions IndexedDB by origin, as the MLS Web API explainer
 * asks of MLS state.
 */
export class IndexedDBStore {
  #name;
  #factory;
  /** @type {Promise<IDBDatabase>|null} */
  #db = null;

  /**
   * @param {{name?: string, indexedDB?: IDBFactory}} [options]
   */
  constructor({ name = 'mlscall-mls', indexedDB = globalThis.indexedDB } = {}) {
    if (indexedDB === undefined) throw new MLSError('unsupported', 'IndexedDB is not available here');
    this.#name = name;
    this.#factory = indexedDB;
  }

  #open() {
    if (this.#db === null) {
      const request = this.#factory.open(this.#name, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore(OBJECT_STORE);
      };
      this.#db = settle(request);
    }
    return this.#db;
  }

  /**
   * Runs `body(objectStore)` in one transaction and resolves when it commits.
   * @param {IDBTransactionMode} mode
   * @param {(store: IDBObjectStore) => IDBRequest} body
   */
  async #run(mode, body) {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(OBJECT_STORE, mode);
      let result;
      const request = body(tx.objectStore(OBJECT_STORE));
      request.onsuccess = () => { result = request.result; };
      request.onerror = (event) => {
        // a failed add() (ConstraintError) is an answer, not a failure
        if (request.error?.name === 'ConstraintError') {
          event.preventDefault();
          event.stopPropagation();
          result = false;
        }
      };
      const fail = () => reject(new MLSError('storage', `IndexedDB: ${tx.error?.name ?? request.error?.name ?? 'transaction failed'}`));
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => { if (result !== false) fail(); };
      tx.onabort = () => (result === false ? resolve(false) : fail());
    });
  }

  async get(key) {
    return this.#run('readonly', (s) => s.get(key));
  }

  async put(key, value) {
    await this.#run('readwrite', (s) => s.put(value, key));
  }

  async add(key, value) {
    const result = await this.#run('readwrite', (s) => s.add(value, key));
    return result !== false;
  }

  async delete(key) {
    await this.#run('readwrite', (s) => s.delete(key));
  }

  async clear() {
    await this.#run('readwrite', (s) => s.clear());
  }

  async close() {
    if (this.#db !== null) (await this.#db).close();
    this.#db = null;
  }
}

/** The default store: IndexedDB where there is one, memory elsewhere. */
export function defaultStore() {
  return globalThis.indexedDB !== undefined ? new IndexedDBStore() : new MemoryStore();
}
