import { workerData } from 'node:worker_threads';
import type { Pool } from '../store/postgres/postgres.database.js';
import type { SqliteInventory } from '../store/sqlite/sqlite.inventory.js';
import type { BatchTask, StockResult } from './inventory.wire.js';

/*
 * Runs on Piscina worker threads. Each thread opens its own connection to the store named
 * in `workerData`: the same SQLite file, or the same PostgreSQL database. Every task is one
 * transaction. Results are plain data with a `code`: error classes do not survive the trip
 * back to the main thread.
 *
 * On SQLite a task runs synchronously (better-sqlite3 blocks the thread, which is what the
 * thread is for); on PostgreSQL it is async, waiting on the network, and Piscina runs one
 * task at a time per thread either way, so each thread needs one connection.
 */

export type InventoryWorkerStore =
  | { kind: 'sqlite'; dbPath: string; busyTimeoutMs: number }
  | { kind: 'postgres'; url: string; lockTimeoutMs: number };

export interface InventoryWorkerData {
  store: InventoryWorkerStore;
}

type Batch = (task: BatchTask) => StockResult[] | Promise<StockResult[]>;

let run: Batch | undefined;

/** Opens this thread's connection on first use; only the chosen store's driver is loaded. */
async function open(store: InventoryWorkerStore): Promise<Batch> {
  if (store.kind === 'sqlite') {
    const { isBusy, openDatabase, retryWhileBusy } = await import('../store/sqlite/sqlite.database.js');
    const { createSqliteInventory } = await import('../store/sqlite/sqlite.inventory.js');
    // Lock waits are retried in short pauses (retryWhileBusy), not by SQLite's busy handler.
    const inv: SqliteInventory = createSqliteInventory(openDatabase(store.dbPath, { busyTimeoutMs: 0 }));
    return (task) => {
      try {
        return retryWhileBusy(() => inv.batch(task.ops), store.busyTimeoutMs);
      } catch (err) {
        const result: StockResult = isBusy(err)
          ? { ok: false, code: 'storage_busy', message: 'the database was busy; try again' }
          : { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
        return task.ops.map(() => result);
      }
    };
  }
  const { openPool } = await import('../store/postgres/postgres.database.js');
  const inventory = await import('../store/postgres/postgres.inventory.js');
  // A pool of one: the thread runs one task at a time, and a lost connection is replaced.
  const pool: Pool = openPool({ url: store.url, max: 1, lockTimeoutMs: store.lockTimeoutMs, applicationName: 'ordersaga-inventory' });
  return (task) => inventory.batch(pool, task.ops);
}

const ready = open((workerData as InventoryWorkerData).store).then((batch) => (run = batch));
ready.catch(() => undefined); // reported by the first task instead of crashing the thread at load

/** The pool's one task: the inventory operations of one event-loop turn, in one transaction. */
export function batch(task: BatchTask): StockResult[] | Promise<StockResult[]> {
  if (run) return run(task);
  return ready.then((b) => b(task));
}
