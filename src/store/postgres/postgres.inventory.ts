import type { OrderItemRequest, Reservation, ReservationStatus } from '../../domain/order.js';
import { staleResult, type StockFence, type StockOp, type StockResult } from '../../workers/inventory.wire.js';
import { inTransaction, isBusy, run, type Pool, type Queryable } from './postgres.database.js';
import { plans } from './postgres.plans.js';

/*
 * The inventory transactions on PostgreSQL, each idempotent per order, with the same
 * outcomes as sqlite.inventory.ts. Each operation is one statement (postgres.plans.ts)
 * that locks what it touches and decides under those locks, so it is correct alone in
 * autocommit; a batch runs many in one transaction.
 *
 * Lock order, in every transaction: products by SKU first, then reservation rows by order
 * id. A batch locks all its products up front (`lockBatch`) and then runs its operations
 * sorted by order id, so concurrent batches on the worker threads, and the main thread's
 * `sell`, cannot wait for each other in a cycle. (The one way out of that order: a
 * reservation committed between `lockBatch` and the release of the same order brings SKUs
 * the batch did not lock. PostgreSQL then may detect a deadlock, which is `storage_busy`
 * for that batch and retried by its steps.)
 */

interface PriorRow {
  allowed: boolean;
  prior_status: ReservationStatus | null;
  prior_items: string | null;
}

const reservationOf = (orderId: string, status: ReservationStatus, items: string): Reservation => ({
  order_id: orderId,
  status,
  items: JSON.parse(items) as OrderItemRequest[],
});

/** How often an operation that lost a race for its reservation row is run again (it then sees the winner). */
const RACE_RETRIES = 3;

const fenceValues = (fence: StockFence | undefined) => (fence ? [fence.owner, fence.epoch] : [null, 0]);

export async function reserve(db: Queryable, orderId: string, items: readonly OrderItemRequest[], fence?: StockFence): Promise<StockResult> {
  const now = new Date().toISOString();
  const values = [orderId, items.map((i) => i.sku), items.map((i) => i.quantity), JSON.stringify(items), now, ...fenceValues(fence)];
  for (let attempt = 0; ; attempt++) {
    const [row] = await run<PriorRow & { short_sku: string | null; short_requested: number | null; short_available: number | null; inserted: boolean }>(
      db,
      plans.reserve,
      values,
    );
    if (!row!.allowed) return staleResult(orderId, fence);
    if (row!.prior_status === 'released') {
      return { ok: false, code: 'reservation_released', message: `order ${orderId} was released before its reservation ran` };
    }
    if (row!.prior_status !== null) return { ok: true, reservation: reservationOf(orderId, row!.prior_status, row!.prior_items!) };
    if (row!.short_sku !== null) {
      if (row!.short_available === null) return { ok: false, code: 'unknown_sku', message: `unknown SKU ${row!.short_sku}`, sku: row!.short_sku };
      return {
        ok: false,
        code: 'insufficient_stock',
        message: `insufficient stock for ${row!.short_sku}: requested ${row!.short_requested}, available ${row!.short_available}`,
        sku: row!.short_sku,
        requested: row!.short_requested!,
        available: row!.short_available,
      };
    }
    if (row!.inserted) return { ok: true, reservation: { order_id: orderId, status: 'reserved', items: [...items] } };
    // A release inserted the order's tombstone while this ran: run again to see it.
    if (attempt >= RACE_RETRIES) return { ok: false, code: 'storage_busy', message: `order ${orderId}: its reservation kept changing; try again` };
  }
}

export async function release(db: Queryable, orderId: string, fence?: StockFence): Promise<StockResult> {
  for (let attempt = 0; ; attempt++) {
    const [row] = await run<PriorRow & { tombstoned: boolean }>(db, plans.release, [orderId, new Date().toISOString(), ...fenceValues(fence)]);
    if (!row!.allowed) return staleResult(orderId, fence);
    const { prior_status: status, prior_items: items } = row!;
    if (status === 'committed') return { ok: false, code: 'step_failed', message: `order ${orderId} has shipped; its stock cannot be released` };
    if (status !== null) return { ok: true, reservation: reservationOf(orderId, 'released', items!) };
    if (row!.tombstoned) return { ok: true, reservation: null };
    // A reserve inserted the order's reservation while this ran: run again to release it.
    if (attempt >= RACE_RETRIES) return { ok: false, code: 'storage_busy', message: `order ${orderId}: its reservation kept changing; try again` };
  }
}

export async function sell(db: Queryable, orderId: string, fence?: StockFence): Promise<StockResult> {
  const [row] = await run<PriorRow>(db, plans.sell, [orderId, new Date().toISOString(), ...fenceValues(fence)]);
  if (!row!.allowed) return staleResult(orderId, fence);
  const { prior_status: status, prior_items: items } = row!;
  if (status === null || status === 'released') {
    return { ok: false, code: 'reservation_released', message: `order ${orderId} has no reservation to sell` };
  }
  return { ok: true, reservation: reservationOf(orderId, 'committed', items!) };
}

const runOne = (db: Queryable, op: StockOp) => (op.op === 'reserve' ? reserve(db, op.order_id, op.items, op.fence) : release(db, op.order_id, op.fence));

function failure(err: unknown): StockResult {
  if (isBusy(err) || (typeof err === 'object' && err !== null && 'code' in err && err.code === 'storage_busy')) {
    return { ok: false, code: 'storage_busy', message: 'the database was busy; try again' };
  }
  return { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
}

/**
 * Several reserves and releases in one transaction, results in the order of `ops`. The
 * operations run sorted by order id after one statement has locked every product the
 * batch touches, in SKU order. If the transaction fails for contention, every operation
 * gets `storage_busy` (their steps retry). If it fails for anything else, each operation
 * runs again on its own, so that one bad operation spoils no other (what SQLite's
 * savepoint per order gives, without paying two more round trips per order on the common
 * path).
 */
export async function batch(pool: Pool, ops: readonly StockOp[]): Promise<StockResult[]> {
  if (ops.length === 1) return [await runOne(pool, ops[0]!).catch(failure)];
  const order = ops.map((op, i) => ({ op, i })).sort((a, b) => (a.op.order_id < b.op.order_id ? -1 : a.op.order_id > b.op.order_id ? 1 : a.i - b.i));
  const skus = [...new Set(ops.flatMap((op) => (op.op === 'reserve' ? op.items.map((i) => i.sku) : [])))];
  const released = ops.filter((op) => op.op === 'release').map((op) => op.order_id);
  try {
    return await inTransaction(pool, async (client) => {
      await client.query({ name: plans.lockBatch.name, text: plans.lockBatch.text, values: [skus, released] });
      const results = new Array<StockResult>(ops.length);
      for (const { op, i } of order) results[i] = await runOne(client, op);
      return results;
    });
  } catch (err) {
    const whole = failure(err);
    if (!whole.ok && whole.code === 'storage_busy') return ops.map(() => whole);
    return Promise.all(ops.map((op) => runOne(pool, op).catch(failure)));
  }
}
