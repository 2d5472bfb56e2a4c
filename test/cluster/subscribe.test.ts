import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OrderChange } from '../../src/orders/order.engine.js';
import { admin, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { orderBody, startTestService, type TestService } from '../support/service.js';

/*
 * `engine.subscribe` across instances: a subscriber on one instance (an SSE stream, a
 * waiter) is told of changes committed by another, after they are committed there. Two
 * services in this process on one database, each with its own pool, lease and LISTEN.
 */
let db: TestDatabase;
let first: TestService;
let second: TestService;

beforeAll(async () => {
  db = await createTestDatabase('subscribe');
  const env = { DATABASE_URL: db.url, DATABASE_POOL_SIZE: '4', LEASE_MS: '1500', PAYMENT_SLOW_MS: '300' };
  first = await startTestService({ ...env, INSTANCE_ID: 'sub-first' }, { products: [{ sku: 'SKU-S', name: 's', price_cents: 100, available: 100 }] });
  second = await startTestService({ ...env, INSTANCE_ID: 'sub-second' });
});
afterAll(async () => {
  await second?.stop();
  await first?.stop();
  await db?.drop();
});

describe('subscribers on one instance, orders on another', () => {
  it('are told every committed change of an order run elsewhere, in order, marked as remote', async () => {
    const seen: OrderChange[] = [];
    let remote = 0;
    const off = first.engine.subscribe((changes, info) => {
      if (info.remote) remote++;
      seen.push(...changes);
    });
    try {
      const token = await second.token('alice');
      const res = await second.call('POST', '/api/v1/pipeline/orders', { token, body: orderBody({ items: [{ sku: 'SKU-S', quantity: 1 }], token: 'tok_slow' }) });
      expect(res.status).toBe(201);
      const { order_id } = await res.json();
      const history = await second.engine.history(order_id, 0, 100);
      for (let i = 0; i < 100 && seen.filter((c) => c.order_id === order_id).length < history.length; i++) await new Promise((r) => setTimeout(r, 20));
      const mine = seen.filter((c) => c.order_id === order_id);
      expect(mine.map((c) => c.seq)).toEqual(history.map((c) => c.seq));
      expect(mine.at(-1)!.view.status).toBe('completed');
      expect(remote).toBeGreaterThan(0);
    } finally {
      off();
    }
  });

  it('let a wait on one instance follow an order another instance runs to its end', async () => {
    const token = await second.token('bob');
    const res = await second.call('POST', '/api/v1/pipeline/orders/async', { token, body: orderBody({ items: [{ sku: 'SKU-S', quantity: 1 }], token: 'tok_slow' }) });
    const { order_id } = await res.json();
    const { settled, view } = await first.engine.waitUntilSettled(order_id, 10_000);
    expect(settled).toBe(true);
    expect(view.status).toBe('completed');
  });

  it('listen again after the server cuts the LISTEN connections, and go on telling subscribers', async () => {
    const cut = await admin(
      (c) => c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ordersaga-listen'`, [db.name]),
    );
    expect(cut.rowCount).toBe(2);
    // Reconnected within about a second (until then, waits and the inbox are polled).
    for (let i = 0; i < 100; i++) {
      const back = await admin((c) => c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ordersaga-listen'`, [db.name]));
      if (back.rows[0].n === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seen: OrderChange[] = [];
    const off = first.engine.subscribe((changes, info) => info.remote && seen.push(...changes));
    try {
      const token = await second.token('carol');
      const res = await second.call('POST', '/api/v1/pipeline/orders', { token, body: orderBody({ items: [{ sku: 'SKU-S', quantity: 1 }] }) });
      const { order_id } = await res.json();
      for (let i = 0; i < 100 && !seen.some((c) => c.order_id === order_id && c.view.status === 'completed'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen.filter((c) => c.order_id === order_id).at(-1)?.view.status).toBe('completed');
    } finally {
      off();
    }
  });
});
