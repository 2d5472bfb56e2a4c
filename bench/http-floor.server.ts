/**
 * The HTTP layer's own cost, for `npm run bench:floor`: the real `createApp` (request id,
 * body limit, JWT auth, rate limit, validation, the sync route and its answer) in front of
 * an engine that settles every order at once with a canned completed order. No XState,
 * no SQLite, no pool. Prints `listening <port>` once it serves.
 *
 *   tsx bench/http-floor.server.ts <port> <jwt-secret>
 */
import { serve } from '@hono/node-server';
import { createActor } from 'xstate';
import { OrderError } from '../src/domain/errors.js';
import { createApp } from '../src/http/app.js';
import { createLogger } from '../src/logger.js';
import { orderMachine } from '../src/machines/order.machine.js';
import { pipelineStatus, stateName } from '../src/machines/order.status.js';
import type { OrderEngine } from '../src/orders/order.engine.js';
import { toOrderView, type OrderView } from '../src/orders/order.view.js';
import { instantSteps, orderInput } from './instant-steps.js';

const [port, secret] = process.argv.slice(2);
if (!port || !secret) {
  process.stderr.write('usage: tsx bench/http-floor.server.ts <port> <jwt-secret>\n');
  process.exit(2);
}

/** A completed order's real view: the order machine run once with instant steps. */
async function cannedView(): Promise<OrderView> {
  const actor = createActor(orderMachine.provide({ actors: instantSteps }), { input: orderInput() });
  actor.start();
  await new Promise<void>((resolve) => actor.subscribe({ complete: resolve }));
  const snapshot = actor.getSnapshot();
  const status = pipelineStatus(snapshot as { status: string; value: string });
  return toOrderView(snapshot.context, { status, state: stateName(snapshot.value as string), updated_at: new Date().toISOString() });
}

const canned = await cannedView();
const unused = (): never => {
  throw new OrderError('internal_error', 'not used by the HTTP floor');
};
/** An engine that settles every order at once with the canned view: only the HTTP layer costs anything. */
const engine: OrderEngine = {
  accepting: true,
  submit: async () => canned,
  waitUntilSettled: async () => ({ settled: true, view: canned }),
  get: async () => canned,
  list: async () => [canned],
  history: async () => [],
  cancel: unused,
  retry: unused,
  subscribe: () => () => undefined,
  resumeUnfinished: async () => 0,
  drain: async () => ({ settled: 0, stopped: 0 }),
  stats: () => ({ live: 0 }),
};

const app = createApp({
  engine,
  catalog: { findProducts: unused, getProduct: unused, listProducts: unused, upsertProduct: unused },
  logger: createLogger('warn'),
  auth: { secret: new TextEncoder().encode(secret) },
  rateLimit: { perSecond: 1_000_000, burst: 1_000_000, perAddress: { perSecond: 1_000_000, burst: 1_000_000 } },
  syncWaitMs: 10_000,
  idempotency: { store: { claim: unused, complete: unused, get: unused, purgeExpired: unused }, ttlHours: 24 },
  audit: { record: unused, list: unused },
});
serve({ fetch: app.fetch, hostname: '127.0.0.1', port: Number(port) }, (info) => process.stdout.write(`listening ${info.port}\n`));
process.on('SIGTERM', () => process.exit(0)); // a clean exit (and a written --cpu-prof) when the bench stops it
