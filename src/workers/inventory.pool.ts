import { Piscina } from 'piscina';
import { OrderError } from '../domain/errors.js';
import { currentFence, staleEpoch } from '../store/fence.js';
import type { Inventory } from '../store/store.ports.js';
import type { InventoryWorkerData, InventoryWorkerStore } from './inventory.worker.js';
import { unwrapStockResult, type BatchTask, type StockOp, type StockResult } from './inventory.wire.js';

/** Reserve and release on worker threads; failures arrive as `OrderError` with the worker's code. */
export interface InventoryPool extends Pick<Inventory, 'reserve' | 'release'> {
  readonly threads: number;
  /** For /metrics: tasks waiting for a thread, the threads' busy share since start (0..1), live threads. */
  stats(): { queueSize: number; utilization: number; threads: number };
  /** For /readyz: false once closed or when no worker thread is running. */
  readonly alive: boolean;
  close(): Promise<void>;
}

/** Which store the worker threads open, each on its own connection. */
export type InventoryStoreOptions = { kind: 'sqlite'; dbPath: string; busyTimeoutMs?: number } | { kind: 'postgres'; url: string; lockTimeoutMs?: number };

export interface InventoryPoolOptions {
  store: InventoryStoreOptions;
  threads: number;
  /** Awaited before each batch is sent: lets pending main-thread writes commit first. */
  beforeDispatch?: () => Promise<void>;
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
  const store: InventoryWorkerStore =
    options.store.kind === 'sqlite'
      ? { kind: 'sqlite', dbPath: options.store.dbPath, busyTimeoutMs: options.store.busyTimeoutMs ?? 5000 }
      : { kind: 'postgres', url: options.store.url, lockTimeoutMs: options.store.lockTimeoutMs ?? 5000 };
  const workerData: InventoryWorkerData = { store };
  const pool = new Piscina({
    filename: options.workerFile ?? workerFile(),
    workerData,
    minThreads: options.threads,
    maxThreads: options.threads,
  });

  // Operations asked for during one event-loop turn travel as one task and run in one
  // transaction: one worker round trip and one write-lock acquisition for many orders.
  let queued: Array<{ op: StockOp; resolve: (r: StockResult) => void; reject: (e: unknown) => void }> = [];
  const MAX_BATCH = 256;

  async function dispatch(): Promise<void> {
    const items = queued;
    queued = [];
    await options.beforeDispatch?.().catch(() => undefined);
    for (let i = 0; i < items.length; i += MAX_BATCH) {
      const chunk = items.slice(i, i + MAX_BATCH);
      const task: BatchTask = { ops: chunk.map((it) => it.op) };
      pool.run(task, { name: 'batch' }).then(
        (results: StockResult[]) => chunk.forEach((it, j) => it.resolve(results[j]!)),
        (err: unknown) => chunk.forEach((it) => it.reject(err)),
      );
    }
  }

  async function call(op: StockOp) {
    // The step's fence, read now (in the step's async context), travels with the operation.
    const fence = currentFence();
    if (fence) op.fence = { owner: fence.owner, epoch: fence.epoch };
    let result: StockResult;
    try {
      result = await new Promise<StockResult>((resolve, reject) => {
        if (queued.length === 0) setImmediate(() => void dispatch());
        queued.push({ op, resolve, reject });
      });
    } catch (err) {
      // The worker thread died (or the pool is closing): the task may or may not have
      // committed, and it is idempotent, so the step is retried.
      throw new OrderError('worker_crashed', `inventory worker failed during ${op.op}: ${(err as Error).message}`, { cause: err });
    }
    if (!result.ok && result.fenced && fence) throw staleEpoch(op.order_id, fence);
    return unwrapStockResult(result);
  }

  let closed = false;
  return {
    threads: options.threads,
    stats: () => ({ queueSize: pool.queueSize, utilization: pool.utilization, threads: pool.threads.length }),
    get alive() {
      return !closed && pool.threads.length > 0;
    },
    reserve: async (orderId, items) => (await call({ op: 'reserve', order_id: orderId, items: [...items] }))!,
    release: (orderId) => call({ op: 'release', order_id: orderId }),
    close: () => {
      closed = true;
      return pool.destroy();
    },
  };
}
