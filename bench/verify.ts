/**
 * Correctness after load: reads the server's store (its SQLite file read-only, or the
 * PostgreSQL database every instance shares) and checks that stock and money add up once
 * every order is final. The queries are plain SQL both stores run; JSON is read here.
 */
import Database from 'better-sqlite3';
import pg from 'pg';

/** Where the servers under test keep their data: a SQLite file or a PostgreSQL database. */
export type StoreTarget = string | { url: string };

interface Reader {
  all<T>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

function open(target: StoreTarget): Reader {
  if (typeof target === 'string') {
    const db = new Database(target, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    return { all: async (sql, params = []) => db.prepare(sql).all(...params) as any[], close: async () => void db.close() };
  }
  const types = {
    getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)),
  } as unknown as pg.CustomTypesConfig;
  const pool = new pg.Pool({ connectionString: target.url, max: 1, types });
  pool.on('error', () => undefined);
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return { all: async (sql, params = []) => (await pool.query(numbered(sql), params)).rows, close: () => pool.end() };
}

export interface VerifyResult {
  ok: boolean;
  /** How long it took for every order to leave `processing`. */
  settle_ms: number;
  orders: number;
  by_status: Record<string, number>;
  skus: number;
  /** Human-readable, at most 20 listed (`violation_count` has the total). */
  violations: string[];
  violation_count: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `order_snapshots` until no order is `processing` twice in a row with the same row count. */
export async function waitForFinal(target: StoreTarget, timeoutMs = 90_000): Promise<{ settled: boolean; ms: number; processing: number }> {
  const started = Date.now();
  const db = open(target);
  try {
    let last = -1;
    for (;;) {
      const [{ total, processing }] = await db.all<{ total: number; processing: number }>(
        `SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN status = 'processing' THEN 1 ELSE 0 END), 0) AS processing FROM order_snapshots`,
      ) as [{ total: number; processing: number }];
      if (processing === 0 && total === last) return { settled: true, ms: Date.now() - started, processing };
      last = processing === 0 ? total : -1;
      if (Date.now() - started > timeoutMs) return { settled: false, ms: Date.now() - started, processing };
      await sleep(processing === 0 ? 150 : 100);
    }
  } finally {
    await db.close();
  }
}

/**
 * Invariants, once all orders are final:
 * - per SKU: available + reserved + sold = added, reserved = 0, nothing negative, and
 *   sold = the quantity of that SKU over completed orders (nothing sold twice or lost);
 * - per order: captured − refunded = total_cents for completed orders, 0 for all others
 *   (and for charges of orders with no snapshot); no order parked in compensation_failed.
 */
export async function verifyInvariants(target: StoreTarget, timeoutMs?: number): Promise<VerifyResult> {
  const wait = await waitForFinal(target, timeoutMs);
  const db = open(target);
  const violations: string[] = [];
  const violate = (msg: string) => violations.push(msg);
  try {
    if (!wait.settled) violate(`${wait.processing} orders still processing after ${wait.ms} ms`);

    const byStatus: Record<string, number> = {};
    for (const row of await db.all<{ status: string; n: number }>('SELECT status, COUNT(*) AS n FROM order_snapshots GROUP BY status')) {
      byStatus[row.status] = row.n;
    }
    // Each order's view (the API's JSON), read here rather than with either store's JSON functions.
    const orders = (await db.all<{ order_id: string; status: string; view: string }>('SELECT order_id, status, view FROM order_snapshots')).map((o) => {
      const order = (JSON.parse(o.view) as { order?: { total_cents: number; items: Array<{ sku: string; quantity: number }> } | null }).order ?? null;
      return { order_id: o.order_id, status: o.status, total: order?.total_cents ?? null, items: order?.items ?? [] };
    });
    if (byStatus.compensation_failed) violate(`${byStatus.compensation_failed} orders parked in compensation_failed`);

    // --- stock --------------------------------------------------------------------------
    const products = await db.all<{ sku: string; available: number; reserved: number; sold: number; added: number }>(
      'SELECT sku, available, reserved, sold, added FROM products',
    );
    const soldByOrders = new Map<string, number>();
    for (const o of orders) if (o.status === 'completed') for (const i of o.items) soldByOrders.set(i.sku, (soldByOrders.get(i.sku) ?? 0) + i.quantity);
    for (const p of products) {
      if (p.available + p.reserved + p.sold !== p.added) {
        violate(`${p.sku}: available ${p.available} + reserved ${p.reserved} + sold ${p.sold} ≠ added ${p.added}`);
      }
      if (p.reserved !== 0) violate(`${p.sku}: reserved ${p.reserved} ≠ 0 with every order final`);
      if (p.available < 0 || p.sold < 0) violate(`${p.sku}: negative stock (available ${p.available}, sold ${p.sold})`);
      const expectedSold = soldByOrders.get(p.sku) ?? 0;
      if (p.sold !== expectedSold) violate(`${p.sku}: sold ${p.sold} ≠ ${expectedSold} in completed orders`);
      soldByOrders.delete(p.sku);
    }
    for (const [sku, qty] of soldByOrders) violate(`completed orders hold ${qty} × ${sku}, which is not in the catalog`);

    // --- money --------------------------------------------------------------------------
    const captured = new Map(
      (
        await db.all<{ order_id: string; cents: number }>(
          `SELECT order_id, SUM(amount_cents) AS cents FROM payment_charges WHERE status IN ('captured', 'refunded') GROUP BY order_id`,
        )
      ).map((r) => [r.order_id, r.cents]),
    );
    const refunded = new Map(
      (await db.all<{ order_id: string; cents: number }>('SELECT order_id, SUM(amount_cents) AS cents FROM payment_refunds GROUP BY order_id')).map((r) => [
        r.order_id,
        r.cents,
      ]),
    );
    const seen = new Set<string>();
    for (const o of orders) {
      seen.add(o.order_id);
      const net = (captured.get(o.order_id) ?? 0) - (refunded.get(o.order_id) ?? 0);
      if (o.status === 'completed') {
        if (o.total === null) violate(`${o.order_id}: completed without a total`);
        else if (net !== o.total) violate(`${o.order_id}: completed, total ${o.total} but captured − refunded = ${net}`);
      } else if (net !== 0) {
        violate(`${o.order_id}: ${o.status}, but captured − refunded = ${net} (should be 0)`);
      }
    }
    for (const id of new Set([...captured.keys(), ...refunded.keys()])) {
      if (seen.has(id)) continue;
      const net = (captured.get(id) ?? 0) - (refunded.get(id) ?? 0);
      if (net !== 0) violate(`${id}: money held (${net}) for an order with no snapshot`);
    }

    return {
      ok: violations.length === 0,
      settle_ms: wait.ms,
      orders: orders.length,
      by_status: byStatus,
      skus: products.length,
      violations: violations.slice(0, 20),
      violation_count: violations.length,
    };
  } finally {
    await db.close();
  }
}

/** Orders that reached `completed` between two instants (by the time of their final snapshot). */
export async function completedBetween(target: StoreTarget, from: Date, to: Date): Promise<number> {
  const db = open(target);
  try {
    const [row] = await db.all<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE status = 'completed' AND updated_at >= ? AND updated_at < ?`, [
      from.toISOString(),
      to.toISOString(),
    ]);
    return row!.n;
  } finally {
    await db.close();
  }
}
