import { workerData } from 'node:worker_threads';
import type { OrderItemRequest } from '../domain/order.js';
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

export interface ReserveTask {
  order_id: string;
  items: OrderItemRequest[];
}

export interface OrderTask {
  order_id: string;
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

function run(op: () => StockResult): StockResult {
  try {
    return retryWhileBusy(op, busyTimeoutMs);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return { ok: false, code: 'storage_busy', message: 'the database was busy; try again' };
    }
    return { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
  }
}

export function reserve(task: ReserveTask): StockResult {
  return run(() => inventory().reserve(task.order_id, task.items));
}

export function release(task: OrderTask): StockResult {
  return run(() => inventory().release(task.order_id));
}

export function commit(task: OrderTask): StockResult {
  return run(() => inventory().commit(task.order_id));
}

export interface BatchTask {
  ops: StockOp[];
}

/** Many orders' operations in one transaction: what the pool sends under load. */
export function batch(task: BatchTask): StockResult[] {
  try {
    const inv = inventory();
    return retryWhileBusy(() => inv.batch(task.ops), busyTimeoutMs);
  } catch (err) {
    const failed = run(() => {
      throw err;
    });
    return task.ops.map(() => failed);
  }
}
