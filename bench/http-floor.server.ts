/**
 * The HTTP layer's own cost, for `npm run bench:floor`: the real `createApp` (request id,
 * body limit, JWT auth, rate limit, validation, the sync route and its answer) in front of
 * a runtime that settles every order at once with a canned completed order. No XState,
 * no SQLite, no pool. Prints `listening <port>` once it serves.
 *
 *   tsx bench/http-floor.server.ts <port> <jwt-secret>
 */
import { serve } from '@hono/node-server';
import { createActor } from 'xstate';
import type { OrderRuntime } from '../src/actors/order-runtime.js';
import { createApp } from '../src/http/app.js';
import { createLogger } from '../src/logger.js';
import { orderMachine, type OrderContext } from '../src/machines/order.machine.js';
import { pipelineStatus, stateName } from '../src/machines/order.status.js';
import type { SnapshotRecord } from '../src/store/ports.js';
import { instantSteps, orderInput } from './instant-steps.js';

const [port, secret] = process.argv.slice(2);
if (!port || !secret) {
  process.stderr.write('usage: tsx bench/http-floor.server.ts <port> <jwt-secret>\n');
  process.exit(2);
}

/** A completed order's real snapshot: the order machine run once with instant steps. */
async function cannedOrder(): Promise<{ record: SnapshotRecord; context: OrderContext }> {
  const actor = createActor(orderMachine.provide({ actors: instantSteps }), { input: orderInput() });
  actor.start();
  await new Promise<void>((resolve) => actor.subscribe({ complete: resolve }));
  const snapshot = actor.getSnapshot();
  return {
    context: snapshot.context,
    record: {
      order_id: snapshot.context.order_id,
      user_id: snapshot.context.user_id,
      status: pipelineStatus(snapshot as { status: string; value: string }),
      state: stateName(snapshot.value as string),
      snapshot: JSON.stringify(actor.getPersistedSnapshot()),
      created_at: snapshot.context.created_at,
      updated_at: new Date().toISOString(),
    },
  };
}

const canned = await cannedOrder();
const unused = () => {
  throw new Error('not used by the HTTP floor');
};
// Only what POST /api/v1/pipeline/orders touches: submit, then wait for the settled order.
const runtime = {
  accepting: true,
  submit: async () => canned.record,
  waitForSettled: async () => ({ settled: true, record: canned.record, context: canned.context }),
} as unknown as OrderRuntime;

const app = createApp({
  runtime,
  catalog: { findProducts: unused, getProduct: unused, listProducts: unused, upsertProduct: unused },
  snapshots: { saveMany: unused, get: unused, list: unused, listUnfinished: unused },
  logger: createLogger('warn'),
  auth: { secret: new TextEncoder().encode(secret) },
  rateLimit: { perSecond: 1_000_000, burst: 1_000_000, perAddress: { perSecond: 1_000_000, burst: 1_000_000 } },
  syncWaitMs: 10_000,
  idempotency: { store: { claim: unused, complete: unused, get: unused, purgeExpired: unused }, ttlHours: 24 },
});
serve({ fetch: app.fetch, hostname: '127.0.0.1', port: Number(port) }, (info) => process.stdout.write(`listening ${info.port}\n`));
process.on('SIGTERM', () => process.exit(0)); // a clean exit (and a written --cpu-prof) when the bench stops it
