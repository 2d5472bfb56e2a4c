import type { Snapshot } from 'xstate';
import { STAGE_NAMES } from '../domain/order.js';
import type { OrderContext } from '../machines/order.machine.js';
import type { SnapshotRecord } from '../store/ports.js';

/**
 * The pipeline result the API returns for an order (status, sync answer and list items).
 * `context` is the order's live context when the caller has it; otherwise the record's is parsed.
 */
export function toPipelineResult(record: SnapshotRecord, context?: OrderContext, now: number = Date.now()) {
  const ctx = context ?? (JSON.parse(record.snapshot) as Snapshot<unknown> & { context: OrderContext }).context;
  const created = Date.parse(ctx.created_at);
  const ended = ctx.finished_at ? Date.parse(ctx.finished_at) : now;
  const ms = Math.max(0, ended - created);
  // Shipping commits the reservation inside the fulfilment step, so that stage tells.
  const reservationStatus =
    ctx.stages.fulfillment.status === 'succeeded'
      ? 'committed'
      : (ctx.reservation?.status ?? (ctx.stages.reservation.status === 'running' ? 'reserving' : 'not_reserved'));
  return {
    order_id: record.order_id,
    user_id: record.user_id,
    status: record.status,
    state: record.state,
    order: ctx.order ?? {
      id: ctx.order_id,
      user_id: ctx.user_id,
      items: ctx.request.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unit_price_cents: null })),
      total_cents: null,
      currency: 'USD',
      created_at: ctx.created_at,
    },
    inventory_items: ctx.request.items.map((i) => ({ sku: i.sku, quantity: i.quantity, status: reservationStatus })),
    payment_result: ctx.payment,
    shipment: ctx.shipment,
    notifications: ctx.notifications,
    stages: STAGE_NAMES.map((name) => ctx.stages[name]),
    errors: ctx.errors,
    failure: ctx.failure,
    deadline_at: ctx.deadline_at,
    processing_time: `${(ms / 1000).toFixed(3)}s`,
    processing_time_ms: ms,
    created_at: record.created_at,
    updated_at: record.updated_at,
  };
}

export type PipelineResult = ReturnType<typeof toPipelineResult>;
