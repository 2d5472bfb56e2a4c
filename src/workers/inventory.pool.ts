import { Piscina } from 'piscina';
import { OrderError } from '../domain/errors.js';
import type { OrderItemRequest, Reservation } from '../domain/order.js';
import type { StockResult } from '../store/ports.js';
import type { InventoryWorkerData, OrderTask, ReserveTask } from './inventory.worker.js';

/** Inventory as the order steps see it; failures arrive as `OrderError` with the worker's code. */
export interface Inventory {
  reserve(orderId: string, items: readonly OrderItemRequest[]): Promise<Reservation>;
  release(orderId: string): Promise<Reservation | null>;
  commit(orderId: string): Promise<Reservation>;
}

export interface InventoryPool extends Inventory {
  readonly threads: number;
  close(): Promise<void>;
}

export interface InventoryPoolOptions {
  dbPath: string;
  threads: number;
  busyTimeoutMs?: number;
  /** Another worker module with the same exports (tests use one that crashes on cue). */
  workerFile?: string;
}

/**
 * Piscina needs JavaScript for its worker: the compiled build runs `inventory.worker.js`;
 * when this module itself runs from TypeScript (tests, `npm run dev`), a small bootstrap
 * loads the `.ts` worker through tsx.
 */
function workerFile(): string {
  const fromSource = import.meta.url.endsWith('.ts');
  return new URL(fromSource ? './inventory.worker.dev.mjs' : './inventory.worker.js', import.meta.url).href;
}

export function createInventoryPool(options: InventoryPoolOptions): InventoryPool {
  const workerData: InventoryWorkerData = { dbPath: options.dbPath, busyTimeoutMs: options.busyTimeoutMs ?? 5000 };
  const pool = new Piscina({
    filename: options.workerFile ?? workerFile(),
    workerData,
    minThreads: options.threads,
    maxThreads: options.threads,
  });

  async function call(name: 'reserve' | 'release' | 'commit', task: ReserveTask | OrderTask): Promise<Reservation | null> {
    let result: StockResult;
    try {
      result = (await pool.run(task, { name })) as StockResult;
    } catch (err) {
      // The worker thread died (or the pool is closing): the task may or may not have
      // committed, and it is idempotent, so the step is retried.
      throw new OrderError('worker_crashed', `inventory worker failed during ${name}: ${(err as Error).message}`, { cause: err });
    }
    if (result.ok) return result.reservation;
    const { ok: _ok, code, message, ...details } = result;
    throw new OrderError(code, message, { details });
  }

  return {
    threads: options.threads,
    reserve: async (orderId, items) => (await call('reserve', { order_id: orderId, items: [...items] }))!,
    release: (orderId) => call('release', { order_id: orderId }),
    commit: async (orderId) => (await call('commit', { order_id: orderId }))!,
    close: () => pool.destroy(),
  };
}
