import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/logger.js';
import { openDatabase } from '../../src/store/sqlite/sqlite.database.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite.stores.js';
import { createInventoryPool } from '../../src/workers/inventory.pool.js';
import { memoryBus } from '../support/memory-bus.js';
import { clusterContract, type ClusterHarness, type ClusterNode } from './contract/cluster.contract.js';

/**
 * Two members on one SQLite file, as two order loops of one service: each its own
 * main-thread connection (and group commit) and worker pool, a memory bus between them
 * where the primary process relays over IPC.
 */
async function sqliteCluster(): Promise<ClusterHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-cluster-'));
  const path = join(dir, 'store.db');
  const bus = memoryBus(2);
  const members = bus.map((member) => {
    const store = openSqliteStore(path, createLogger('silent'), { bus: member });
    const pool = createInventoryPool({ store: { kind: 'sqlite', dbPath: path }, threads: 1, beforeDispatch: store.stores.flush });
    const node: ClusterNode = { stores: store.stores, cluster: store.cluster!, inventory: { reserve: pool.reserve, release: pool.release, sell: store.stores.stock.sell } };
    return { store, pool, node };
  });
  // A third connection of the test's own, committing each statement at once.
  const db = openDatabase(path);
  const setLease = db.prepare(
    `INSERT INTO instances (instance_id, started_at, lease_until, stopping) VALUES (@id, @now, @until, @stopping)
     ON CONFLICT (instance_id) DO UPDATE SET lease_until = excluded.lease_until, stopping = excluded.stopping`,
  );
  const owner = db.prepare<[string], { owner: string; epoch: number }>('SELECT owner, epoch FROM order_snapshots WHERE order_id = ?');
  const counts = db.prepare<[{ id: string; sku: string }], Record<string, number>>(
    `SELECT (SELECT count(*) FROM orders WHERE id = @id) AS orders, (SELECT count(*) FROM payment_charges WHERE order_id = @id) AS charges,
            (SELECT count(*) FROM payment_refunds WHERE order_id = @id) AS refunds, (SELECT count(*) FROM shipments WHERE order_id = @id) AS shipments,
            (SELECT count(*) FROM notifications WHERE order_id = @id) AS notifications, (SELECT count(*) FROM reservations WHERE order_id = @id) AS reservations,
            (SELECT reserved FROM products WHERE sku = @sku) AS reserved`,
  );
  const flush = () => Promise.all(members.map((m) => m.store.stores.flush()));
  return {
    a: members[0]!.node,
    b: members[1]!.node,
    async lease(id, ms, stopping = false) {
      await flush();
      const now = Date.now();
      setLease.run({ id, now, until: now + ms, stopping: stopping ? 1 : 0 });
    },
    async owners(ids) {
      await flush();
      return new Map(ids.flatMap((id) => {
        const row = owner.get(id);
        return row ? [[id, { owner: row.owner, epoch: row.epoch }] as const] : [];
      }));
    },
    async effects(id, sku) {
      await flush();
      return counts.get({ id, sku })!;
    },
    async close() {
      for (const m of members) {
        await m.pool.close();
        await m.store.stores.flush();
        m.store.close();
      }
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

clusterContract(sqliteCluster);
