import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { InventoryStoreOptions } from '../workers/inventory.pool.js';
import type { Db } from './sqlite/sqlite.database.js';
import type { ClusterBus, ClusterStore, Stores } from './store.ports.js';

/** The store the service runs on, as the composition root needs it. */
export interface OpenedStore {
  kind: 'sqlite' | 'postgres';
  stores: Stores;
  /**
   * Several instances on one database: always on PostgreSQL; on SQLite when opened with a
   * bus (the order loops of one service sharing its file).
   */
  cluster?: ClusterStore;
  /** What the inventory worker threads open, each on its own connection. */
  inventoryWorker: InventoryStoreOptions;
  /** The main thread's SQLite connection; only on SQLite. */
  sqlite?: Db;
  /**
   * Resolves when the store takes writes now; rejects saying why not (for /readyz). SQLite: a
   * write lock taken and given back on a connection of its own, without waiting in the event
   * loop; PostgreSQL: a new connection is to a writable primary and not read-only.
   */
  probeWrite(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /**
   * How this process reaches the others sharing the SQLite file (relayed by the primary).
   * Given, the SQLite store returns `cluster` and this process is one member; ignored on
   * PostgreSQL, which notifies through the database.
   */
  bus?: ClusterBus;
}

/**
 * The one place that picks the store: PostgreSQL when `DATABASE_URL` is set, else the
 * SQLite file at `DB_PATH`. Either is migrated before it is returned. Only the chosen
 * store's driver is loaded.
 */
export async function openStore(config: Config, logger: Logger, options: OpenStoreOptions = {}): Promise<OpenedStore> {
  const url = config.database.url;
  if (url !== undefined) {
    const { openPostgresStore } = await import('./postgres/postgres.stores.js');
    const store = await openPostgresStore({ url, logger, poolSize: config.database.poolSize });
    const { default: pg } = await import('pg');
    // A connection of its own each time: what a new connection gets (the pool's may predate a change).
    const probeWrite = async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000, statement_timeout: 2000 });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const { rows } = await client.query<{ writable: boolean }>(
          `SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable`,
        );
        if (!rows[0]?.writable) throw new Error('the database is read-only');
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    return { kind: 'postgres', stores: store.stores, cluster: store.cluster, inventoryWorker: { kind: 'postgres', url }, probeWrite, close: store.close };
  }
  const { openSqliteStore } = await import('./sqlite/sqlite.stores.js');
  const store = openSqliteStore(config.dbPath, logger, { bus: options.bus });
  const { default: Database } = await import('better-sqlite3');
  let probe: InstanceType<typeof Database> | undefined;
  const probeWrite = async () => {
    // timeout 0: a busy lock is waited for here, with timers, never by blocking the event loop.
    probe ??= new Database(config.dbPath, { fileMustExist: true, timeout: 0 });
    for (let attempt = 0; ; attempt++) {
      try {
        probe.exec('BEGIN IMMEDIATE');
        probe.exec('ROLLBACK');
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 20) throw err;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
  };
  return {
    kind: 'sqlite',
    stores: store.stores,
    ...(store.cluster ? { cluster: store.cluster } : {}),
    inventoryWorker: { kind: 'sqlite', dbPath: config.dbPath },
    sqlite: store.db,
    probeWrite,
    close: async () => {
      probe?.close();
      store.close();
    },
  };
}
