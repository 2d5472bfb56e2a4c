import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import type { CommittedReader } from '../support/ledger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { expectLedgerAddsUp, reader, startInstances, untilFinal, type Instance } from './support.js';

/*
 * A deploy: SIGTERM to one of two instances. After its grace period it commits and stops
 * its unfinished orders and hands them over, so the other claims them at once instead of
 * waiting out a lease (set long here, so only the handover can explain the takeover).
 */
const LEASE_MS = 60_000;
let db: TestDatabase;
let store: CommittedReader;
let nodes: Instance[] = [];

beforeAll(async () => {
  db = await createTestDatabase('handover');
  store = reader(db.url);
  const token = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
  nodes = await startInstances(db.url, ['leaving', 'staying'], token, {
    LEASE_MS: String(LEASE_MS),
    PAYMENT_SLOW_MS: '4000',
    SHUTDOWN_GRACE_MS: '300',
    ORDER_TIMEOUT_MS: '120000',
  });
}, 90_000);

afterAll(async () => {
  for (const n of nodes) if (n.server.child.exitCode === null && n.server.child.signalCode === null) n.server.child.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.server.exited));
  await store?.close();
  await db?.drop();
});

describe('SIGTERM with another instance running', () => {
  it('hands the unfinished orders over at once, and the other instance finishes them', async () => {
    const [leaving, staying] = nodes as [Instance, Instance];
    await leaving.api('PUT', '/api/v1/inventory/SKU-H', { name: 'H', price_cents: 300, available: 500 });
    const ids = await Promise.all(
      Array.from({ length: 20 }, async () => (await leaving.api('POST', '/api/v1/pipeline/orders/async', orderBody({ items: [{ sku: 'SKU-H', quantity: 1 }], token: 'tok_slow' }))).body.order_id as string),
    );
    leaving.server.child.kill('SIGTERM');
    expect((await leaving.server.exited).code).toBe(0);
    const unfinished = await store.all(`SELECT order_id FROM order_snapshots WHERE order_id = ANY(?) AND status = 'processing'`, ids);
    expect(unfinished.length).toBeGreaterThan(0);
    expect(leaving.server.output()).toContain('handed unfinished orders over to the other instances');

    // Well inside the minute-long lease: only the handover lets them be claimed.
    const finals = await untilFinal(staying.api, ids, 30_000);
    for (const id of ids) expect(finals.get(id).status, id).toBe('completed');
    const lease = await store.get(`SELECT lease_until > now() AS live, stopping FROM instances WHERE instance_id = 'leaving'`);
    expect(lease).toEqual({ live: false, stopping: true });
    expect(staying.server.output()).toMatch(/"from":\{"leaving":\d+\}.*took over orders from instances whose lease ended/);
    await expectLedgerAddsUp(store, finals);
  }, 90_000);
});
