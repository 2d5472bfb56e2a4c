import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/logger.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite.stores.js';
import { createInventoryPool } from '../../src/workers/inventory.pool.js';
import { domainStoresContract } from './contract/domain-stores.contract.js';
import type { StoreHarness } from './contract/harness.js';
import { orderStatesContract } from './contract/order-states.contract.js';

/** A fresh SQLite file per test, with its own worker pool: the embedded store as the service runs it. */
async function sqliteHarness(): Promise<StoreHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-store-'));
  const path = join(dir, 'store.db');
  const store = openSqliteStore(path, createLogger('silent'));
  const pool = createInventoryPool({ store: { kind: 'sqlite', dbPath: path }, threads: 2, beforeDispatch: store.stores.flush });
  const read = store.db.prepare<[string], { available: number; reserved: number; sold: number; added: number }>(
    'SELECT available, reserved, sold, added FROM products WHERE sku = ?',
  );
  return {
    stores: store.stores,
    inventory: { reserve: pool.reserve, release: pool.release, sell: store.stores.stock.sell },
    async stock(sku) {
      await store.stores.flush();
      return read.get(sku)!;
    },
    async close() {
      await pool.close();
      await store.stores.flush();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

orderStatesContract(sqliteHarness);
domainStoresContract(sqliteHarness);
