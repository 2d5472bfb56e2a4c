import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import type { CommittedReader } from '../support/ledger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { expectLedgerAddsUp, kill, reader, startInstances, untilFinal, type Instance } from './support.js';

/*
 * A frozen owner (SIGSTOP: a long GC pause, a VM stall, a laptop lid) is the case fencing is
 * for: it does not know it was frozen, and when it wakes its timers fire and its steps go on
 * as if nothing happened. The other instance takes its orders over once the lease has
 * passed; the woken one must write nothing for them, and each must finish exactly once.
 * Then the same pair, with the owner killed: a cancel sent meanwhile waits in the inbox for
 * the orders' next owner.
 */
const LEASE_MS = 2500;
let db: TestDatabase;
let store: CommittedReader;
let nodes: Instance[] = [];

beforeAll(async () => {
  db = await createTestDatabase('frozen');
  store = reader(db.url);
  const token = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
  nodes = await startInstances(db.url, ['frozen-a', 'frozen-b'], token, { LEASE_MS: String(LEASE_MS), PAYMENT_SLOW_MS: '3000', ORDER_TIMEOUT_MS: '120000', SYNC_WAIT_MS: '30000' });
}, 90_000);

afterAll(async () => {
  for (const n of nodes) {
    if (n.server.child.exitCode !== null || n.server.child.signalCode !== null) continue;
    n.server.child.kill('SIGCONT');
    n.server.child.kill('SIGKILL');
  }
  await Promise.all(nodes.map((n) => n.server.exited));
  await store?.close();
  await db?.drop();
});

describe('an owner frozen past its lease', () => {
  it('writes nothing for the orders taken over while it was frozen, and each of them finishes once', async () => {
    const [a, b] = nodes as [Instance, Instance];
    await a.api('PUT', '/api/v1/inventory/SKU-F', { name: 'F', price_cents: 400, available: 1000 });
    const ids = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const res = await a.api('POST', '/api/v1/pipeline/orders/async', orderBody({ items: [{ sku: 'SKU-F', quantity: 2 }], token: 'tok_slow' }));
        expect(res.status).toBe(202);
        return res.body.order_id as string;
      }),
    );
    // And three synchronous creates, whose answers frozen-a owes while their orders move to frozen-b.
    const syncAnswers = Promise.all(
      Array.from({ length: 3 }, () => a.api('POST', '/api/v1/pipeline/orders', orderBody({ items: [{ sku: 'SKU-F', quantity: 1 }], token: 'tok_slow', user_id: 'sync-waiter' }))),
    );
    // Every one of them waiting for its slow payment on frozen-a.
    for (let i = 0; ; i++) {
      const paying = await store.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM order_snapshots WHERE (order_id = ANY(?) OR user_id = 'sync-waiter') AND owner = 'frozen-a' AND state = 'paying'`,
        ids,
      );
      if (paying!.n === ids.length + 3) break;
      expect(i, 'orders never all reached paying').toBeLessThan(400);
      await new Promise((r) => setTimeout(r, 25));
    }

    a.server.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    for (;;) {
      const moved = await store.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE order_id = ANY(?) AND owner = 'frozen-b'`, ids);
      if (moved!.n === ids.length) break;
      expect(Date.now() - frozenAt).toBeLessThan(20_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Frozen past the slow payment's end too, so that on waking its steps are due at once.
    await new Promise((r) => setTimeout(r, Math.max(0, 3500 - (Date.now() - frozenAt))));
    const mark = a.server.output().length;
    a.server.child.kill('SIGCONT');

    const finals = await untilFinal(b.api, ids, 30_000);
    for (const id of ids) expect(finals.get(id).status, id).toBe('completed');
    // The waiting creates are answered by frozen-a as one instance would: 201 once completed, wherever it ran.
    for (const res of await syncAnswers) expect({ status: res.status, order: res.body.status }).toEqual({ status: 201, order: 'completed' });
    // Give the woken instance time to do whatever it would.
    await new Promise((r) => setTimeout(r, LEASE_MS));
    const woken = a.server.output().slice(mark);
    expect(woken).toMatch(/lease not renewed in time|lease lost|order taken over by another owner/);
    for (const id of ids) expect(woken.includes(`"order_id":"${id}","stage":"completed"`), id).toBe(false);

    // Exactly once: one charge each, one final change each, and the ledger adds up.
    const charges = await store.all(`SELECT order_id, status FROM payment_charges WHERE order_id = ANY(?)`, ids);
    expect(charges).toHaveLength(ids.length);
    expect(new Set(charges.map((c) => c.status))).toEqual(new Set(['captured']));
    const owners = await store.all(`SELECT DISTINCT owner FROM order_snapshots WHERE order_id = ANY(?) OR user_id = 'sync-waiter'`, ids);
    expect(owners).toEqual([{ owner: 'frozen-b' }]);
    await expectLedgerAddsUp(store, finals);

    // And the woken instance rejoined: it takes and finishes new orders.
    const later = await a.api('POST', '/api/v1/pipeline/orders', orderBody({ items: [{ sku: 'SKU-F', quantity: 1 }] }));
    expect(later.status).toBe(201);
  }, 120_000);

  it('keeps a cancel sent while the owner is dead, and its next owner applies it and answers', async () => {
    const [a, b] = nodes as [Instance, Instance];
    const ids = await Promise.all(
      Array.from({ length: 3 }, async () => (await a.api('POST', '/api/v1/pipeline/orders/async', orderBody({ items: [{ sku: 'SKU-F', quantity: 1 }], token: 'tok_slow' }))).body.order_id as string),
    );
    for (let i = 0; ; i++) {
      const paying = await store.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE order_id = ANY(?) AND owner = 'frozen-a' AND state = 'paying'`, ids);
      if (paying!.n === ids.length) break;
      expect(i, 'orders never all reached paying').toBeLessThan(400);
      await new Promise((r) => setTimeout(r, 25));
    }
    await kill(a);
    // Sent to the survivor while the orders' owner is dead and its lease still runs: stored, applied after the takeover.
    const answers = await Promise.all(ids.map((id) => b.api('POST', `/api/v1/pipeline/orders/${id}/cancel`)));
    for (const res of answers) expect(res.status, JSON.stringify(res.body)).toBe(202);
    const finals = await untilFinal(b.api, ids, 30_000);
    for (const id of ids) expect(finals.get(id).status, id).toBe('cancelled');
    const inbox = await store.all(`SELECT order_id, result_status FROM order_inbox WHERE order_id = ANY(?)`, ids);
    expect(inbox.map((e) => e.result_status)).toEqual([202, 202, 202]);
    await expectLedgerAddsUp(store, finals);
  }, 60_000);
});
