import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { expectLedgerAddsUp, untilFinal } from '../cluster/support.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { alive, LOOPS_RUNNABLE, loopsStore, startLoops, STORE_LABEL, type Loops, type LoopsStore } from './support.js';

/*
 * A loop that dies loses nothing, and the service stops and starts as one: two order loops
 * (WORKERS=2) as real processes; one is killed with SIGKILL, the other throws an error nothing
 * catches (a test preload makes SIGUSR2 throw in a loop: no hook in the service); the primary
 * starts a replacement in the slot, and every order finishes with stock and money adding up.
 * Then SIGTERM to the primary, a restart, and kill -9 of the primary.
 */
const PRELOAD = new URL('./fixtures/throw-on-sigusr2.preload.mjs', import.meta.url).href;
const KINDS = ['tok_visa', 'tok_slow', 'tok_declined', 'AQ'] as const;
type Placed = { id: string; kind: (typeof KINDS)[number] };

let admin: string;
beforeAll(async () => {
  admin = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
});

async function place(loops: Loops, n: number, from: number): Promise<Placed[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, j) => {
      const i = from + j;
      const kind = KINDS[i % 4]!;
      const body = orderBody({ items: [{ sku: i % 2 ? 'SKU-A' : 'SKU-B', quantity: 1 + (i % 3) }], token: kind === 'AQ' ? 'tok_visa' : kind, country: kind === 'AQ' ? 'AQ' : 'DE', user_id: `user-${i % 5}` });
      const res = await loops.api('POST', '/api/v1/pipeline/orders/async', body);
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return { id: res.body.order_id as string, kind };
    }),
  );
}

function expectOutcomes(placed: readonly Placed[], finals: ReadonlyMap<string, any>): void {
  for (const { id, kind } of placed) {
    const final = finals.get(id);
    if (kind === 'tok_visa' || kind === 'tok_slow') expect(final.status, `${id} ${kind}`).toBe('completed');
    if (kind === 'tok_declined') expect(final.failure?.code, id).toBe('payment_declined');
    if (kind === 'AQ') expect(final.failure?.code, id).toBe('fulfillment_failed');
  }
}

/**
 * Reads the status of every order once, one after another, each on a new connection: what a
 * client gets while a loop is down or starting. (A kept-alive connection to the dead loop dies
 * with it; its requests in flight fail as with any crashed server.)
 */
