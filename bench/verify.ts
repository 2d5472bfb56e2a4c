/**
 * Correctness after load: reads the server's SQLite file read-only and checks that stock
 * and money add up once every order is final.
 */
import Database from 'better-sqlite3';

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

function open(dbPath: string): Database.Database {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

/** Polls `order_snapshots` until no order is `processing` twice in a row with the same row count. */
export async function waitForFinal(dbPath: string, timeoutMs = 90_000): Promise<{ settled: boolean; ms: number; processing: number }> {
  const started = Date.now();
  const db = open(dbPath);
  try {
    const q = db.prepare<[], { total: number; processing: number }>(
      `SELECT COUNT(*) AS total, COALESCE(SUM(status = 'processing'), 0) AS processing FROM order_snapshots`,
    );
    let last = -1;
    for (;;) {
      const { total, processing } = q.get()!;
      if (processing === 0 && total === last) return { settled: true, ms: Date.now() - started, processing };
      last = processing === 0 ? total : -1;
      if (Date.now() - started > timeoutMs) return { settled: false, ms: Date.now() - started, processing };
      await sleep(processing === 0 ? 150 : 100);
    }
  } finally {
    db.close();
  }
}

/**
 * Invariants, once all orders are final:
 * - per SKU: available + reserved + sold = added, reserved = 0, nothing negative, and
 *   sold = the quantity of that SKU over completed orders (nothing sold twice or lost);
 * - per order: captured − refunded = total_cents for completed orders, 0 for all others
 *   (and for charges of orders with no snapshot); no order parked in compensation_failed.
 */
export async function verifyInvariants(dbPath: string, timeoutMs?: number): Promise<VerifyResult> {
  const wait = await waitForFinal(dbPath, timeoutMs);
  const db = open(dbPath);
  const violations: string[] = [];
  const violate = (msg: string) => violations.push(msg);
  try {
    if (!wait.settled) violate(`${wait.processing} orders still processing after ${wait.ms} ms`);

    const byStatus: Record<string, number> = {};
    for (const row of db.prepare<[], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM order_snapshots GROUP BY status').all()) {
      byStatus[row.status] = row.n;
    }
    if (byStatus.compensation_failed) violate(`${byStatus.compensation_failed} orders parked in compensation_failed`);

    // --- stock --------------------------------------------------------------------------
    const products = db
      .prepare<[], { sku: string; available: number; reserved: number; sold: number; added: number }>(
        'SELECT sku, available, reserved, sold, added FROM products',
      )
      .all();
    const soldByOrders = new Map(
      db
        .prepare<[], { sku: string; qty: number }>(
          `SELECT j.value ->> 'sku' AS sku, SUM(j.value ->> 'quantity') AS qty
             FROM order_snapshots s, json_each(s.snapshot, '$.context.order.items') j
            WHERE s.status = 'completed' GROUP BY 1`,
        )
        .all()
        .map((r) => [r.sku, r.qty]),
    );
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
      db
        .prepare<[], { order_id: string; cents: number }>(
          `SELECT order_id, SUM(amount_cents) AS cents FROM payment_charges WHERE status IN ('captured', 'refunded') GROUP BY order_id`,
        )
        .all()
        .map((r) => [r.order_id, r.cents]),
    );
    const refunded = new Map(
      db
        .prepare<[], { order_id: string; cents: number }>('SELECT order_id, SUM(amount_cents) AS cents FROM payment_refunds GROUP BY order_id')
        .all()
        .map((r) => [r.order_id, r.cents]),
    );
    const orders = db
      .prepare<[], { order_id: string; status: string; total: number | null }>(
        `SELECT order_id, status, json_extract(snapshot, '$.context.order.total_cents') AS total FROM order_snapshots`,
      )
      .all();
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
    db.close();
  }
}

/** Orders that reached `completed` between two instants (by the time of their final snapshot). */
export function completedBetween(dbPath: string, from: Date, to: Date): number {
  const db = open(dbPath);
  try {
    return db
      .prepare<[string, string], { n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE status = 'completed' AND updated_at >= ? AND updated_at < ?`)
      .get(from.toISOString(), to.toISOString())!.n;
  } finally {
    db.close();
  }
}
