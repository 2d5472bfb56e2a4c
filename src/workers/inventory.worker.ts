import { workerData } from 'node:worker_threads';
import { openDatabase, retryWhileBusy } from '../store/database.js';
import { createSqliteInventory } from '../store/inventory.sqlite.js';
import type { InventoryStore, StockOp, StockResult } from '../store/ports.js';

/*
 * Runs on Piscina worker threads. Each thread opens its own connection to the same
 * SQLite file; every task is one transaction. Results are plain data with a `code`:
 * error classes do not survive the trip back to the main thread.
 */

export interface InventoryWorkerData {
  dbPath: string;
  busyTimeoutMs: number;
}

let store: InventoryStore | undefined;
let busyTimeoutMs = 5000;

function inventory(): InventoryStore {
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
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return { ok: false, code: 'storage_busy', message: 'the database was busy; try again' };
  }
  return { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
}

export interface BatchTask {
  ops: StockOp[];
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
