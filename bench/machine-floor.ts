/**
 * The order machine's own cost: how many orders per second XState alone can carry on one
 * core, with every step answering at once (no HTTP, no SQLite, no worker pool). This is the
 * ceiling for one event loop, whatever the rest of the service does.
 *
 *   npm run bench:floor                  3 rounds of 20,000 orders, 50 in flight
 *   npm run bench:floor -- --orders 50000 --rounds 5
 *
 * Rows: a minimal 5-step machine (one invoke per step, no context to speak of: the issue's
 * "XState run of a 5-step machine with no I/O"); the real order machine with instant steps;
 * and the same plus what the runtime adds per transition (the persisted snapshot, as JSON).
 * Results go to bench/results/<timestamp>-floor.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { assign, createActor, fromPromise, setup, type AnyStateMachine } from 'xstate';
import type { Notification, Order, Payment, Reservation, Shipment } from '../src/domain/order.js';
import { orderMachine, type OrderInput } from '../src/machines/order.machine.js';
import { ROOT } from './server.js';

const { values: argv } = parseArgs({
  options: { orders: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, concurrency: { type: 'string', default: '50' } },
});
const ORDERS = Number(argv.orders);
const ROUNDS = Number(argv.rounds);
const IN_FLIGHT = Number(argv.concurrency);
if (![ORDERS, ROUNDS, IN_FLIGHT].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('bench:floor: --orders, --rounds and --concurrency must be positive integers\n');
  process.exit(2);
}

const instant = <T>(output: (input: any) => T) => fromPromise<T, any>(async ({ input }) => output(input));

/** The real order machine; every step succeeds at once. The waits are the real timer actors. */
const order = orderMachine.provide({
  actors: {
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
  },
});

/** Five invoked steps in a row, each result assigned to context: nothing else. */
const step = (src: string, target: string) => ({
  invoke: { src, onDone: { target, actions: assign({ [src]: ({ event }: { event: { output: unknown } }) => event.output }) } },
});
const minimal = setup({
  actors: { a: instant(() => 1), b: instant(() => 2), c: instant(() => 3), d: instant(() => 4), e: instant(() => 5) },
}).createMachine({
  context: {},
  initial: 'a',
  states: { a: step('a', 'b'), b: step('b', 'c'), c: step('c', 'd'), d: step('d', 'e'), e: step('e', 'done'), done: { type: 'final' } },
} as never);

let seq = 0;
function input(): OrderInput {
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

/** Runs `ORDERS` actors to their final state, `IN_FLIGHT` at a time; returns orders/s. */
function runRound(machine: AnyStateMachine, persist: boolean): Promise<number> {
  const started = performance.now();
  let launched = 0;
  let finished = 0;
  return new Promise((resolve) => {
    const launch = () => {
      launched++;
      const actor = createActor(machine, { input: input() });
      actor.subscribe({
        next: (snapshot) => {
          if (persist) JSON.stringify(machine.getPersistedSnapshot(snapshot));
        },
        complete: () => {
          finished++;
          if (launched < ORDERS) launch();
          else if (finished === ORDERS) resolve((ORDERS / (performance.now() - started)) * 1000);
        },
      });
      actor.start();
    };
    for (let i = 0; i < Math.min(IN_FLIGHT, ORDERS); i++) launch();
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const cases: Array<{ name: string; machine: AnyStateMachine; persist: boolean }> = [
  { name: 'minimal 5-step machine', machine: minimal as unknown as AnyStateMachine, persist: false },
  { name: 'order machine, instant steps', machine: order, persist: false },
  { name: 'order machine, instant steps, snapshot persisted per transition', machine: order, persist: true },
];

process.stdout.write(`XState floor on one core: ${ORDERS} orders × ${ROUNDS} rounds, ${IN_FLIGHT} in flight (node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'})\n`);
await runRound(order, true); // warm-up: let V8 optimise before anything is measured
const results = [];
for (const c of cases) {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) rates.push(await runRound(c.machine, c.persist));
  const perS = Math.round(median(rates));
  results.push({ name: c.name, orders_per_s: perS, us_per_order: Math.round((1e6 / perS) * 10) / 10, rounds: rates.map(Math.round) });
  process.stdout.write(`  ${c.name.padEnd(66)} ${String(perS).padStart(6)} orders/s  ${(1e6 / perS).toFixed(1).padStart(6)} µs/order\n`);
}

const dir = join(ROOT, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/:/g, '-')}-floor.json`);
writeFileSync(file, `${JSON.stringify({ bench: 'ordersaga machine floor', orders: ORDERS, rounds: ROUNDS, in_flight: IN_FLIGHT, node: process.version, cpu: os.cpus()[0]?.model, cpus: os.cpus().length, results }, null, 2)}\n`);
process.stdout.write(`result: ${file.slice(ROOT.length)}\n`);
process.exit(0); // the order machines' deadline timers would otherwise keep the process alive
