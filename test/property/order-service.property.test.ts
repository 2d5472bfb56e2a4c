import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError, type StepErrorCode } from '../../src/domain/errors.js';
import { SimulatedCarrier, type Carrier } from '../../src/gateways/carrier.gateway.js';
import { StoreNotifier, type Notifier } from '../../src/gateways/notifier.gateway.js';
import { SimulatedPaymentGateway, type PaymentGateway } from '../../src/gateways/payment.gateway.js';
import type { Inventory } from '../../src/store/store.ports.js';
import { committed, ledger } from '../support/ledger.js';
import { orderBody, startTestService, TEST_STORE, type TestService } from '../support/service.js';

/*
 * Property: whatever each step does (succeed, fail for good, fail transiently k times, be
 * slow) and whenever the customer cancels, every order ends final and stock and money add
 * up. Faults are injected by wrapping the real gateway, carrier, notifier and pool-backed
 * inventory behind the interfaces the service uses; nothing in the code under test knows.
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FC_SEED=<seed> FC_PATH=<path> npx vitest run test/property
 */

type Fault = { kind: 'ok' } | { kind: 'fail' } | { kind: 'transient'; times: number } | { kind: 'slow'; ms: number };
type Step = 'reserve' | 'release' | 'capture' | 'refund' | 'ship' | 'notify';

interface OrderPlan {
  items: Array<{ sku: number; quantity: number }>;
  faults: Record<Step, Fault>;
  cancelAfterMs: number | undefined;
}

const SKUS_PER_RUN = 3;
// 200 runs on SQLite; 100 on PostgreSQL, where each run costs about three times as much
// (every effect a durable commit of its own). PROPERTY_RUNS sets both.
const RUNS = Number(process.env.PROPERTY_RUNS ?? (TEST_STORE === 'postgres' ? 100 : 200));

const forwardFault: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Fault>({ kind: 'ok' }) },
  { weight: 1, arbitrary: fc.constant<Fault>({ kind: 'fail' }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }).map<Fault>((times) => ({ kind: 'transient', times })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 15 }).map<Fault>((ms) => ({ kind: 'slow', ms })) },
);
// An undo never fails for good, but may fail more often than the retry budget (3): the order
// then parks in compensation_failed and the run resumes it as an admin would.
const undoFault: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Fault>({ kind: 'ok' }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 5 }).map<Fault>((times) => ({ kind: 'transient', times })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 15 }).map<Fault>((ms) => ({ kind: 'slow', ms })) },
);

const orderPlan: fc.Arbitrary<OrderPlan> = fc.record({
  items: fc.uniqueArray(fc.record({ sku: fc.integer({ min: 0, max: SKUS_PER_RUN - 1 }), quantity: fc.integer({ min: 1, max: 3 }) }), {
    selector: (i) => i.sku,
    minLength: 1,
    maxLength: SKUS_PER_RUN,
  }),
  faults: fc.record({ reserve: forwardFault, capture: forwardFault, ship: forwardFault, notify: forwardFault, release: undoFault, refund: undoFault }),
  cancelAfterMs: fc.option(fc.integer({ min: 0, max: 25 }), { nil: undefined }),
});

const runPlan = fc.record({
  stock: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: SKUS_PER_RUN, maxLength: SKUS_PER_RUN }),
  orders: fc.array(orderPlan, { minLength: 1, maxLength: 5 }),
});

const TERMINAL: Record<Step, StepErrorCode> = {
  reserve: 'insufficient_stock',
  release: 'step_failed',
  capture: 'payment_declined',
  refund: 'step_failed',
  ship: 'fulfillment_failed',
  notify: 'notification_failed',
};
const TRANSIENT: Record<Step, StepErrorCode> = {
  reserve: 'worker_crashed',
  release: 'worker_crashed',
  capture: 'payment_unavailable',
  refund: 'payment_unavailable',
  ship: 'carrier_unavailable',
  notify: 'notification_failed',
};

