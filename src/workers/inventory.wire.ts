import { OrderError, type StepErrorCode } from '../domain/errors.js';
import type { OrderItemRequest, Reservation } from '../domain/order.js';

/*
 * What travels between the inventory pool and its worker threads: plain data, since error
 * classes do not survive the trip. One task carries the operations of one event-loop turn.
 */

/** The step's fence, as plain data (see src/store/fence.ts); absent: unfenced. */
export interface StockFence {
  owner: string;
  epoch: number;
}

export type StockOp =
  | { op: 'reserve'; order_id: string; items: OrderItemRequest[]; fence?: StockFence }
  | { op: 'release'; order_id: string; fence?: StockFence };

export type StockResult =
  | { ok: true; reservation: Reservation | null }
  /** `fenced`: refused because another owner holds the order (stale epoch). */
  | { ok: false; code: StepErrorCode; message: string; sku?: string; requested?: number; available?: number; fenced?: boolean };

export interface BatchTask {
  ops: StockOp[];
}

/** What an operation refused by its fence answers; the pool turns it into `staleEpoch` for the step. */
export const staleResult = (orderId: string, fence: StockFence | undefined): StockResult => ({
  ok: false,
  code: 'step_failed',
  message: `stale_epoch: order ${orderId} is no longer owned by ${fence?.owner} at epoch ${fence?.epoch}`,
  fenced: true,
});

/** A stock result as the order steps want it: the reservation, or an `OrderError` with its code. */
export function unwrapStockResult(result: StockResult): Reservation | null {
  if (result.ok) return result.reservation;
  const { ok: _ok, code, message, ...details } = result;
  throw new OrderError(code, message, { details });
}
