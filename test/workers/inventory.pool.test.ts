import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { createLogger } from '../../src/logger.js';
import { GroupCommit } from '../../src/store/sqlite/group-commit.js';
import { migrate, openDatabase, type Db } from '../../src/store/sqlite/sqlite.database.js';
import { createSqliteInventory } from '../../src/store/sqlite/sqlite.inventory.js';
import { createSqliteStores } from '../../src/store/sqlite/sqlite.stores.js';
import type { Inventory } from '../../src/store/store.ports.js';
import { createInventoryPool, type InventoryPool } from '../../src/workers/inventory.pool.js';

let dir: string;
let db: Db;
let pool: InventoryPool;
let ledger: Pick<Inventory, 'sell'>;

const stock = (sku: string) => db.prepare('SELECT available, reserved, sold, added FROM products WHERE sku = ?').get(sku) as any;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ordersaga-pool-'));
  const path = join(dir, 'inv.db');
  db = openDatabase(path);
  migrate(db);
  const stores = createSqliteStores(db, new GroupCommit(db, createLogger('silent')));
  const { catalog } = stores;
  ledger = stores.stock;
  for (const sku of ['P-A', 'P-B', 'P-C', 'P-HOT']) await catalog.upsertProduct({ sku, name: sku, price_cents: 100, available: 10 });
  await catalog.upsertProduct({ sku: 'P-HOT', name: 'hot', price_cents: 100, available: 50 });
  pool = createInventoryPool({ store: { kind: 'sqlite', dbPath: path }, threads: 2 });
});

afterAll(async () => {
  await pool.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('inventory on the worker pool', () => {
  it('reserves all items of an order in one transaction, and a second reserve of the same order changes nothing', async () => {
    const items = [
      { sku: 'P-A', quantity: 3 },
      { sku: 'P-B', quantity: 2 },
    ];
    const first = await pool.reserve('ord-1', items);
    const again = await pool.reserve('ord-1', items);
    expect(first).toEqual({ order_id: 'ord-1', status: 'reserved', items });
    expect(again).toEqual(first);
    expect(stock('P-A')).toEqual({ available: 7, reserved: 3, sold: 0, added: 10 });
    expect(stock('P-B')).toEqual({ available: 8, reserved: 2, sold: 0, added: 10 });
  });

  it('reserves nothing when the last item is short, and says which SKU and how much is left', async () => {
    const before = ['P-A', 'P-B', 'P-C'].map(stock);
    const err = await pool
      .reserve('ord-2', [
        { sku: 'P-A', quantity: 1 },
        { sku: 'P-B', quantity: 1 },
        { sku: 'P-C', quantity: 11 },
      ])
      .catch((e) => e);
    expect(err).toBeInstanceOf(OrderError);
    expect(err.code).toBe('insufficient_stock');
    expect(err.details).toEqual({ sku: 'P-C', requested: 11, available: 10 });
    expect(['P-A', 'P-B', 'P-C'].map(stock)).toEqual(before);
  });

  it('fails an unknown SKU with unknown_sku', async () => {
    await expect(pool.reserve('ord-3', [{ sku: 'NOPE', quantity: 1 }])).rejects.toMatchObject({ code: 'unknown_sku' });
  });

  it('releases once however often it is asked, and selling (main thread) turns reserved stock into sold once', async () => {
    await pool.reserve('ord-4', [{ sku: 'P-C', quantity: 4 }]);
    await pool.reserve('ord-5', [{ sku: 'P-C', quantity: 1 }]);
    expect((await pool.release('ord-4'))?.status).toBe('released');
    expect((await pool.release('ord-4'))?.status).toBe('released');
    expect((await ledger.sell('ord-5')).status).toBe('committed');
    expect((await ledger.sell('ord-5')).status).toBe('committed');
    expect(stock('P-C')).toEqual({ available: 9, reserved: 0, sold: 1, added: 10 });
  });

  it('a release that overtakes its reserve leaves a tombstone, so the late reserve takes nothing', async () => {
    expect(await pool.release('ord-6')).toBeNull();
    await expect(pool.reserve('ord-6', [{ sku: 'P-A', quantity: 1 }])).rejects.toMatchObject({ code: 'reservation_released' });
    await expect(ledger.sell('ord-6')).rejects.toMatchObject({ code: 'reservation_released' });
  });

  it('never oversells when many orders race for one SKU on both threads', async () => {
    const results = await Promise.allSettled(Array.from({ length: 120 }, (_, i) => pool.reserve(`race-${i}`, [{ sku: 'P-HOT', quantity: 1 }])));
    const won = results.filter((r) => r.status === 'fulfilled').length;
    const lost = results.filter((r) => r.status === 'rejected' && (r.reason as OrderError).code === 'insufficient_stock').length;
    expect({ won, lost }).toEqual({ won: 50, lost: 70 });
    expect(stock('P-HOT')).toEqual({ available: 0, reserved: 50, sold: 0, added: 50 });
  });

  it('runs a batch of many orders in one transaction, each order all-or-nothing on its own', () => {
    const inventory = createSqliteInventory(db);
    const before = ['P-A', 'P-B'].map(stock);
    const results = inventory.batch([
      { op: 'reserve', order_id: 'b-1', items: [{ sku: 'P-A', quantity: 1 }] },
      { op: 'reserve', order_id: 'b-2', items: [{ sku: 'P-A', quantity: 1 }, { sku: 'P-B', quantity: 10_000 }] },
      { op: 'reserve', order_id: 'b-3', items: [{ sku: 'P-B', quantity: 1 }] },
      { op: 'release', order_id: 'b-3' },
    ]);
    expect(results.map((r) => (r.ok ? r.reservation?.status : r.code))).toEqual(['reserved', 'insufficient_stock', 'reserved', 'released']);
    expect(stock('P-A')).toEqual({ ...before[0], available: before[0].available - 1, reserved: before[0].reserved + 1 });
    expect(stock('P-B')).toEqual(before[1]);
  });
});
