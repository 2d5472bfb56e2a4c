import type { OrderItemRequest, Reservation, ReservationStatus } from '../../domain/order.js';
import { staleResult, type StockFence, type StockOp, type StockResult } from '../../workers/inventory.wire.js';
import type { Db } from './sqlite.database.js';
import { createFenceCheck } from './sqlite.fence.js';

/**
 * The inventory transactions on one connection, each idempotent per order. With a `fence`
 * (only when loops share the file), each first checks, in its own write transaction, that
 * the fence still holds the order, and otherwise touches nothing and answers `fenced`.
 */
export interface SqliteInventory {
  reserve(orderId: string, items: readonly OrderItemRequest[], fence?: StockFence): StockResult;
  /** Releases the order's reservation, or leaves a tombstone so a late reserve cannot happen. */
  release(orderId: string, fence?: StockFence): StockResult;
  /** Turns the reservation into sold stock and marks the order shipped. */
  sell(orderId: string, fence?: StockFence): StockResult;
  /** Several reserves and releases (each with its own `fence`) in one transaction, each all-or-nothing on its own; results in order. */
  batch(ops: readonly StockOp[]): StockResult[];
}

interface ReservationRow {
  order_id: string;
  status: ReservationStatus;
  items: string;
}

/**
 * Reserve, release and sell, each one `BEGIN IMMEDIATE` transaction: the write lock is
 * taken before the stock is read, so concurrent orders on the same SKU (from any thread)
 * serialise and stock never goes below zero. The `reservations` row per order makes each
 * operation idempotent (sell also marks the order shipped), and its `released` tombstone
 * makes a release that overtakes its reserve (a cancel while the reserve task is queued)
 * stop that reserve from happening.
 */
export function createSqliteInventory(db: Db): SqliteInventory {
  const getReservation = db.prepare<[string], ReservationRow>('SELECT order_id, status, items FROM reservations WHERE order_id = ?');
  const getStock = db.prepare<[string], { available: number }>('SELECT available FROM products WHERE sku = ?');
  const take = db.prepare('UPDATE products SET available = available - ?, reserved = reserved + ?, updated_at = ? WHERE sku = ?');
  const giveBack = db.prepare('UPDATE products SET available = available + ?, reserved = reserved - ?, updated_at = ? WHERE sku = ?');
  const moveToSold = db.prepare('UPDATE products SET sold = sold + ?, reserved = reserved - ?, updated_at = ? WHERE sku = ?');
  const insertReservation = db.prepare(
    'INSERT INTO reservations (order_id, status, items, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
  );
  const setStatus = db.prepare('UPDATE reservations SET status = ?, updated_at = ? WHERE order_id = ?');
  const markShipped = db.prepare(`UPDATE orders SET status = 'shipped', updated_at = ? WHERE id = ? AND status = 'placed'`);
  const holds = createFenceCheck(db);

  const toReservation = (row: ReservationRow): Reservation => ({
    order_id: row.order_id,
    status: row.status,
    items: JSON.parse(row.items) as OrderItemRequest[],
  });

  const reserve = db.transaction((orderId: string, items: readonly OrderItemRequest[], fence?: StockFence): StockResult => {
    if (!holds(orderId, fence)) return staleResult(orderId, fence);
    const existing = getReservation.get(orderId);
    if (existing) {
      if (existing.status === 'released') {
        return { ok: false, code: 'reservation_released', message: `order ${orderId} was released before its reservation ran` };
      }
      return { ok: true, reservation: toReservation(existing) };
    }
    // Check every line before touching any: all or nothing.
    for (const item of items) {
      const stock = getStock.get(item.sku);
      if (!stock) return { ok: false, code: 'unknown_sku', message: `unknown SKU ${item.sku}`, sku: item.sku };
      if (stock.available < item.quantity) {
        return {
          ok: false,
          code: 'insufficient_stock',
          message: `insufficient stock for ${item.sku}: requested ${item.quantity}, available ${stock.available}`,
          sku: item.sku,
          requested: item.quantity,
          available: stock.available,
        };
      }
    }
    const now = new Date().toISOString();
    for (const item of items) take.run(item.quantity, item.quantity, now, item.sku);
    insertReservation.run(orderId, 'reserved', JSON.stringify(items), now, now);
    return { ok: true, reservation: { order_id: orderId, status: 'reserved', items: [...items] } };
  });

  const release = db.transaction((orderId: string, fence?: StockFence): StockResult => {
    if (!holds(orderId, fence)) return staleResult(orderId, fence);
    const now = new Date().toISOString();
    const existing = getReservation.get(orderId);
    if (!existing) {
      insertReservation.run(orderId, 'released', '[]', now, now);
      return { ok: true, reservation: null };
    }
    if (existing.status === 'committed') {
      return { ok: false, code: 'step_failed', message: `order ${orderId} has shipped; its stock cannot be released` };
    }
    if (existing.status === 'reserved') {
      const reservation = toReservation(existing);
      for (const item of reservation.items) giveBack.run(item.quantity, item.quantity, now, item.sku);
      setStatus.run('released', now, orderId);
    }
    return { ok: true, reservation: { ...toReservation(existing), status: 'released' } };
  });

  const sell = db.transaction((orderId: string, fence?: StockFence): StockResult => {
    if (!holds(orderId, fence)) return staleResult(orderId, fence);
    const existing = getReservation.get(orderId);
    if (!existing || existing.status === 'released') {
      return { ok: false, code: 'reservation_released', message: `order ${orderId} has no reservation to sell` };
    }
    if (existing.status === 'reserved') {
      const now = new Date().toISOString();
      for (const item of toReservation(existing).items) moveToSold.run(item.quantity, item.quantity, now, item.sku);
      setStatus.run('committed', now, orderId);
      markShipped.run(now, orderId);
    }
    return { ok: true, reservation: { ...toReservation(existing), status: 'committed' } };
  });

  // Many operations in one write transaction (one lock acquisition); each runs in its own
  // savepoint, so every order stays all-or-nothing and one failing operation spoils no other.
  const batch = db.transaction((ops: readonly StockOp[]): StockResult[] =>
    ops.map((op) => {
      try {
        return op.op === 'reserve' ? reserve(op.order_id, op.items, op.fence) : release(op.order_id, op.fence);
      } catch (err) {
        return { ok: false, code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
      }
    }),
  );

  return {
    reserve: (orderId, items, fence) => reserve.immediate(orderId, items, fence),
    release: (orderId, fence) => release.immediate(orderId, fence),
    sell: (orderId, fence) => sell.immediate(orderId, fence),
    batch: (ops) => batch.immediate(ops),
  };
}
