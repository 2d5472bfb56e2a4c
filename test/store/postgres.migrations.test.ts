import { afterEach, describe, expect, it } from 'vitest';
import { migrate, openPool, type Pool } from '../../src/store/postgres/postgres.database.js';
import { MIGRATIONS, type Migration } from '../../src/store/postgres/postgres.migrations.js';
import { admin, createTestDatabase, type TestDatabase } from '../support/postgres.js';

/*
 * Migrations on PostgreSQL: several instances starting at once against one empty database
 * must apply each migration exactly once and all come up; a failing migration applies
 * nothing. Every migrator has its own pool, so they meet only in the database.
 */
let db: TestDatabase;
const pools: Pool[] = [];
const pool = () => {
  const p = openPool({ url: db.url, max: 1 });
  pools.push(p);
  return p;
};

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end()));
  await db.drop();
});

/** A later release's migration that takes its time, so the migrators really overlap. */
const slow: Migration = {
  version: MIGRATIONS.length + 1,
  name: 'slow backfill',
  sql: `SELECT pg_sleep(0.3); INSERT INTO products (sku, name, price_cents, available, added, created_at, updated_at)
        VALUES ('SKU-BACKFILL', 'backfilled', 1, 1, 1, now(), now());`,
};

describe('PostgreSQL migrations', () => {
  it('apply each migration exactly once when three instances start at the same moment', async () => {
    db = await createTestDatabase('migrate', { empty: true });
    const migrators = [pool(), pool(), pool()];
    const results = await Promise.all(migrators.map((p) => migrate(p, [...MIGRATIONS, slow])));

    const applied = results.flat().sort();
    const versions = [...MIGRATIONS, slow].map((m) => m.version);
    expect(applied).toEqual(versions); // each version by exactly one migrator, none failed
    expect(results.filter((r) => r.length > 0)).toHaveLength(1);
    const rows = await admin((c) => c.query('SELECT version FROM schema_migrations ORDER BY version'), db.url);
    expect(rows.rows.map((r) => r.version)).toEqual(versions);
    const backfilled = await admin((c) => c.query(`SELECT count(*)::int AS n FROM products WHERE sku = 'SKU-BACKFILL'`), db.url);
    expect(backfilled.rows[0].n).toBe(1);
    // A restart finds nothing left to do.
    expect(await migrate(pool(), [...MIGRATIONS, slow])).toEqual([]);
  });

  it('applies nothing of a run in which one migration fails', async () => {
    db = await createTestDatabase('migrate_fail', { empty: true });
    const broken: Migration = { version: MIGRATIONS.length + 1, name: 'broken', sql: 'ALTER TABLE no_such_table ADD COLUMN x int' };
    await expect(migrate(pool(), [...MIGRATIONS, broken])).rejects.toMatchObject({ code: '42P01' });
    const tables = await admin((c) => c.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`), db.url);
    expect(tables.rows[0].n).toBe(0);
  });

  it('keeps the stock invariant as a CHECK constraint, as on SQLite', async () => {
    db = await createTestDatabase('migrate_check', { empty: true });
    await migrate(pool());
    const insert = (available: number, added: number) =>
      admin(
        (c) => c.query(`INSERT INTO products (sku, name, price_cents, available, added, created_at, updated_at) VALUES ($1, 'x', 1, $2, $3, now(), now())`, [`S-${available}-${added}`, available, added]),
        db.url,
      );
    await expect(insert(5, 4)).rejects.toMatchObject({ code: '23514', constraint: 'products_stock_invariant' });
    await expect(insert(-1, -1)).rejects.toMatchObject({ code: '23514' });
    await expect(insert(5, 5)).resolves.toBeDefined();
  });
});
