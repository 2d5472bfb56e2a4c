import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import type { CommittedReader } from '../support/ledger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { expectLedgerAddsUp, kill, reader, startInstances, untilFinal, type Instance } from './support.js';

/*
 * Three real server processes on one PostgreSQL database, as an operator runs them behind a
 * load balancer. The tests share the cluster and run in order: one key over instances, the
 * oversell race, then 600 orders with cancels sent across instances and a kill -9 of one
 * instance mid-flight. The SIGSTOP test (frozen-owner.test.ts) has a cluster of its own.
 */
const LEASE_MS = 2000;
let db: TestDatabase;
let store: CommittedReader;
let nodes: Instance[] = [];
let adminToken: string;

beforeAll(async () => {
  db = await createTestDatabase('cluster3');
  store = reader(db.url);
  adminToken = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
  // Slow payments keep orders in flight long enough to kill their owner mid-way, even on a loaded machine.
  nodes = await startInstances(db.url, ['node-a', 'node-b', 'node-c'], adminToken, {
    LEASE_MS: String(LEASE_MS),
    PAYMENT_SLOW_MS: '12000',
    ORDER_TIMEOUT_MS: '120000',
    SYNC_WAIT_MS: '15000',
  });
}, 90_000);

afterAll(async () => {
  if (process.env.CLUSTER_LOGS) for (const n of nodes) (await import('node:fs')).writeFileSync(`${process.env.CLUSTER_LOGS}/${n.id}.log`, n.server.output());
  for (const n of nodes) if (n.server.child.exitCode === null && n.server.child.signalCode === null) n.server.child.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.server.exited));
  await store?.close();
  await db?.drop();
});

const put = (sku: string, available: number) => nodes[0]!.api('PUT', `/api/v1/inventory/${sku}`, { name: sku, price_cents: 250, available });

