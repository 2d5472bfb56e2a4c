import { z } from 'zod';
import { STEP_ERROR_CODES } from '../domain/errors.js';
import { PIPELINE_STATUSES, STAGE_NAMES, type PipelineStatus } from '../domain/order.js';
import type { OrderContext } from '../machines/order.machine.js';
import type { OrderStateStore } from '../store/store.ports.js';

/*
 * What the API shows of an order: computed once, when a state is committed, and stored
 * beside the snapshot, so reads never parse an XState snapshot. The schema is the routes'
 * response type and documents the JSON.
 */

const stageName = z.enum(STAGE_NAMES);
const isoTime = z.string();

export const pipelineStatusSchema = z.enum(PIPELINE_STATUSES);

const stepErrorCode = z.enum(STEP_ERROR_CODES);

export const stepErrorSchema = z.object({
  code: stepErrorCode,
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const orderViewSchema = z.object({
  order_id: z.string(),
  user_id: z.string(),
  status: pipelineStatusSchema,
  /** The step the order is at, e.g. `paying`, or its final state. */
  state: z.string(),
  order: z.object({
    id: z.string(),
    user_id: z.string(),
    /** `unit_price_cents` and `total_cents` are null until the order is priced (placed). */
    items: z.array(z.object({ sku: z.string(), quantity: z.int(), unit_price_cents: z.int().nullable() })),
    total_cents: z.int().nullable(),
    currency: z.string(),
    created_at: isoTime,
  }),
  inventory_items: z.array(
    z.object({
      sku: z.string(),
      quantity: z.int(),
      status: z.enum(['not_reserved', 'reserving', 'reserved', 'released', 'committed']),
    }),
  ),
  payment_result: z
    .object({
      payment_id: z.string(),
      order_id: z.string(),
      status: z.enum(['captured', 'refunded', 'declined', 'voided']),
      amount_cents: z.int(),
      refunded_cents: z.int(),
    })
    .nullable(),
  shipment: z
    .object({ shipment_id: z.string(), order_id: z.string(), carrier: z.string(), tracking_number: z.string(), country: z.string() })
    .nullable(),
  notifications: z.array(
    z.object({
      notification_id: z.string(),
      order_id: z.string(),
      kind: z.enum(['order_confirmation', 'payment_receipt', 'shipment']),
      recipient: z.string(),
      created_at: isoTime,
    }),
  ),
  stages: z.array(
    z.object({
      name: stageName,
      status: z.enum(['pending', 'running', 'succeeded', 'failed', 'compensated', 'skipped']),
      started_at: isoTime.nullable(),
      ended_at: isoTime.nullable(),
      attempts: z.int(),
      error: stepErrorSchema.nullable(),
    }),
  ),
  errors: z.array(z.object({ stage: stageName, code: stepErrorCode, message: z.string() })),
  failure: z.object({ stage: stageName, code: stepErrorCode, message: z.string() }).nullable(),
  deadline_at: isoTime,
  /** Time from creation to the final state (so far, while the order is not final), e.g. `0.412s`. */
  processing_time: z.string(),
  processing_time_ms: z.int(),
  created_at: isoTime,
  updated_at: isoTime,
});

export type OrderView = z.infer<typeof orderViewSchema>;

/** The parts of a committed state the view needs besides the machine's context. */
export interface ViewMeta {
  status: PipelineStatus;
  state: string;
  updated_at: string;
}

/** The view of a committed order state. */
export function toOrderView(ctx: OrderContext, meta: ViewMeta, now: number = Date.now()): OrderView {
  // Shipping turns the reservation into sold stock inside the fulfilment step, so that stage tells.
  const reservationStatus =
    ctx.stages.fulfillment.status === 'succeeded'
      ? 'committed'
      : (ctx.reservation?.status ?? (ctx.stages.reservation.status === 'running' ? 'reserving' : 'not_reserved'));
  const ms = elapsedMs(ctx.created_at, ctx.finished_at ? Date.parse(ctx.finished_at) : now);
  return {
    order_id: ctx.order_id,
    user_id: ctx.user_id,
    status: meta.status,
    state: meta.state,
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
    processing_time: formatSeconds(ms),
    processing_time_ms: ms,
    created_at: ctx.created_at,
    updated_at: meta.updated_at,
  };
}

/**
 * A stored view as of `now`: an order that is not final is still taking time, so its
 * processing time runs on from its creation (as it did when views were built per read).
 */
export function viewAsOf(view: OrderView, now: number = Date.now()): OrderView {
  if (view.status !== 'processing' && view.status !== 'compensation_failed') return view;
  const ms = elapsedMs(view.created_at, now);
  return { ...view, processing_time: formatSeconds(ms), processing_time_ms: ms };
}

function elapsedMs(createdAt: string, until: number): number {
  return Math.max(0, until - Date.parse(createdAt));
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

/**
 * Rows written before views were stored (release 0.1.0) get theirs from their snapshot,
 * once, at start. Returns how many.
 */
export async function fillMissingViews(states: Pick<OrderStateStore, 'listMissingViews' | 'saveViews'>): Promise<number> {
  let filled = 0;
  for (;;) {
    const rows = await states.listMissingViews(500);
    if (rows.length === 0) return filled;
    const views = rows.map((row) => {
      const { context } = JSON.parse(row.snapshot) as { context: OrderContext };
      return toOrderView(context, { status: row.status, state: row.state, updated_at: row.updated_at });
    });
    await states.saveViews(views);
    filled += views.length;
  }
}
