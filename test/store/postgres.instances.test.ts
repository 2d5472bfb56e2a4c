import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { newId } from '../../src/domain/ids.js';
import { createLogger } from '../../src/logger.js';
import { run } from '../../src/store/postgres/postgres.database.js';
import { plans } from '../../src/store/postgres/postgres.plans.js';
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

describe('a fenced effect write (phase-2 prototype)', () => {
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
