import { afterAll } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { openPostgresStore } from '../../src/store/postgres/postgres.stores.js';
import { createInventoryPool } from '../../src/workers/inventory.pool.js';
import { admin, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { domainStoresContract } from './contract/domain-stores.contract.js';
import type { StoreHarness } from './contract/harness.js';
import { orderStatesContract } from './contract/order-states.contract.js';

/** This file's database; every test empties it and opens its own store on it. */
let database: Promise<TestDatabase> | undefined;
afterAll(async () => (await database)?.drop());

/** A fresh store per test, with its own worker pool on its own connections: PostgreSQL as the service runs it. */
async function postgresHarness(): Promise<StoreHarness> {
  const db = await (database ??= createTestDatabase('store'));
  await admin(async (c) => {
    const { rows } = await c.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`);
    if (rows.length > 0) await c.query(`TRUNCATE ${rows.map((r) => r.tablename).join(', ')}`);
  }, db.url);
  const store = await openPostgresStore({ url: db.url, logger: createLogger('silent'), poolSize: 4 });
  const pool = createInventoryPool({ store: { kind: 'postgres', url: db.url }, threads: 2, beforeDispatch: store.stores.flush });
  return {
    stores: store.stores,
    inventory: { reserve: pool.reserve, release: pool.release, sell: store.stores.stock.sell },
    async stock(sku) {
      const { rows } = await store.pool.query('SELECT available, reserved, sold, added FROM products WHERE sku = $1', [sku]);
      return rows[0];
    },
    async close() {
      await pool.close();
      await store.close();
    },
  };
}

orderStatesContract(postgresHarness);
domainStoresContract(postgresHarness);
