/**
 * The order machine's steps, answering at once with realistic outputs: what the floor
 * benchmarks run the real machine with (no HTTP, SQLite or pool behind them).
 */
import { fromPromise } from 'xstate';
import type { Notification, Order, Payment, Reservation, Shipment } from '../src/domain/order.js';
import type { OrderInput } from '../src/machines/order.machine.js';

export const instant = <T>(output: (input: any) => T) => fromPromise<T, any>(async ({ input }) => output(input));

/** Every step succeeds at once; the waits stay the machine's real timer actors. */
export const instantSteps = {
  placeOrder: instant<Order>((i) => ({
    id: i.order_id,
    user_id: i.user_id,
    items: i.request.items.map((x: { sku: string; quantity: number }) => ({ ...x, unit_price_cents: 500 })),
    total_cents: 1000,
    currency: 'USD',
    created_at: i.created_at,
  })),
  reserveStock: instant<Reservation>((i) => ({ order_id: i.order_id, status: 'reserved', items: i.items })),
  capturePayment: instant<Payment>((i) => ({ payment_id: 'ch_1', order_id: i.order_id, status: 'captured', amount_cents: i.amount_cents, refunded_cents: 0 })),
  shipOrder: instant<Shipment>((i) => ({ shipment_id: 'shp_1', order_id: i.order_id, carrier: 'simulated-post', tracking_number: 'SP1', country: 'DE' })),
  sendNotifications: instant<Notification[]>((i) =>
    (['order_confirmation', 'payment_receipt', 'shipment'] as const).map((kind, n) => ({
      notification_id: `ntf_${n}`,
      order_id: i.order_id,
      kind,
      recipient: i.user_id,
      created_at: new Date().toISOString(),
    })),
  ),
};

let seq = 0;

/** A two-item order with a 30 s deadline, a fresh id each time. */
export function orderInput(): OrderInput {
  const created = new Date();
  return {
    order_id: `ord_floor_${seq++}`,
    user_id: 'bench-user',
    request: {
      items: [
        { sku: 'BENCH-0001', quantity: 1 },
        { sku: 'BENCH-0002', quantity: 1 },
      ],
      payment: { token: 'tok_visa' },
      shipping: { name: 'Bench User', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
    },
    created_at: created.toISOString(),
    deadline_at: new Date(created.getTime() + 30_000).toISOString(),
    retry: { max_attempts: 3, base_ms: 100, max_delay_ms: 30_000 },
  };
}

