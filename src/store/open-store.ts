import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { InventoryStoreOptions } from '../workers/inventory.pool.js';
import type { Db } from './sqlite/sqlite.database.js';
import type { ClusterStore, Stores } from './store.ports.js';

/** The store the service runs on, as the composition root needs it. */
export interface OpenedStore {
  kind: 'sqlite' | 'postgres';
  stores: Stores;
  /** Several instances on one database: only on PostgreSQL. */
  cluster?: ClusterStore;
  /** What the inventory worker threads open, each on its own connection. */
  inventoryWorker: InventoryStoreOptions;
  /** The main thread's SQLite connection; only on SQLite. */
  sqlite?: Db;
  close(): Promise<void>;
}

/**
 * The one place that picks the store: PostgreSQL when `DATABASE_URL` is set, else the
 * SQLite file at `DB_PATH`. Either is migrated before it is returned. Only the chosen
 * store's driver is loaded.
 */
export async function openStore(config: Config, logger: Logger): Promise<OpenedStore> {
  const url = config.database.url;
  if (url !== undefined) {
    const { openPostgresStore } = await import('./postgres/postgres.stores.js');
    const store = await openPostgresStore({ url, logger, poolSize: config.database.poolSize });
    return { kind: 'postgres', stores: store.stores, cluster: store.cluster, inventoryWorker: { kind: 'postgres', url }, close: store.close };
  }
  const { openSqliteStore } = await import('./sqlite/sqlite.stores.js');
  const store = openSqliteStore(config.dbPath, logger);
  return {
    kind: 'sqlite',
    stores: store.stores,
    inventoryWorker: { kind: 'sqlite', dbPath: config.dbPath },
    sqlite: store.db,
    close: async () => store.close(),
  };
}
