import { workerData } from 'node:worker_threads';
import { isBusy, openDatabase, retryWhileBusy } from '../store/sqlite/sqlite.database.js';
import { createSqliteInventory, type SqliteInventory } from '../store/sqlite/sqlite.inventory.js';
import type { BatchTask, StockResult } from './inventory.wire.js';

/*
 * Runs on Piscina worker threads. Each thread opens its own connection to the same
 * SQLite file; every task is one transaction. Results are plain data with a `code`:
 * error classes do not survive the trip back to the main thread.
 */

export interface InventoryWorkerData {
  dbPath: string;
  busyTimeoutMs: number;
}

let store: SqliteInventory | undefined;
let busyTimeoutMs = 5000;

function inventory(): SqliteInventory {
  if (!store) {
    const data = workerData as InventoryWorkerData;
    // Lock waits are retried in short pauses (retryWhileBusy), not by SQLite's busy handler.
    store = createSqliteInventory(openDatabase(data.dbPath, { busyTimeoutMs: 0 }));
    busyTimeoutMs = data.busyTimeoutMs;
  }
  return store;
}

/** A whole-batch failure as plain data (lock timeout or an unexpected error). */
function failure(err: unknown): StockResult {
  if (isBusy(err)) {
    return { ok: false, code: 'storage_busy', message: 'the database was busy; try again' };
  }
  return { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
}

/** The pool's one task: the inventory operations of one event-loop turn, in one transaction. */
export function batch(task: BatchTask): StockResult[] {
  try {
    const inv = inventory();
    return retryWhileBusy(() => inv.batch(task.ops), busyTimeoutMs);
  } catch (err) {
    const result = failure(err);
    return task.ops.map(() => result);
  }
}