async function readAll(loops: Loops, placed: readonly Placed[]): Promise<number[]> {
  const statuses: number[] = [];
  for (const { id } of placed) {
    statuses.push(
      await new Promise<number>((resolve, reject) => {
        const req = request(`${loops.server.url}/api/v1/pipeline/orders/${id}/status`, { agent: false, headers: { Authorization: `Bearer ${admin}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      }),
    );
  }
  return statuses;
}

describe.skipIf(!LOOPS_RUNNABLE)(`an order loop that dies, on ${STORE_LABEL}`, () => {
  let store: LoopsStore;
  let loops: Loops;
  const all: Placed[] = [];

  beforeAll(async () => {
    store = await loopsStore('loopcrash');
    loops = await startLoops(store, 'loopcrash', admin, {
      // Slow payments keep orders in flight when their loop dies.
      PAYMENT_SLOW_MS: '3000',
      ORDER_TIMEOUT_MS: '120000',
      SYNC_WAIT_MS: '15000',
      // A lease longer than a loop takes to start: the replacement, not the other loop's reaper, resumes the orders.
      LEASE_MS: '60000',
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`.trim(),
    });
    for (const sku of ['SKU-A', 'SKU-B']) expect((await loops.api('PUT', `/api/v1/inventory/${sku}`, { name: sku, price_cents: 400, available: 5000 })).status).toBeLessThan(300);
  }, 90_000);

  afterAll(async () => {
    if (process.env.LOOPS_LOGS && loops) (await import('node:fs')).writeFileSync(`${process.env.LOOPS_LOGS}/loop-crash.log`, loops.server.output());
    if (loops) {
      loops.server.child.kill('SIGKILL');
      await loops.server.exited;
      // The loops leave with their primary (they exit when its IPC channel closes).
      for (const pid of loops.pids().values()) for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    }
    await store?.drop();
  });

  for (const [how, slot, kill] of [
    ['kill -9', 1, (pid: number) => process.kill(pid, 'SIGKILL')],
    ['an uncaught error thrown', 0, (pid: number) => process.kill(pid, 'SIGUSR2')],
  ] as const) {
    it(`finish every order after ${how} in a loop mid-flight, with a replacement in its slot`, async () => {
      const placed = await place(loops, 80, all.length);
      all.push(...placed);
      const owner = loops.owner(slot);
      const running = await store.reader.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE owner = ? AND status = 'processing'`, owner);
      expect(running!.n, `orders in flight on loop ${slot}`).toBeGreaterThan(0);
      const pid = loops.pids().get(slot)!;
      kill(pid);
      for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
      expect(alive(pid)).toBe(false);

      // The service keeps answering meanwhile: every order's status, on new requests.
      expect(new Set(await readAll(loops, placed))).toEqual(new Set([200]));
      const replacement = await loops.replaced(slot, pid);
      expect(alive(replacement)).toBe(true);
      const lines = loops.lines();
      const died = lines.findIndex((l) => l.msg === 'order loop exited unexpectedly; starting a replacement in its slot' && l.pid === pid);
      expect(lines[died], 'the primary logs the loop that died').toMatchObject(how === 'kill -9' ? { loop: slot, signal: 'SIGKILL' } : { loop: slot, code: 1 });
      // The replacement has its predecessor's owner id and resumes its orders as it starts.
      const resumed = lines.slice(died).find((l) => l.msg === 'resumed unfinished orders' && l.loop === slot);
      expect(resumed?.orders, 'orders the replacement resumed').toBeGreaterThan(0);

      const finals = await untilFinal(loops.api, all.map((o) => o.id), 90_000);
      expectOutcomes(all, finals);
      const left = await store.reader.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots WHERE status = 'processing'`);
      expect(left!.n).toBe(0);
      await expectLedgerAddsUp(store.reader, finals, store.dialect);
    }, 150_000);
  }
});

describe.skipIf(!LOOPS_RUNNABLE)(`stopping and starting a service of order loops, on ${STORE_LABEL}`, () => {
  let store: LoopsStore;
  let loops: Loops | undefined;

  beforeAll(async () => {
    store = await loopsStore('loopstop');
  });

  afterAll(async () => {
    if (loops && loops.server.child.exitCode === null && loops.server.child.signalCode === null) {
      loops.server.child.kill('SIGKILL');
      await loops.server.exited;
    }
    await store?.drop();
  });

  it('exit 0 on SIGTERM to the primary with every loop gone, and resume the unfinished orders at the next start', async () => {
    // Payments slower than the grace: orders are stopped mid-way and must resume after the restart.
    loops = await startLoops(store, 'loopstop', admin, { PAYMENT_SLOW_MS: '30000', SHUTDOWN_GRACE_MS: '300', ORDER_TIMEOUT_MS: '120000' });
    for (const sku of ['SKU-A', 'SKU-B']) await loops.api('PUT', `/api/v1/inventory/${sku}`, { name: sku, price_cents: 400, available: 5000 });
    const placed = await place(loops, 40, 0);
    const pids = [...loops.pids().values()];
    expect(pids).toHaveLength(2);
    loops.server.child.kill('SIGTERM');
    expect(await loops.server.exited).toEqual({ code: 0, signal: null });
    for (const pid of pids) expect(alive(pid), `loop ${pid}`).toBe(false);
    const unfinished = await store.reader.all(`SELECT owner FROM order_snapshots WHERE status = 'processing'`);
    expect(unfinished.length).toBeGreaterThan(0);
    // Left with the loops that ran them (which loop takes a connection is the primary's round robin).
    for (const { owner } of unfinished) expect(['loopstop-0', 'loopstop-1']).toContain(owner);

    loops = await startLoops(store, 'loopstop', admin, { PAYMENT_SLOW_MS: '200' });
    const finals = await untilFinal(loops.api, placed.map((o) => o.id), 90_000);
    expectOutcomes(placed, finals);
    await expectLedgerAddsUp(store.reader, finals, store.dialect);
  }, 150_000);

  it('take the loops with it when the primary is killed', async () => {
    expect(loops).toBeDefined();
    const pids = [...loops!.pids().values()];
    expect(pids).toHaveLength(2);
    loops!.server.child.kill('SIGKILL');
    await loops!.server.exited;
    for (const pid of pids) {
      for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
      expect(alive(pid), `loop ${pid} outlived its primary`).toBe(false);
    }
  });
});
