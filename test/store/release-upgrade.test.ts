import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/store/sqlite/sqlite.database.js';
import { MIGRATIONS } from '../../src/store/sqlite/sqlite.migrations.js';
import { startTestService, waitForFinal, type TestService } from '../support/service.js';

/*
 * A database written by release 0.1.0 (schema versions 1 and 2, snapshots without views;
 * test/fixtures/release-0.1.0.db.json, made with that release): this one migrates it,
 * answers for its orders exactly as that release did, and finishes the unfinished ones.
 */
const fixture = JSON.parse(readFileSync(new URL('../fixtures/release-0.1.0.db.json', import.meta.url), 'utf8')) as {
  orders: Record<'completed' | 'failed' | 'parked' | 'processing', string>;
  status_answers: Record<string, any>;
  tables: Record<string, Array<Record<string, unknown>>>;
};

let dir: string;
let svc: TestService;
let admin: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ordersaga-upgrade-'));
  const path = join(dir, 'ordersaga.db');
  const old = new Database(path);
  migrate(old, MIGRATIONS.filter((m) => m.version <= 2));
  for (const [table, rows] of Object.entries(fixture.tables)) {
    for (const stored of rows) {
      const row = table === 'order_snapshots' ? withDeadlineAhead(stored) : stored;
      const columns = Object.keys(row);
      old.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`).run(row);
    }
  }
  old.close();
  svc = await startTestService({ DB_PATH: path, PAYMENT_SLOW_MS: '50' });
  admin = await svc.token('ops', 'admin');
});
afterAll(async () => {
  await svc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The fixture's unfinished order keeps a deadline in the future, whenever the test runs. */
function withDeadlineAhead(row: Record<string, unknown>): Record<string, unknown> {
  if (row.status !== 'processing') return row;
  const snapshot = JSON.parse(row.snapshot as string) as {
    context: { deadline_at: string };
    children: { awaitDeadline: { snapshot: { input: { until: string } } } };
  };
  // The deadline's wait re-arms from its own persisted input, which copies the context's.
  const ahead = new Date(Date.now() + 3_600_000).toISOString();
  snapshot.context.deadline_at = ahead;
  snapshot.children.awaitDeadline.snapshot.input.until = ahead;
  return { ...row, snapshot: JSON.stringify(snapshot) };
}

const status = async (id: string) => (await svc.call('GET', `/api/v1/pipeline/orders/${id}/status`, { token: admin })).json();

describe('a database written by release 0.1.0', () => {
  it('gets the new columns, and a view for every stored order', () => {
    const versions = svc.db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
    expect(svc.db.prepare('SELECT COUNT(*) FROM order_snapshots WHERE view IS NULL').pluck().get()).toBe(0);
  });

  it("starts each order's history with its stored state", async () => {
    const [change] = await svc.engine.history(fixture.orders.completed, 0, 10);
    expect(change).toEqual({ order_id: fixture.orders.completed, seq: expect.any(Number), at: fixture.status_answers.completed.updated_at, view: fixture.status_answers.completed });
  });

  it('answers for its final orders exactly as that release did', async () => {
    for (const kind of ['completed', 'failed'] as const) {
      expect(await status(fixture.orders[kind]), kind).toEqual(fixture.status_answers[kind]);
    }
    const { processing_time: _t, processing_time_ms: _ms, ...parked } = fixture.status_answers.parked;
    expect(await status(fixture.orders.parked)).toMatchObject(parked);
  });

  it('resumes the order that was in flight, and retries the parked one to its end', async () => {
    const resumed = await waitForFinal(svc, fixture.orders.processing, admin);
    expect(resumed).toMatchObject({ status: 'completed', payment_result: { status: 'captured' } });

    const res = await svc.call('POST', `/api/v1/pipeline/orders/${fixture.orders.parked}/retry`, { token: admin });
    expect(res.status).toBe(202);
    const retried = await waitForFinal(svc, fixture.orders.parked, admin);
    expect(retried).toMatchObject({ status: 'failed', failure: { stage: 'fulfillment', code: 'fulfillment_failed' }, payment_result: { status: 'refunded' } });
    const products = svc.db.prepare('SELECT sku, available, reserved, sold, added FROM products ORDER BY sku').all() as any[];
    for (const p of products) {
      expect(p.available + p.reserved + p.sold, p.sku).toBe(p.added);
      expect(p.reserved, p.sku).toBe(0);
    }
  });
});
