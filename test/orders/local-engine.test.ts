import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { newId } from '../../src/domain/ids.js';
import { stateName } from '../../src/machines/order.status.js';
import type { CommitInfo, OrderChange } from '../../src/orders/order.engine.js';
import { orderBody, startTestService, waitForState, type TestService } from '../support/service.js';

/*
 * The engine's promises to the service around it: what it tells is committed, an order's
 * changes come in sequence, and an owner that lost an order's epoch writes nothing more.
 */

const FORWARD = ['placing', 'reserving', 'paying', 'fulfilling', 'notifying', 'completed'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let svc: TestService;
let committed: Database.Database;
/** For each @xstate.snapshot of an order actor: the state it shows and the committed row at that moment. */
const inspected: Array<{ order_id: string; state: string; row: { state: string; version: number } | undefined }> = [];

const row = (orderId: string) =>
  committed.prepare('SELECT status, state, version, owner, epoch FROM order_snapshots WHERE order_id = ?').get(orderId) as
    | { status: string; state: string; version: number; owner: string; epoch: number }
    | undefined;

beforeAll(async () => {
  svc = await startTestService(
    { PAYMENT_SLOW_MS: '300' },
    {
      products: [{ sku: 'SKU-A', name: 'A', price_cents: 500, available: 100 }],
      overrides: {
        inspect: (event: InspectionEvent) => {
          const id = (event.actorRef as { id?: string }).id ?? '';
          if (event.type !== '@xstate.snapshot' || !id.startsWith('ord_')) return;
          const value = (event.snapshot as { value?: unknown }).value;
          if (value === undefined) return;
          inspected.push({ order_id: id, state: stateName(value as string), row: row(id) });
        },
      },
    },
  );
  committed = new Database(join(svc.dir, 'ordersaga.db'), { readonly: true });
});
afterAll(async () => {
  committed?.close();
  await svc?.stop();
});

describe('the local order engine', () => {
  it('tells subscribers each change after it is committed, numbered 1, 2, 3… to the final one', async () => {
    const seen: Array<OrderChange & { row: ReturnType<typeof row> }> = [];
    const commits: CommitInfo[] = [];
    const orderId = newId('ord');
    const unsubscribe = svc.engine.subscribe((changes, commit) => {
      commits.push(commit);
      for (const c of changes) if (c.order_id === orderId) seen.push({ ...c, row: row(orderId) });
    });
    try {
      await svc.engine.submit({ order_id: orderId, user_id: 'alice', request: orderBody() });
      const { settled, view } = await svc.engine.waitUntilSettled(orderId, 10_000);
      expect(settled).toBe(true);
      expect(view.status).toBe('completed');
    } finally {
      unsubscribe();
    }
    expect(seen.map((c) => c.seq)).toEqual(seen.map((_, i) => i + 1));
    expect(seen.at(-1)!.view).toMatchObject({ status: 'completed', state: 'completed' });
    // Each change says when it was committed: the time its view was stamped with.
    expect(seen.every((c) => c.at === c.view.updated_at && Number.isFinite(Date.parse(c.at)))).toBe(true);
    for (const change of seen) {
      // Told after the commit: a second connection already sees this change (or a later one).
      expect(change.row!.version).toBeGreaterThanOrEqual(change.seq);
      expect(FORWARD.indexOf(change.row!.state)).toBeGreaterThanOrEqual(FORWARD.indexOf(change.view.state));
    }
    // One change per commit: the states of one turn commit as its latest.
    expect(seen.length).toBeGreaterThanOrEqual(2);
    // The history keeps exactly what was told, and each commit says what it carried.
    expect(await svc.engine.history(orderId, 0, 100)).toEqual(seen.map(({ row: _row, ...change }) => change));
    expect(await svc.engine.history(orderId, seen.length - 1, 100)).toEqual([expect.objectContaining({ seq: seen.length })]);
    expect(commits.every((c) => c.states >= 1 && c.fenced === 0 && c.duration_ms >= 0)).toBe(true);
  });

  it('forwards inspection events only once the states they lead to are committed', async () => {
    const orderId = newId('ord');
    await svc.engine.submit({ order_id: orderId, user_id: 'alice', request: orderBody() });
    await svc.engine.waitUntilSettled(orderId, 10_000);
    await sleep(50);
    const mine = inspected.filter((i) => i.order_id === orderId);
    expect(mine.length).toBeGreaterThan(3);
    for (const { state, row } of mine) {
      expect(row, `row when the inspector saw ${state}`).toBeDefined();
      expect(FORWARD.indexOf(row!.state)).toBeGreaterThanOrEqual(FORWARD.indexOf(state));
    }
  });

  it("drops an order whose epoch another owner has taken, and never writes that order's state again", async () => {
    const token = await svc.token('alice');
    const res = await svc.call('POST', '/api/v1/pipeline/orders/async', { token, body: orderBody({ token: 'tok_slow' }) });
    const orderId = (await res.json()).order_id as string;
    await waitForState(svc, orderId, token, 'paying');
    expect(svc.engine.stats().live).toBeGreaterThanOrEqual(1);
    // Another owner takes the order over while its payment is in flight.
    await svc.stores.flush();
    svc.db.prepare(`UPDATE order_snapshots SET owner = 'another-instance', epoch = epoch + 1 WHERE order_id = ?`).run(orderId);
    const taken = row(orderId)!;

    await svc.engine.waitUntilSettled(orderId, 2_000);
    await sleep(400); // the slow payment (300 ms) finished and its next state was refused
    expect(svc.engine.stats().live).toBe(0);
    expect(row(orderId)).toEqual(taken);
    expect((await svc.engine.get(orderId))?.state).toBe('paying');
    await sleep(300);
    expect(row(orderId)).toEqual(taken);
  });
});
