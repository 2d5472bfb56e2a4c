import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { newId } from '../../src/domain/ids.js';
import { createLogger } from '../../src/logger.js';
import { run } from '../../src/store/postgres/postgres.database.js';
import { plans } from '../../src/store/postgres/postgres.plans.js';
import { release, reserve } from '../../src/store/postgres/postgres.inventory.js';
import { runFenced, type Fence } from '../../src/store/fence.js';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres/postgres.stores.js';
import { admin, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { orderId, stateWrite } from './contract/harness.js';

/*
 * What the PostgreSQL adapter must get right beyond the contract: two stores on one
 * database (two instances, each its own pool) never take the same order or key twice,
 * lock contention is `storage_busy`, and the phase-2 prototype of a fenced effect write
 * refuses a stale owner.
 */
let db: TestDatabase;
let a: PostgresStore;
let b: PostgresStore;

beforeAll(async () => {
  db = await createTestDatabase('instances');
  const logger = createLogger('silent');
  [a, b] = await Promise.all([
    openPostgresStore({ url: db.url, logger, poolSize: 4, lockTimeoutMs: 300 }),
    openPostgresStore({ url: db.url, logger, poolSize: 4, lockTimeoutMs: 300 }),
  ]);
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await db?.drop();
});

describe('two stores on one PostgreSQL database', () => {
  it('never hand one order at one epoch to two concurrent claimers, and leave it with the last one', async () => {
    const ids = Array.from({ length: 200 }, orderId);
    await a.stores.states.commitTurn(() => ids.map((id) => stateWrite(id, { owner: 'dead', epoch: 1, seq: 1 })));
    const [byA, byB] = await Promise.all([a.stores.states.claimUnfinished('a'), b.stores.states.claimUnfinished('b')]);
    // Each claimer takes every unfinished order it can (a restart's claim); claims of one order
    // never share an epoch, and the order ends with whoever holds the highest.
    const rows = await admin((c) => c.query(`SELECT order_id, owner, epoch FROM order_snapshots WHERE order_id = ANY($1)`, [ids]), db.url);
    for (const row of rows.rows) {
      const claims = [...byA.map((o) => ({ ...o, by: 'a' })), ...byB.map((o) => ({ ...o, by: 'b' }))].filter((o) => o.order_id === row.order_id);
      expect(claims.length).toBeGreaterThanOrEqual(1);
      expect(new Set(claims.map((c) => c.epoch)).size).toBe(claims.length);
      const last = claims.reduce((x, y) => (y.epoch > x.epoch ? y : x));
      expect({ owner: row.owner, epoch: Number(row.epoch) }).toEqual({ owner: last.by, epoch: last.epoch });
    }
    expect(rows.rows).toHaveLength(200);
  });

  it('create one entry for an Idempotency-Key claimed by both at once, and both answer with it', async () => {
    const now = new Date();
    const entry = (order: string) => ({
      user_id: 'alice',
      key: `k-${newId('x')}`,
      request_hash: 'h',
      order_id: order,
      request: '{}',
      response_status: null,
      response_body: null,
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + 60_000).toISOString(),
    });
    for (let i = 0; i < 20; i++) {
      const first = entry(orderId());
      const second = { ...first, order_id: orderId() };
      const [x, y] = await Promise.all([a.stores.idempotency.claim(first), b.stores.idempotency.claim(second)]);
      expect([x.claimed, y.claimed].filter(Boolean)).toHaveLength(1);
      expect(x.entry.order_id).toBe(y.entry.order_id);
    }
  });

  it('turn a row lock held past the lock timeout into storage_busy', async () => {
    await a.stores.catalog.upsertProduct({ sku: 'LOCKED', name: 'l', price_cents: 1, available: 1 });
    await admin(async (c) => {
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM products WHERE sku = 'LOCKED' FOR UPDATE`);
      try {
        const err = await b.stores.catalog.upsertProduct({ sku: 'LOCKED', name: 'l', price_cents: 1, available: 2 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OrderError);
        expect((err as OrderError).code).toBe('storage_busy');
      } finally {
        await c.query('ROLLBACK');
      }
    }, db.url);
  });
});

describe('a turn larger than one statement takes', () => {
  it('commits every state with its history row, and fences per order', async () => {
    const ids = Array.from({ length: 1200 }, orderId);
    const stale = ids[700]!;
    await a.stores.states.commitTurn(() => [stateWrite(stale, { owner: 'other', epoch: 5, seq: 1 })]);
    const { fenced } = await a.stores.states.commitTurn(() => ids.map((id) => stateWrite(id, { owner: 'a', epoch: 1, seq: id === stale ? 2 : 1 })));
    expect([...fenced]).toEqual([stale]);
    const counted = await admin(
      (c) => c.query(`SELECT (SELECT count(*)::int FROM order_snapshots WHERE order_id = ANY($1) AND owner = 'a') AS states,
                             (SELECT count(*)::int FROM order_changes WHERE order_id = ANY($1)) AS changes`, [ids]),
      db.url,
    );
    expect(counted.rows[0]).toEqual({ states: 1199, changes: 1200 }); // the stale order keeps its own one change
  });
});

describe('a fenced charge insert, as one statement', () => {
  const charge = (order: string, owner: string, epoch: number) => [
    newId('ch'), order, `${order}:capture`, 'captured', 100, 0, null, new Date().toISOString(), owner, epoch,
  ];

  it('writes for the owner holding the epoch, or at epoch 1 before any state, and refuses a stale owner', async () => {
    const fresh = orderId();
    expect((await run(a.pool, plans.insertChargeFenced, charge(fresh, 'a', 1)))[0]).toMatchObject({ fenced: false, charge_id: expect.any(String) });

    const owned = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(owned, { owner: 'a', epoch: 3, seq: 1 })]);
    expect((await run(b.pool, plans.insertChargeFenced, charge(owned, 'b', 2)))[0]).toEqual({ fenced: true, charge_id: null });
    expect((await run(b.pool, plans.insertChargeFenced, charge(owned, 'a', 2)))[0]).toEqual({ fenced: true, charge_id: null });
    expect(await a.stores.payments.findCharge(owned)).toBeNull();
    expect((await run(a.pool, plans.insertChargeFenced, charge(owned, 'a', 3)))[0]).toMatchObject({ fenced: false, charge_id: expect.any(String) });
  });
});

describe('leases and the reaper', () => {
  const lease = (id: string, until: string, stopping = false) =>
    admin((c) => c.query(`INSERT INTO instances (instance_id, started_at, lease_until, stopping) VALUES ($1, now(), ${until}, $2)
                           ON CONFLICT (instance_id) DO UPDATE SET lease_until = ${until}, stopping = $2`, [id, stopping]), db.url);

  it('never let two reapers claim one order, and take only orders of owners without a live lease', async () => {
    await a.cluster.register('reaper-a', 60_000);
    await b.cluster.register('reaper-b', 60_000);
    await lease('alive', `now() + interval '1 minute'`);
    await lease('expired', `now() - interval '1 second'`);
    await lease('leaving', `now() + interval '1 minute'`, true);
    const byOwner = { alive: 50, expired: 100, leaving: 100, vanished: 100 };
    const ids: Record<string, string[]> = {};
    for (const [owner, n] of Object.entries(byOwner)) {
      ids[owner] = Array.from({ length: n }, orderId);
      await a.stores.states.commitTurn(() => ids[owner]!.map((id) => stateWrite(id, { owner, epoch: 4, seq: 1 })));
    }
    const claimAll = async (store: PostgresStore, me: string) => {
      const got = [];
      for (;;) {
        const batch = await store.cluster.claimOrphaned(me, 7);
        got.push(...batch);
        if (batch.length < 7) return got;
      }
    };
    const [byA, byB] = await Promise.all([claimAll(a, 'reaper-a'), claimAll(b, 'reaper-b')]);
    const all = [...byA, ...byB].map((o) => o.order_id);
    expect(new Set(all).size).toBe(all.length); // nobody took an order twice
    const ours = new Set(Object.values(ids).flat());
    const claimed = [...byA, ...byB].filter((o) => ours.has(o.order_id));
    const orphans = [...ids.expired!, ...ids.leaving!, ...ids.vanished!];
    expect(claimed.map((o) => o.order_id).sort()).toEqual([...orphans].sort());
    for (const o of claimed) expect(o.epoch).toBe(5);
    const rows = await admin((c) => c.query(`SELECT owner, count(*)::int AS n FROM order_snapshots WHERE order_id = ANY($1) GROUP BY owner`, [ids.alive]), db.url);
    expect(rows.rows).toEqual([{ owner: 'alive', n: 50 }]);
  });

  it('claim nothing for an instance whose own lease has run out, and refuse to renew it', async () => {
    const id = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'gone-owner', epoch: 1, seq: 1 })]);
    await lease('late', `now() - interval '10 milliseconds'`);
    expect(await a.cluster.claimOrphaned('late', 10)).toEqual([]);
    expect(await a.cluster.renew('late', 60_000)).toBe(false);
    await a.cluster.register('late', 60_000);
    expect(await a.cluster.renew('late', 60_000)).toBe(true);
    expect((await a.cluster.claimOrphaned('late', 1000)).map((o) => o.order_id)).toContain(id);
  });

  it('make a handed-over instance\'s orders claimable at once', async () => {
    await a.cluster.register('handing', 60_000);
    await b.cluster.register('taking', 60_000);
    const id = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'handing', epoch: 2, seq: 1 })]);
    expect((await b.cluster.claimOrphaned('taking', 1000)).map((o) => o.order_id)).not.toContain(id);
    await a.cluster.handOver('handing');
    const taken = (await b.cluster.claimOrphaned('taking', 1000)).find((o) => o.order_id === id);
    expect(taken).toMatchObject({ owner: 'taking', epoch: 3, prev_owner: 'handing' });
  });
});

describe('every step effect on PostgreSQL, fenced by (owner, epoch)', () => {
  const fence = (owner: string, epoch: number) => {
    const refused: string[] = [];
    const f: Fence = { owner, epoch, refused: (id) => refused.push(id) };
    return { f, refused };
  };
  const request = { items: [{ sku: 'FENCE-SKU', quantity: 1 }], payment: { token: 'tok_visa' }, shipping: { name: 'n', line1: 'l', city: 'c', postal_code: 'p', country: 'DE' } };
  const effects = (s: PostgresStore, id: string) => ({
    place: () => s.stores.orders.place({ id, user_id: 'u', items: [{ sku: 'FENCE-SKU', quantity: 1, unit_price_cents: 100 }], total_cents: 100, currency: 'USD', created_at: new Date().toISOString() }, request.shipping),
    close: () => s.stores.orders.close(id, 'cancelled', { user_id: 'u', request, created_at: new Date().toISOString() }),
    charge: () => s.stores.payments.recordCharge({ payment_id: newId('ch'), order_id: id, idempotency_key: `${id}:capture`, status: 'captured', amount_cents: 100, refunded_cents: 0, decline_code: null }),
    refund: () => s.stores.payments.refundOrder(id, `${id}:refund`),
    ship: () => s.stores.shipments.insert({ shipment_id: newId('sh'), order_id: id, idempotency_key: `${id}:ship`, carrier: 'c', tracking_number: 't', country: 'DE' }),
    notify: () => s.stores.notifications.insert({ notification_id: newId('n'), order_id: id, kind: 'order_confirmation', recipient: 'u', created_at: new Date().toISOString(), idempotency_key: `${id}:notify`, payload: {} }),
    sell: () => s.stores.stock.sell(id),
    reserve: async () => reserve(s.pool, id, request.items, { owner: f(), epoch: e() }),
    release: async () => release(s.pool, id, { owner: f(), epoch: e() }),
  });
  // reserve/release take their fence as data (they run on the worker threads); the rest from the step's context.
  let current: Fence | undefined;
  const f = () => current!.owner;
  const e = () => current!.epoch;

  it('refuse every effect of a stale owner and write nothing, then let the owner holding the epoch write', async () => {
    await a.stores.catalog.upsertProduct({ sku: 'FENCE-SKU', name: 'f', price_cents: 100, available: 10 });
    const id = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'holder', epoch: 7, seq: 1 })]);
    const counts = () =>
      admin(
        (c) => c.query(`SELECT (SELECT count(*)::int FROM orders WHERE id = $1) AS orders, (SELECT count(*)::int FROM payment_charges WHERE order_id = $1) AS charges,
                               (SELECT count(*)::int FROM payment_refunds WHERE order_id = $1) AS refunds, (SELECT count(*)::int FROM shipments WHERE order_id = $1) AS shipments,
                               (SELECT count(*)::int FROM notifications WHERE order_id = $1) AS notifications, (SELECT count(*)::int FROM reservations WHERE order_id = $1) AS reservations,
                               (SELECT reserved::int FROM products WHERE sku = 'FENCE-SKU') AS reserved`, [id]),
        db.url,
      ).then((r) => r.rows[0]);
    const before = await counts();
    for (const stale of [fence('holder', 6), fence('thief', 7)]) {
      current = stale.f;
      for (const [name, effect] of Object.entries(effects(b, id))) {
        if (name === 'reserve' || name === 'release') {
          expect(await effect(), name).toMatchObject({ ok: false, fenced: true });
          continue;
        }
        const err = await runFenced(stale.f, effect as () => Promise<unknown>).then(() => null, (e: unknown) => e);
        expect(err, name).toBeInstanceOf(OrderError);
        expect((err as OrderError).message, name).toMatch(/^stale_epoch/);
      }
      expect(stale.refused.length).toBe(7);
      expect(new Set(stale.refused)).toEqual(new Set([id]));
    }
    expect(await counts()).toEqual(before);

    const holder = fence('holder', 7);
    current = holder.f;
    const run = effects(a, id);
    expect(await run.reserve()).toMatchObject({ ok: true });
    await runFenced(holder.f, run.place);
    await runFenced(holder.f, run.charge);
    await runFenced(holder.f, run.ship);
    await runFenced(holder.f, run.sell);
    await runFenced(holder.f, run.notify);
    expect(holder.refused).toEqual([]);
    expect(await counts()).toMatchObject({ orders: 1, charges: 1, shipments: 1, notifications: 1, reservations: 1, reserved: 0 });
  });

  it('let a takeover wait for a fenced effect in flight, after which the old owner is refused', async () => {
    const id = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'slow-owner', epoch: 1, seq: 1 })]);
    await admin(async (c) => {
      // An effect of the owner, its transaction still open, holds the order's row.
      await c.query('BEGIN');
      const [row] = (await c.query({ text: plans.checkFence.text, values: ['slow-owner', 1, id] })).rows;
      expect(row.allowed).toBe(true);
      const claim = a.stores.states.claimParked(id, 'x'); // not parked: touches nothing
      const takeover = admin((t) => t.query(`UPDATE order_snapshots SET owner = 'new', epoch = epoch + 1 WHERE order_id = $1 AND owner = 'slow-owner'
                                              AND order_id IN (SELECT order_id FROM order_snapshots WHERE order_id = $1 FOR UPDATE)`, [id]), db.url);
      const raced = await Promise.race([takeover.then(() => 'took over'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
      expect(raced).toBe('waiting');
      await c.query('COMMIT');
      await takeover;
      expect(await claim).toBeNull();
    }, db.url);
    const stale = fence('slow-owner', 1);
    const err = await runFenced(stale.f, () => a.stores.orders.place({ id, user_id: 'u', items: [], total_cents: 0, currency: 'USD', created_at: new Date().toISOString() }, { name: 'n', line1: 'l', city: 'c', postal_code: 'p', country: 'DE' })).catch((e: unknown) => e);
    expect((err as OrderError).message).toMatch(/^stale_epoch/);
    expect(stale.refused).toEqual([id]);
  });
});

describe('a fenced effect issued while a takeover is under way', () => {
  it('waits for the takeover to commit, then is refused against the new owner', async () => {
    const id = orderId();
    await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'old-owner', epoch: 1, seq: 1 })]);
    const refused: string[] = [];
    await admin(async (c) => {
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM order_snapshots WHERE order_id = $1 FOR UPDATE`, [id]);
      await c.query(`UPDATE order_snapshots SET owner = 'new-owner', epoch = epoch + 1 WHERE order_id = $1`, [id]);
      const charge = runFenced({ owner: 'old-owner', epoch: 1, refused: (o) => refused.push(o) }, () =>
        b.stores.payments.recordCharge({ payment_id: newId('ch'), order_id: id, idempotency_key: `${id}:capture`, status: 'captured', amount_cents: 5, refunded_cents: 0, decline_code: null }),
      ).then(() => 'written', (e: unknown) => (e as Error).message);
      // (Within these stores' 300 ms lock timeout.)
      const early = await Promise.race([charge, new Promise((r) => setTimeout(() => r('waiting'), 120))]);
      expect(early).toBe('waiting');
      await c.query('COMMIT');
      expect(await charge).toMatch(/^stale_epoch/);
    }, db.url);
    expect(refused).toEqual([id]);
    expect(await a.stores.payments.findCharge(id)).toBeNull();
  });
});