describe('three instances on one PostgreSQL database', () => {
  it('create one order from five concurrent requests with one Idempotency-Key spread over the instances', async () => {
    await put('SKU-K', 100);
    const body = orderBody({ items: [{ sku: 'SKU-K', quantity: 1 }] });
    for (const path of ['/api/v1/pipeline/orders', '/api/v1/pipeline/orders/async']) {
      const key = `key-${path.length}-${Date.now()}`;
      const answers = await Promise.all(
        Array.from({ length: 5 }, (_, i) => nodes[i % 3]!.api('POST', path, body, { 'Idempotency-Key': key })),
      );
      const ids = new Set(answers.map((a) => a.body.order_id));
      expect(ids.size, JSON.stringify(answers.map((a) => [a.status, a.body.order_id]))).toBe(1);
      for (const a of answers) expect([201, 202]).toContain(a.status);
      expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true').length).toBe(4);
    }
    const orders = await store.all(`SELECT order_id FROM order_snapshots WHERE view LIKE '%SKU-K%'`);
    expect(orders).toHaveLength(2);
  });

  it('sell exactly the stock there is when 300 one-unit orders for 100 units race over three instances', async () => {
    await put('SKU-HOT', 100);
    const body = orderBody({ items: [{ sku: 'SKU-HOT', quantity: 1 }] });
    const accepted = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const res = await nodes[i % 3]!.api('POST', '/api/v1/pipeline/orders/async', body);
        expect(res.status).toBe(202);
        return res.body.order_id as string;
      }),
    );
    const finals = await untilFinal(nodes[1]!.api, accepted);
    const views = [...finals.values()];
    expect(views.filter((v) => v.status === 'completed')).toHaveLength(100);
    expect(views.filter((v) => v.failure?.code === 'insufficient_stock')).toHaveLength(200);
    expect((await nodes[2]!.api('GET', '/api/v1/inventory/SKU-HOT')).body).toMatchObject({ available: 0, reserved: 0, sold: 100 });
  }, 120_000);

  it('finish every order of 600 after kill -9 of one instance mid-flight, cancels sent to other instances answered as by one', async () => {
    for (const sku of ['SKU-A', 'SKU-B', 'SKU-C']) expect((await put(sku, 5000)).status).toBeLessThan(300);
    const kinds = ['tok_visa', 'tok_slow', 'tok_declined', 'AQ'] as const;
    const skus = ['SKU-A', 'SKU-B', 'SKU-C'];
    const orders: Array<{ id: string; kind: (typeof kinds)[number]; at: number; i: number }> = [];
    const started = Date.now();
    // Cancels for some slow orders, each sent to an instance other than the one that took (and
    // owns) it, right after its batch: while it is still cancellable.
    const cancelAnswers = new Map<string, { status: number; body: any }>();
    for (let batch = 0; batch < 12; batch++) {
      const accepted = await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const i = batch * 50 + j;
          const kind = kinds[i % 4]!;
          const items = [{ sku: skus[i % 3]!, quantity: 1 + (i % 3) }, ...(i % 2 ? [{ sku: skus[(i + 1) % 3]!, quantity: 1 }] : [])];
          const body = orderBody({ items, token: kind === 'AQ' ? 'tok_visa' : kind, country: kind === 'AQ' ? 'AQ' : 'DE', user_id: `user-${i % 7}` });
          const res = await nodes[i % 3]!.api('POST', '/api/v1/pipeline/orders/async', body);
          expect(res.status).toBe(202);
          return { id: res.body.order_id as string, kind, at: i % 3, i };
        }),
      );
      orders.push(...accepted);
      const toCancel = accepted.filter((o) => o.kind === 'tok_slow' && o.i % 16 === 1);
      const answers = await Promise.all(toCancel.map((o) => nodes[(o.at + 1) % 3]!.api('POST', `/api/v1/pipeline/orders/${o.id}/cancel`)));
      toCancel.forEach((o, k) => cancelAnswers.set(o.id, answers[k]!));
    }
    expect(orders).toHaveLength(600);
    const cancels = [...cancelAnswers.values()];
    for (const res of cancels) expect([202, 409], JSON.stringify(res.body)).toContain(res.status);
    expect(cancels.filter((r) => r.status === 202).length).toBeGreaterThan(cancels.length / 2);

    const owned = await store.all(`SELECT order_id FROM order_snapshots WHERE owner = 'node-a' AND status = 'processing'`);
    console.log(`600 orders and ${cancels.length} cancels answered in ${Date.now() - started} ms; node-a runs ${owned.length} of them`);
    expect(owned.length).toBeGreaterThanOrEqual(20);
    const killedAt = Date.now();
    await kill(nodes[0]!);

    // Takeover: until nothing unfinished is left with the dead instance.
    for (;;) {
      const left = await store.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE owner = 'node-a' AND status = 'processing'`);
      if (left!.n === 0) break;
      expect(Date.now() - killedAt).toBeLessThan(30_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    const takeoverMs = Date.now() - killedAt;
    console.log(`takeover of ${owned.length} in-flight orders after kill -9: ${takeoverMs} ms (lease ${LEASE_MS} ms)`);
    // The line an operator looks for (logs arrive a moment after the claim commits).
    const survivors = () => nodes.slice(1).map((n) => n.server.output()).join('\n');
    for (let i = 0; i < 100 && !survivors().includes('took over orders from instances whose lease ended'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(survivors()).toContain('took over orders from instances whose lease ended');

    const finals = await untilFinal(nodes[1]!.api, orders.map((o) => o.id), 90_000);
    for (const { id, kind } of orders) {
      const final = finals.get(id);
      const cancel = cancelAnswers.get(id);
      if (cancel?.status === 202) {
        expect(final.status, id).toBe('cancelled');
        continue;
      }
      if (cancel) expect(final.status, id).not.toBe('cancelled');
      if (kind === 'tok_visa' || kind === 'tok_slow') expect(final.status, `${id} ${kind}`).toBe('completed');
      if (kind === 'tok_declined') expect(final.failure.code, id).toBe('payment_declined');
      if (kind === 'AQ') expect(final.failure.code, id).toBe('fulfillment_failed');
    }
    await expectLedgerAddsUp(store, finals);

    // No final state changes afterwards, on any instance, once the leases have come and gone.
    await new Promise((r) => setTimeout(r, LEASE_MS * 1.5));
    const again = await untilFinal(nodes[2]!.api, orders.map((o) => o.id));
    for (const [id, view] of finals) expect(again.get(id).status, id).toBe(view.status);
    await expectLedgerAddsUp(store, again);
  }, 240_000);
});
