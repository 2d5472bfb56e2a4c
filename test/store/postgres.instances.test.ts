import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { newId } from '../../src/domain/ids.js';
import { createLogger } from '../../src/logger.js';
import { run } from '../../src/store/postgres/postgres.database.js';
import { plans } from '../../src/store/postgres/postgres.plans.js';
import { runFenced, type Fence } from '../../src/store/fence.js';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres/postgres.stores.js';
import { createInventoryPool } from '../../src/workers/inventory.pool.js';
import { admin, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { clusterContract, type ClusterHarness, type ClusterNode } from './contract/cluster.contract.js';
import { orderId, stateWrite } from './contract/harness.js';

/*
 * What the PostgreSQL adapter must get right beyond the contracts (the cluster contract
 * runs on PostgreSQL at the end of this file): two stores on one database (two instances,
 * each its own pool) never take the same key twice, lock contention is `storage_busy`, a
 * fenced effect statement refuses a stale owner, and row locks order a takeover and a
 * fenced effect in flight.
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

describe('a fenced effect on PostgreSQL and a takeover', () => {
  const fence = (owner: string, epoch: number) => {
    const refused: string[] = [];
    const f: Fence = { owner, epoch, refused: (id) => refused.push(id) };
    return { f, refused };
  };

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

/** This file's second database, for the cluster contract: emptied before each test, two stores (each its own pool and worker pool) on it. */
let clusterDb: Promise<TestDatabase> | undefined;
afterAll(async () => (await clusterDb)?.drop());

async function postgresCluster(): Promise<ClusterHarness> {
  const url = (await (clusterDb ??= createTestDatabase('cluster'))).url;
  await admin(async (c) => {
    const { rows } = await c.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`);
    if (rows.length > 0) await c.query(`TRUNCATE ${rows.map((r) => r.tablename).join(', ')}`);
  }, url);
  const logger = createLogger('silent');
  const members = await Promise.all(
    [0, 1].map(async () => {
      const store = await openPostgresStore({ url, logger, poolSize: 4 });
      const pool = createInventoryPool({ store: { kind: 'postgres', url }, threads: 1, beforeDispatch: store.stores.flush });
      const node: ClusterNode = { stores: store.stores, cluster: store.cluster, inventory: { reserve: pool.reserve, release: pool.release, sell: store.stores.stock.sell } };
      return { store, pool, node };
    }),
  );
  const query = members[0]!.store.pool;
  return {
    a: members[0]!.node,
    b: members[1]!.node,
    async lease(id, ms, stopping = false) {
      await query.query(
        `INSERT INTO instances (instance_id, started_at, lease_until, stopping) VALUES ($1, now(), now() + $2 * interval '1 millisecond', $3)
         ON CONFLICT (instance_id) DO UPDATE SET lease_until = excluded.lease_until, stopping = excluded.stopping`,
        [id, ms, stopping],
      );
    },
    async owners(ids) {
      const { rows } = await query.query<{ order_id: string; owner: string; epoch: string }>(
        'SELECT order_id, owner, epoch FROM order_snapshots WHERE order_id = ANY($1)',
        [ids],
      );
      return new Map(rows.map((r) => [r.order_id, { owner: r.owner, epoch: Number(r.epoch) }]));
    },
    async effects(id, sku) {
      const { rows } = await query.query(
        `SELECT (SELECT count(*)::int FROM orders WHERE id = $1) AS orders, (SELECT count(*)::int FROM payment_charges WHERE order_id = $1) AS charges,
                (SELECT count(*)::int FROM payment_refunds WHERE order_id = $1) AS refunds, (SELECT count(*)::int FROM shipments WHERE order_id = $1) AS shipments,
                (SELECT count(*)::int FROM notifications WHERE order_id = $1) AS notifications, (SELECT count(*)::int FROM reservations WHERE order_id = $1) AS reservations,
                (SELECT reserved::int FROM products WHERE sku = $2) AS reserved`,
        [id, sku],
      );
      return rows[0];
    },
    async close() {
      for (const m of members) {
        await m.pool.close();
        await m.store.close();
      }
    },
  };
}

clusterContract(postgresCluster);
