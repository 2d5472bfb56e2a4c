import { expect } from 'vitest';
import { openCommittedReader, type CommittedReader } from '../support/ledger.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';
import { TEST_SECRET } from '../support/service.js';

/*
 * Real server processes sharing one PostgreSQL database: what the cluster tests start,
 * and the checks they share (stock and money add up, every order final exactly once).
 */

export type Api = ReturnType<typeof client>;

export interface Instance {
  id: string;
  server: ServerProcess;
  api: Api;
}

const QUIET_LIMITS = {
  RATE_LIMIT_PER_SEC: '100000',
  RATE_LIMIT_BURST: '100000',
  RATE_LIMIT_IP_PER_SEC: '100000',
  RATE_LIMIT_IP_BURST: '100000',
};

/** Starts one instance per id, all on `url`, at once. */
export async function startInstances(url: string, ids: string[], token: string, env: Record<string, string> = {}): Promise<Instance[]> {
  return Promise.all(
    ids.map(async (id) => {
      const server = await startServerProcess(
        { JWT_SECRET: TEST_SECRET, SEED_DEMO: 'false', LOG_LEVEL: 'info', DATABASE_URL: url, INSTANCE_ID: id, ...QUIET_LIMITS, ...env },
        60_000,
      );
      return { id, server, api: client(server.url, token) };
    }),
  );
}

/** Polls until every order is no longer processing; returns the final views. */
export async function untilFinal(api: Api, ids: readonly string[], timeoutMs = 60_000): Promise<Map<string, any>> {
  const deadline = Date.now() + timeoutMs;
  const finals = new Map<string, any>();
  while (finals.size < ids.length) {
    const open = ids.filter((id) => !finals.has(id));
    for (let i = 0; i < open.length; i += 25) {
      await Promise.all(
        open.slice(i, i + 25).map(async (id) => {
          const { body } = await api('GET', `/api/v1/pipeline/orders/${id}/status`);
          if (body.status !== 'processing') finals.set(id, body);
        }),
      );
    }
    if (finals.size === ids.length) break;
    if (Date.now() > deadline) throw new Error(`${ids.length - finals.size} orders still processing`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return finals;
}

export function reader(url: string): CommittedReader {
  return openCommittedReader({ dbPath: '', url });
}

/**
 * The invariants of issue #10 over everything in the database: per SKU added = available
 * + reserved + sold and reserved = 0; at most one charge and one refund per order;
 * captured − refunded = total for completed orders and 0 otherwise; sold units = the
 * completed orders' units; and each order has exactly one final change in its history.
 */
export async function expectLedgerAddsUp(db: CommittedReader, finals: ReadonlyMap<string, any>, dialect: 'postgres' | 'sqlite' = 'postgres'): Promise<void> {
  for (const p of await db.all('SELECT sku, available, reserved, sold, added FROM products')) {
    expect(p.available + p.reserved + p.sold, p.sku).toBe(p.added);
    expect(p.reserved, p.sku).toBe(0);
  }
  const charges = await db.all(`SELECT order_id, status, amount_cents FROM payment_charges`);
  const byOrder = new Map<string, any>();
  for (const c of charges) {
    expect(byOrder.has(c.order_id), `second charge for ${c.order_id}`).toBe(false);
    byOrder.set(c.order_id, c);
  }
  const refunds = await db.all(`SELECT order_id, COUNT(*) AS n, SUM(amount_cents) AS cents FROM payment_refunds GROUP BY order_id`);
  const refunded = new Map(refunds.map((r) => [r.order_id, r]));
  for (const r of refunds) expect(r.n, r.order_id).toBe(1);
  for (const [id, final] of finals) {
    const charge = byOrder.get(id);
    const captured = charge && (charge.status === 'captured' || charge.status === 'refunded') ? charge.amount_cents : 0;
    const net = captured - (refunded.get(id)?.cents ?? 0);
    expect(net, id).toBe(final.status === 'completed' ? final.order.total_cents : 0);
  }
  const sold = (await db.get<{ s: number }>('SELECT COALESCE(SUM(sold), 0) AS s FROM products'))!;
  const all = await db.all(`SELECT view FROM order_snapshots WHERE status = 'completed'`);
  const completedUnits = all.map((r) => JSON.parse(r.view)).flatMap((o) => o.order.items).reduce((n: number, i: any) => n + i.quantity, 0);
  expect(sold.s).toBe(completedUnits);
  const twice = await db.all(
    `SELECT order_id, COUNT(*) AS n FROM order_changes WHERE ${dialect === 'postgres' ? `view::json->>'status'` : `json_extract(view, '$.status')`} <> 'processing' GROUP BY order_id HAVING COUNT(*) > 1`,
  );
  expect(twice, 'orders with more than one final change').toEqual([]);
}

export async function kill(instance: Instance, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  instance.server.child.kill(signal);
  await instance.server.exited;
}
