import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { openCommittedReader } from '../support/ledger.js';
import type { TestDatabase } from '../support/postgres.js';
import { orderBody, processStoreEnv, TEST_SECRET, TEST_STORE } from '../support/service.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-crash-'));
const running: ServerProcess[] = [];
const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await Promise.all(running.map((s) => s.exited));
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** This file's server processes' store (see processStoreEnv). */
const storeEnv = (name: string) => processStoreEnv(dir, name, databases);

async function start(env: Record<string, string>) {
  const server = await startServerProcess({ JWT_SECRET: TEST_SECRET, SEED_DEMO: 'false', LOG_LEVEL: 'warn', RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000', RATE_LIMIT_IP_PER_SEC: '100000', RATE_LIMIT_IP_BURST: '100000', ...env });
  running.push(server);
  return server;
}

async function kill9(server: ServerProcess) {
  server.child.kill('SIGKILL');
  expect((await server.exited).signal).toBe('SIGKILL');
}

async function untilFinal(api: ReturnType<typeof client>, ids: string[], timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  const finals = new Map<string, any>();
  while (finals.size < ids.length) {
    for (const id of ids) {
      if (finals.has(id)) continue;
      const { body } = await api('GET', `/api/v1/pipeline/orders/${id}/status`);
      if (body.status !== 'processing') finals.set(id, body);
    }
    if (Date.now() > deadline) throw new Error(`${ids.length - finals.size} orders still processing`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return finals;
}

describe('crash recovery with a real server process', () => {
  it('brings every accepted order to a final state after kill -9, with stock and money adding up', async () => {
    // Slow enough that a quarter of the orders are still paying when the process dies, even on a loaded machine.
    // On PostgreSQL the restarted process is a new instance: it claims the dead one's orders once its lease (2 s here) is over.
    const env = { ...(await storeEnv('crash')), PAYMENT_SLOW_MS: '5000', ORDER_TIMEOUT_MS: '120000', LEASE_MS: '2000' };
    const admin = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
    const first = await start(env);
    const api = client(first.url, admin);
    for (const sku of ['SKU-A', 'SKU-B', 'SKU-C']) {
      expect((await api('PUT', `/api/v1/inventory/${sku}`, { name: sku, price_cents: 300, available: 5000 })).status).toBe(201);
    }

    const kinds = ['tok_visa', 'tok_slow', 'tok_declined', 'AQ'] as const;
    const orders: Array<{ id: string; kind: (typeof kinds)[number] }> = [];
    for (let batch = 0; batch < 12; batch++) {
      const accepted = await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const i = batch * 20 + j;
          const kind = kinds[i % 4]!;
          const items = [{ sku: ['SKU-A', 'SKU-B', 'SKU-C'][i % 3]!, quantity: 1 + (i % 3) }, ...(i % 2 ? [{ sku: 'SKU-A' === ['SKU-A', 'SKU-B', 'SKU-C'][i % 3] ? 'SKU-B' : 'SKU-A', quantity: 1 }] : [])];
          const body = orderBody({ items, token: kind === 'AQ' ? 'tok_visa' : kind, country: kind === 'AQ' ? 'AQ' : 'DE', user_id: `user-${i % 7}` });
          const res = await api('POST', '/api/v1/pipeline/orders/async', body);
          expect(res.status).toBe(202);
          return { id: res.body.order_id as string, kind };
        }),
      );
      orders.push(...accepted);
    }
    expect(orders).toHaveLength(240);

    const before = new Map<string, any>();
    for (const { id } of orders) before.set(id, (await api('GET', `/api/v1/pipeline/orders/${id}/status`)).body);
    const inFlight = [...before.values()].filter((o) => o.status === 'processing').length;
    expect(inFlight).toBeGreaterThanOrEqual(20);
    await kill9(first);

    const second = await start(env);
    const finals = await untilFinal(client(second.url, admin), orders.map((o) => o.id));

    for (const { id, kind } of orders) {
      const final = finals.get(id);
      if (kind === 'tok_visa' || kind === 'tok_slow') expect(final.status, `${id} ${kind}`).toBe('completed');
      if (kind === 'tok_declined') expect(final.failure.code, id).toBe('payment_declined');
      if (kind === 'AQ') expect(final.failure.code, id).toBe('fulfillment_failed');
      // A final answer seen before the crash never changes after it.
      const earlier = before.get(id);
      if (earlier.status !== 'processing') expect(final.status, id).toBe(earlier.status);
    }

    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    const db = openCommittedReader({ dbPath: env.DB_PATH, url: env.DATABASE_URL });
    try {
      for (const p of await db.all('SELECT sku, available, reserved, sold, added FROM products')) {
        expect(p.available + p.reserved + p.sold, p.sku).toBe(p.added);
        expect(p.reserved, p.sku).toBe(0);
      }
      const charges = await db.all(`SELECT order_id, status, amount_cents FROM payment_charges`);
      const refunds = await db.all(`SELECT order_id, COUNT(*) AS n, SUM(amount_cents) AS cents FROM payment_refunds GROUP BY order_id`);
      const refunded = new Map(refunds.map((r) => [r.order_id, r]));
      for (const r of refunds) expect(r.n, r.order_id).toBe(1);
      for (const { id } of orders) {
        const final = finals.get(id);
        const charge = charges.find((c) => c.order_id === id);
        const captured = charge && (charge.status === 'captured' || charge.status === 'refunded') ? charge.amount_cents : 0;
        const net = captured - (refunded.get(id)?.cents ?? 0);
        expect(net, id).toBe(final.status === 'completed' ? final.order.total_cents : 0);
      }
      const sold = (await db.get<{ s: number }>('SELECT SUM(sold) AS s FROM products'))!;
      const completedUnits = [...finals.values()].filter((o) => o.status === 'completed').flatMap((o) => o.order.items).reduce((n, i) => n + i.quantity, 0);
      expect(sold.s).toBe(completedUnits);
    } finally {
      await db.close();
    }
  }, 120_000);

  // Timers kept in the snapshot: the machine's, the same on either store (SQLite only, for time).
  it.skipIf(TEST_STORE === 'postgres')('fails an order with pipeline_timeout at start when its deadline passed while the process was down', async () => {
    // The deadline leaves time for a cold worker pool to reach `paying` even under load.
    const env = { ...(await storeEnv('deadline')), PAYMENT_SLOW_MS: '60000', ORDER_TIMEOUT_MS: '8000' };
    const admin = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
    const first = await start(env);
    const api = client(first.url, admin);
    await api('PUT', '/api/v1/inventory/SKU-D', { name: 'D', price_cents: 100, available: 10 });
    const { body } = await api('POST', '/api/v1/pipeline/orders/async', orderBody({ items: [{ sku: 'SKU-D', quantity: 4 }], token: 'tok_slow' }));
    let status = (await api('GET', `/api/v1/pipeline/orders/${body.order_id}/status`)).body;
    for (let i = 0; i < 600 && status.state !== 'paying'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      status = (await api('GET', `/api/v1/pipeline/orders/${body.order_id}/status`)).body;
    }
    expect(status).toMatchObject({ status: 'processing', state: 'paying' });
    await kill9(first);
    // Stay down until the order's own deadline has passed.
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(status.deadline_at) - Date.now()) + 200));

    const second = await start(env);
    const again = client(second.url, admin);
    const [final] = [...(await untilFinal(again, [body.order_id], 10_000)).values()];
    expect(final).toMatchObject({ status: 'failed', failure: { stage: 'payment', code: 'pipeline_timeout' } });
    expect((await again('GET', '/api/v1/inventory/SKU-D')).body).toMatchObject({ available: 10, reserved: 0, sold: 0 });
    second.child.kill('SIGTERM');
    await second.exited;
  }, 60_000);

  // Timers kept in the snapshot: the machine's, the same on either store (SQLite only, for time).
  it.skipIf(TEST_STORE === 'postgres')('keeps a retry wait across a restart: attempts continue where they were', async () => {
    const env = { ...(await storeEnv('retry')), RETRY_BASE_MS: '1500', RETRY_MAX_ATTEMPTS: '3' };
    const admin = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
    const first = await start(env);
    const api = client(first.url, admin);
    await api('PUT', '/api/v1/inventory/SKU-E', { name: 'E', price_cents: 100, available: 10 });
    const { body } = await api('POST', '/api/v1/pipeline/orders/async', orderBody({ items: [{ sku: 'SKU-E', quantity: 1 }], token: 'tok_gateway_error' }));
    let payment: any;
    for (let i = 0; i < 500; i++) {
      const s = (await api('GET', `/api/v1/pipeline/orders/${body.order_id}/status`)).body;
      payment = s.stages.find((x: any) => x.name === 'payment');
      if (payment.attempts === 1 && payment.error) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(payment).toMatchObject({ attempts: 1, error: { code: 'payment_unavailable' } });
    await kill9(first);

    const second = await start(env);
    const [final] = [...(await untilFinal(client(second.url, admin), [body.order_id], 20_000)).values()];
    expect(final.failure.code).toBe('payment_unavailable');
    expect(final.stages.find((x: any) => x.name === 'payment').attempts).toBe(3);
    second.child.kill('SIGTERM');
    await second.exited;
  }, 60_000);
});
