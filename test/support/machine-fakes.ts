import { createActor, fromPromise, type Snapshot } from 'xstate';
import { OrderError, type StepErrorCode } from '../../src/domain/errors.js';
import type { Notification, Order, Payment, Reservation, Shipment } from '../../src/domain/order.js';
import { orderMachine, type OrderInput, type WaitInput } from '../../src/machines/order.machine.js';

export type StepName =
  | 'placeOrder'
  | 'reserveStock'
  | 'capturePayment'
  | 'shipOrder'
  | 'sendNotifications'
  | 'refundPayment'
  | 'releaseStock'
  | 'cancelOrder';

/** What a fake step does on each call: succeed, fail with a code, or hang until stopped. */
export type Outcome = 'ok' | 'hang' | StepErrorCode;

export interface FakeScript {
  /** Outcomes per call, in order; the last one repeats. Default: always 'ok'. */
  [step: string]: Outcome[] | undefined;
}

export function orderInput(overrides: Partial<OrderInput> = {}): OrderInput {
  const created = new Date();
  return {
    order_id: 'ord_test',
    user_id: 'alice',
    request: {
      items: [{ sku: 'SKU-A', quantity: 2 }],
      payment: { token: 'tok_visa' },
      shipping: { name: 'A', line1: 'B', city: 'C', postal_code: 'D', country: 'DE' },
    },
    created_at: created.toISOString(),
    deadline_at: new Date(created.getTime() + 60_000).toISOString(),
    retry: { max_attempts: 3, base_ms: 1, max_delay_ms: 5 },
    ...overrides,
  };
}

/**
 * The order machine with every step replaced by a scripted fake (through `provide()`,
 * as production wires the real ones). `calls` records each step invocation in order.
 */
export function fakeMachine(script: FakeScript = {}, options: { deadline?: 'never' | 'now' } = {}) {
  const calls: StepName[] = [];
  const counts = new Map<string, number>();

  function fake<O>(name: StepName, output: (input: any) => O) {
    return fromPromise<O, any>(async ({ input, signal }) => {
      calls.push(name);
      const n = counts.get(name) ?? 0;
      counts.set(name, n + 1);
      const outcomes = script[name] ?? ['ok'];
      const outcome = outcomes[Math.min(n, outcomes.length - 1)]!;
      if (outcome === 'hang') {
        return new Promise<O>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
      }
      if (outcome !== 'ok') throw new OrderError(outcome, `fake ${name} failed with ${outcome}`);
      return output(input);
    });
  }

  const machine = orderMachine.provide({
    actors: {
      placeOrder: fake<Order>('placeOrder', (i) => ({
        id: i.order_id,
        user_id: i.user_id,
        items: i.request.items.map((x: any) => ({ ...x, unit_price_cents: 500 })),
        total_cents: 1000,
        currency: 'USD',
        created_at: i.created_at,
      })),
      reserveStock: fake<Reservation>('reserveStock', (i) => ({ order_id: i.order_id, status: 'reserved', items: i.items })),
      releaseStock: fake<Reservation | null>('releaseStock', (i) => ({ order_id: i.order_id, status: 'released', items: i.items })),
      capturePayment: fake<Payment>('capturePayment', (i) => ({
        payment_id: 'ch_1',
        order_id: i.order_id,
        status: 'captured',
        amount_cents: i.amount_cents,
        refunded_cents: 0,
      })),
      refundPayment: fake<Payment | null>('refundPayment', (i) => ({
        payment_id: 'ch_1',
        order_id: i.order_id,
        status: 'refunded',
        amount_cents: 1000,
        refunded_cents: 1000,
      })),
      shipOrder: fake<Shipment>('shipOrder', (i) => ({ shipment_id: 'shp_1', order_id: i.order_id, carrier: 'fake', tracking_number: 'T1', country: 'DE' })),
      sendNotifications: fake<Notification[]>('sendNotifications', () => []),
      cancelOrder: fake<void>('cancelOrder', () => undefined),
      awaitRetry: fromPromise<void, WaitInput>(async () => undefined),
      awaitDeadline: fromPromise<void, WaitInput>(({ signal }) =>
        options.deadline === 'now'
          ? new Promise((resolve) => setTimeout(resolve, 5))
          : new Promise((resolve) => signal.addEventListener('abort', () => resolve())),
      ),
    },
  });
  return { machine, calls };
}

/** Runs an actor of the fake machine until it settles (final or parked). */
export async function runToSettled(
  machine: ReturnType<typeof fakeMachine>['machine'],
  input: OrderInput = orderInput(),
  opts: { snapshot?: Snapshot<unknown>; onStart?: (actor: any) => void } = {},
) {
  const actor = createActor(machine, opts.snapshot ? { snapshot: opts.snapshot, input } : { input });
  const settled = new Promise<void>((resolve, reject) => {
    actor.subscribe({
      next: (s) => {
        if (s.status === 'done' || s.hasTag('parked')) resolve();
      },
      error: reject,
    });
  });
  actor.start();
  opts.onStart?.(actor);
  await Promise.race([settled, new Promise((_, reject) => setTimeout(() => reject(new Error('order did not settle')), 5_000))]);
  return actor;
}