let svc: TestService;
const plans = new Map<string, OrderPlan>(); // by user id: one user per generated order
const calls = new Map<string, number>();

/** Applies the order's planned fault for a step, then lets the real implementation run. */
async function inject<T>(orderId: string, step: Step, real: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const view = await svc.engine.get(orderId);
  const plan = view && plans.get(view.user_id);
  const fault = plan?.faults[step] ?? { kind: 'ok' };
  const key = `${orderId}:${step}`;
  const n = (calls.get(key) ?? 0) + 1;
  calls.set(key, n);
  if (fault.kind === 'fail') throw new OrderError(TERMINAL[step], `injected ${step} failure`);
  if (fault.kind === 'transient' && n <= fault.times) throw new OrderError(TRANSIENT[step], `injected transient ${step} failure #${n}`);
  if (fault.kind === 'slow') await sleep(fault.ms, undefined, signal ? { signal } : {});
  return real();
}

beforeAll(async () => {
  svc = await startTestService(
    { RETRY_MAX_ATTEMPTS: '3', RETRY_BASE_MS: '1', ORDER_TIMEOUT_MS: '20000', SYNC_WAIT_MS: '0' },
    {
      overrides: {
        payments: (stores): PaymentGateway => {
          const real = new SimulatedPaymentGateway(stores.payments, { slowMs: 0 });
          return {
            capture: (req, signal) => inject(req.order_id, 'capture', () => real.capture(req, signal), signal),
            refund: (req) => inject(req.order_id, 'refund', () => real.refund(req)),
          };
        },
        carrier: (stores): Carrier => {
          const real = new SimulatedCarrier(stores.shipments);
          return { createShipment: (req) => inject(req.order_id, 'ship', () => real.createShipment(req)) };
        },
        notifier: (stores): Notifier => {
          const real = new StoreNotifier(stores.notifications);
          return { send: (req) => inject(req.order_id, 'notify', () => real.send(req)) };
        },
        inventory: (real): Inventory => ({
          reserve: (orderId, items) => inject(orderId, 'reserve', () => real.reserve(orderId, items)),
          release: (orderId) => inject(orderId, 'release', () => real.release(orderId)),
          sell: (orderId) => real.sell(orderId),
        }),
      },
    },
  );
});
afterAll(() => svc?.stop());

let runNo = 0;

async function settle(orderId: string, adminToken: string): Promise<any> {
  for (let round = 0; round < 20; round++) {
    const { view } = await svc.engine.waitUntilSettled(orderId, 15_000);
    if (view.status === 'compensation_failed') {
      const res = await svc.call('POST', `/api/v1/pipeline/orders/${orderId}/retry`, { token: adminToken });
      expect(res.status).toBe(202);
      continue;
    }
    return (await svc.call('GET', `/api/v1/pipeline/orders/${orderId}/status`, { token: adminToken })).json();
  }
  throw new Error(`order ${orderId} did not settle`);
}

