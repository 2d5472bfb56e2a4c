import Database from 'better-sqlite3';
import pg from 'pg';
import type { Service } from '../../src/main.js';

/*
 * Store-neutral reads of what a service has committed: stock, money and rows, from a
 * second connection, so a test sees what a crash would leave, never a write still in
 * flight. Both stores have the same tables and columns; SQL is written with `?`
 * placeholders, as SQLite takes them, and numbered for PostgreSQL.
 */

export interface CommittedReader {
  all<T = any>(sql: string, ...params: unknown[]): Promise<T[]>;
  get<T = any>(sql: string, ...params: unknown[]): Promise<T | undefined>;
  /** A write, for tests that arrange a state directly (e.g. an expired key); returns the rows changed. */
  run(sql: string, ...params: unknown[]): Promise<number>;
  close(): Promise<void>;
}

const readers = new Map<Service, CommittedReader>();

/**
 * The service's committed data, through a connection of the test's own (closed by
 * `closeReaders`). It does not wait for writes in flight: what it shows is what a crash
 * at that moment would leave.
 */
export function committed(svc: Service): CommittedReader {
  let reader = readers.get(svc);
  if (!reader) readers.set(svc, (reader = open(svc)));
  return reader;
}

export async function closeReaders(svc: Service): Promise<void> {
  const reader = readers.get(svc);
  readers.delete(svc);
  await reader?.close();
}

function open(svc: Service): CommittedReader {
  return openCommittedReader({ dbPath: svc.config.dbPath, url: svc.config.database.url });
}

/** A reader of a store by its settings (`DB_PATH`, or `DATABASE_URL` when set), e.g. one a server process wrote. */
export function openCommittedReader(target: { dbPath: string; url?: string | undefined }): CommittedReader {
  const { url } = target;
  if (url === undefined) {
    const db = new Database(target.dbPath);
    db.pragma('busy_timeout = 5000');
    return {
      all: async (sql, ...params) => db.prepare(sql).all(...params) as any[],
      get: async (sql, ...params) => db.prepare(sql).get(...params) as any,
      run: async (sql, ...params) => db.prepare(sql).run(...params).changes,
      close: async () => void db.close(),
    };
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  // Counts and sums come back as numbers, as from SQLite.
  const types = {
    getTypeParser: (oid: number, format?: 'text' | 'binary') =>
      oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format),
  } as unknown as pg.CustomTypesConfig;
  const query = (sql: string, params: unknown[]) => pool.query({ text: numbered(sql), values: params, types });
  return {
    all: async (sql, ...params) => (await query(sql, params)).rows,
    get: async (sql, ...params) => (await query(sql, params)).rows[0],
    run: async (sql, ...params) => (await query(sql, params)).rowCount ?? 0,
    close: () => pool.end(),
  };
}

export interface StockRow {
  sku: string;
  available: number;
  reserved: number;
  sold: number;
  added: number;
}

/** Per-SKU stock and per-order money, as committed once the writes made so far are. */
export async function ledger(svc: Service) {
  await svc.stores.flush();
  const db = committed(svc);
  const products = await db.all<StockRow>('SELECT sku, available, reserved, sold, added FROM products ORDER BY sku');
  const charges = await db.all<{ order_id: string; status: string; amount_cents: number }>('SELECT order_id, status, amount_cents FROM payment_charges');
  const refunds = await db.all<{ order_id: string; s: number }>('SELECT order_id, SUM(amount_cents) AS s FROM payment_refunds GROUP BY order_id');
  const byOrder = new Map(charges.map((c) => [c.order_id, c]));
  const refunded = new Map(refunds.map((r) => [r.order_id, r.s]));
  const money = (orderId: string) => {
    const charge = byOrder.get(orderId);
    const captured = charge && (charge.status === 'captured' || charge.status === 'refunded') ? charge.amount_cents : 0;
    const back = refunded.get(orderId) ?? 0;
    return { captured, refunded: back, net: captured - back };
  };
  return { products, money };
}
