import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '../../src/domain/ids.js';
import { createLogger } from '../../src/logger.js';
import { openDatabase } from '../../src/store/sqlite/sqlite.database.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite.stores.js';
import { ROOT } from '../support/process.js';

/*
 * Order loops as separate processes on one SQLite file, each an engine with a ClusterMember
 * (test/fixtures/sqlite-loop.ts), this test relaying their ClusterBus as the primary will:
 * a cancel reaches the loop that owns the order, and a killed loop's orders are taken over
 * and finish exactly once.
 */
interface Loop {
  id: string;
  child: ChildProcess;
  call<T>(call: 'submit' | 'cancel' | 'get', arg: unknown): Promise<T>;
}

let loops: Loop[] = [];
let dir: string | undefined;
afterEach(() => {
  for (const l of loops) l.child.kill('SIGKILL');
  loops = [];
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function startLoops(path: string, ids: string[], env: Record<string, string>): Promise<Loop[]> {
  const started = await Promise.all(
    ids.map(async (id) => {
      const child = fork(join(ROOT, 'test/fixtures/sqlite-loop.ts'), [], {
        cwd: ROOT,
        execArgv: ['--import', 'tsx'],
        env: { ...process.env, DB_PATH: path, INSTANCE_ID: id, ...env },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
      let next = 0;
      const ready = new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`loop ${id} exited with ${code}`)));
        child.on('message', (m: any) => {
          if (m.ready) resolve();
          if (m.id !== undefined) {
            const p = pending.get(m.id)!;
            pending.delete(m.id);
            if (m.error) p.reject(new Error(m.error));
            else p.resolve(m.result);
          }
        });
      });
      await ready;
      const loop: Loop = {
        id,
        child,
        call: (call, arg) =>
          new Promise((resolve, reject) => {
            pending.set(++next, { resolve, reject });
            child.send({ id: next, call, arg });
          }),
      };
      return loop;
    }),
  );
  // The primary's relay: what one loop publishes reaches every other live loop.
  for (const from of started) {
    from.child.on('message', (m: any) => {
      if (!m.bus) return;
      for (const to of started) if (to !== from && to.child.connected) to.child.send({ bus: m.bus });
    });
  }
  return started;
}

const shipping = { name: 'n', line1: 'l', city: 'c', postal_code: 'p', country: 'DE' };
const submit = (loop: Loop, token: string) =>
  loop.call<{ order_id: string }>('submit', { order_id: newId('ord'), user_id: 'alice', request: { items: [{ sku: 'LOOP-SKU', quantity: 1 }], payment: { token }, shipping } });

describe('order loops sharing one SQLite file', () => {
  it("apply a cancel at the loop that owns the order, and finish a killed loop's orders on another, each exactly once", async () => {
    dir = mkdtempSync(join(tmpdir(), 'ordersaga-loops-'));
    const path = join(dir, 'store.db');
    const seed = openSqliteStore(path, createLogger('silent'));
    await seed.stores.catalog.upsertProduct({ sku: 'LOOP-SKU', name: 'l', price_cents: 100, available: 1000 });
    seed.close();
    const [a, b] = (loops = await startLoops(path, ['loop-a', 'loop-b'], { LEASE_MS: '1500', PAYMENT_SLOW_MS: '1500' }));
    const db = openDatabase(path);
    try {
      // A cancel received by loop b for an order loop a runs: stored, a woken over the bus, a's answer relayed.
      const owned = await submit(a!, 'tok_slow');
      const answer = await b!.call<{ order_id: string }>('cancel', owned.order_id);
      expect(answer.order_id).toBe(owned.order_id);
      // Answered by its owner through the inbox (not b's fallback after SYNC_WAIT_MS): the event was applied, with a 202.
      expect(db.prepare('SELECT applied_at IS NOT NULL AS applied, result_status FROM order_inbox WHERE order_id = ?').all(owned.order_id)).toEqual([
        { applied: 1, result_status: 202 },
      ]);

      // Orders in flight at loop a (slow payments) when it is killed.
      const inFlight = await Promise.all(Array.from({ length: 20 }, () => submit(a!, 'tok_slow')));
      const ids = inFlight.map((o) => o.order_id);
      const stateOf = db.prepare<[string], { state: string; owner: string; status: string }>('SELECT state, owner, status FROM order_snapshots WHERE order_id = ?');
      for (let t = Date.now(); ids.some((id) => stateOf.get(id)?.state !== 'paying') && Date.now() - t < 10_000; ) await new Promise((r) => setTimeout(r, 20));
      a!.child.kill('SIGKILL');

      const deadline = Date.now() + 20_000;
      while (ids.some((id) => stateOf.get(id)?.status !== 'completed') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      for (const id of ids) expect({ id, ...stateOf.get(id) }).toMatchObject({ id, status: 'completed', owner: 'loop-b' });
      const once = db.prepare<[string], Record<string, number>>(
        `SELECT (SELECT count(*) FROM payment_charges WHERE order_id = @id) AS charges, (SELECT count(*) FROM shipments WHERE order_id = @id) AS shipments,
                (SELECT count(*) FROM reservations WHERE order_id = @id AND status = 'committed') AS sold`,
      );
      for (const id of ids) expect({ id, ...once.get({ id } as never) }).toEqual({ id, charges: 1, shipments: 1, sold: 1 });
      expect(stateOf.get(owned.order_id)?.status).toBe('cancelled');
      expect(db.prepare(`SELECT available, reserved, sold, added FROM products WHERE sku = 'LOOP-SKU'`).get()).toEqual({ available: 980, reserved: 0, sold: 20, added: 1000 });
    } finally {
      db.close();
    }
  }, 60_000);
});