async function checkRun(plan: { stock: number[]; orders: OrderPlan[] }): Promise<void> {
  const run = ++runNo;
  const admin = await svc.token('prop-admin', 'admin');
  const skus = plan.stock.map((_, i) => `P${run}-${i}`);
  for (const [i, sku] of skus.entries()) {
    const res = await svc.call('PUT', `/api/v1/inventory/${sku}`, { token: admin, body: { name: sku, price_cents: 100 + i * 10, available: plan.stock[i] } });
    expect(res.status).toBe(201);
  }

  const submitted = await Promise.all(
    plan.orders.map(async (o, i) => {
      const user = `p${run}-u${i}`;
      plans.set(user, o);
      const token = await svc.token(user);
      const res = await svc.call('POST', '/api/v1/pipeline/orders/async', {
        token,
        body: orderBody({ items: o.items.map((it) => ({ sku: skus[it.sku]!, quantity: it.quantity })) }),
      });
      expect(res.status).toBe(202);
      const id: string = (await res.json()).order_id;
      let cancelAnswer: Promise<number> | undefined;
      if (o.cancelAfterMs !== undefined) {
        cancelAnswer = sleep(o.cancelAfterMs).then(async () => (await svc.call('POST', `/api/v1/pipeline/orders/${id}/cancel`, { token })).status);
      }
      return { id, plan: o, cancelAnswer };
    }),
  );

  const finals = await Promise.all(
    submitted.map(async (s) => {
      const cancelStatus = await s.cancelAnswer;
      if (cancelStatus !== undefined) expect([202, 409]).toContain(cancelStatus);
      return { ...s, cancelStatus, final: await settle(s.id, admin) };
    }),
  );

  const { products, money } = await ledger(svc);
  for (const [i, sku] of skus.entries()) {
    const p = products.find((x) => x.sku === sku)!;
    expect(p.available + p.reserved + p.sold, `${sku} conservation`).toBe(p.added);
    expect(p.added, sku).toBe(plan.stock[i]);
    expect(p.reserved, `${sku} reserved once all final`).toBe(0);
    const soldToCompleted = finals
      .filter((f) => f.final.status === 'completed')
      .flatMap((f) => f.plan.items)
      .filter((it) => it.sku === i)
      .reduce((n, it) => n + it.quantity, 0);
    expect(p.sold, `${sku} sold`).toBe(soldToCompleted);
  }

  for (const { id, plan: o, final, cancelStatus } of finals) {
    expect(['completed', 'failed', 'cancelled'], id).toContain(final.status);
    const net = money(id).net;
    expect(net, `${id} money`).toBe(final.status === 'completed' ? final.order.total_cents : 0);

    // The status answer agrees with the store.
    const snap = (await committed(svc).get('SELECT status, state FROM order_snapshots WHERE order_id = ?', id)) as { status: string; state: string };
    expect(snap).toEqual({ status: final.status, state: final.state });
    const orderRow = (await committed(svc).get('SELECT status FROM orders WHERE id = ?', id)) as { status: string } | undefined;
    expect(orderRow?.status, `${id} order row`).toBe({ completed: 'shipped', failed: 'failed', cancelled: 'cancelled' }[final.status as string]);
    const reservation = (await committed(svc).get('SELECT status FROM reservations WHERE order_id = ?', id)) as { status: string } | undefined;
    if (final.status === 'completed') expect(reservation?.status).toBe('committed');
    else expect(reservation?.status ?? 'released').toBe('released');

    // Outcomes follow from the plan.
    if (final.status === 'cancelled') expect(cancelStatus).toBe(202);
    if (final.status === 'completed') {
      expect(o.faults.capture.kind).not.toBe('fail');
      expect(o.faults.ship.kind).not.toBe('fail');
      const notifications = (await committed(svc).get('SELECT COUNT(*) AS n FROM notifications WHERE order_id = ?', id)) as { n: number };
      const notifyFails = o.faults.notify.kind === 'fail' || (o.faults.notify.kind === 'transient' && o.faults.notify.times >= 3);
      expect(notifications.n, `${id} notifications`).toBe(notifyFails ? 0 : 3);
    }
    if (final.status === 'failed' && final.failure.code === 'payment_declined') expect(o.faults.capture.kind).toBe('fail');
    for (const stage of final.stages) if (stage.status === 'compensated') expect(['reservation', 'payment']).toContain(stage.name);
  }
}

describe('the order service under generated faults and cancels', () => {
  it(`keeps stock and money conserved and brings every order to a final state (${RUNS} runs)`, async () => {
    await fc.assert(fc.asyncProperty(runPlan, checkRun), {
      numRuns: RUNS,
      ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
      ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
      endOnFailure: process.env.FC_SHRINK === '0',
    });
  }, 600_000);
});
