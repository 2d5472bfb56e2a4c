import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { expectLedgerAddsUp, untilFinal } from '../cluster/support.js';
import { client } from '../support/process.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { answeredBy, loopsThatAnswered, LOOPS_RUNNABLE, loopsStore, startLoops, STORE_LABEL, type Loops, type LoopsStore } from './support.js';

/*
 * One service of two order loops (WORKERS=2) behind one port, as a client sees it: orders land
 * on both loops, each owned by its loop; any request is answered alike whichever loop takes it;
 * one order per Idempotency-Key, one rate limit and one /metrics for the service as a whole.
 */
let store: LoopsStore;
let loops: Loops;
let admin: string;
const orders = '/api/v1/pipeline/orders';

describe.skipIf(!LOOPS_RUNNABLE)(`two order loops behind one port on ${STORE_LABEL}`, () => {
  beforeAll(async () => {
    store = await loopsStore('anyloop');
    admin = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
    // Slow payments keep orders cancellable long enough for a cancel to reach another loop.
    loops = await startLoops(store, 'anyloop', admin, { PAYMENT_SLOW_MS: '8000' });
    for (const sku of ['SKU-A', 'SKU-B']) expect((await loops.api('PUT', `/api/v1/inventory/${sku}`, { name: sku, price_cents: 300, available: 1000 })).status).toBeLessThan(300);
  }, 90_000);

  afterAll(async () => {
    if (process.env.LOOPS_LOGS && loops) (await import('node:fs')).writeFileSync(`${process.env.LOOPS_LOGS}/any-loop.log`, loops.server.output());
    if (loops) {
      loops.server.child.kill('SIGTERM');
      await loops.server.exited;
    }
    await store?.drop();
  });

  it('place orders through the one port on both loops, each owned by the loop that took it', async () => {
    const placed = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const res = await loops.api('POST', `${orders}/async`, orderBody({ items: [{ sku: i % 2 ? 'SKU-A' : 'SKU-B', quantity: 1 }], user_id: 'user-place' }));
        expect(res.status).toBe(202);
        return { id: res.body.order_id as string, request: res.headers.get('x-request-id')! };
      }),
    );
    const loopOf = await answeredBy(loops, placed.map((p) => p.request));
    const finals = await untilFinal(loops.api, placed.map((p) => p.id));
    for (const view of finals.values()) expect(view.status).toBe('completed');
    const rows = await store.reader.all(`SELECT order_id, owner FROM order_snapshots WHERE user_id = ?`, 'user-place');
    const owners = new Map(rows.map((r) => [r.order_id, r.owner]));
    expect(new Set(owners.values())).toEqual(new Set([loops.owner(0), loops.owner(1)]));
    // The loop that answered the POST runs (owns) the order.
    for (const p of placed) expect(owners.get(p.id), p.id).toBe(loops.owner(loopOf.get(p.request)!));
    await expectLedgerAddsUp(store.reader, finals, store.dialect);
  }, 90_000);

  it('answer status, list, cancel and admin retry alike whichever loop gets the request', async () => {
    const slow = await Promise.all(
      Array.from({ length: 12 }, async () => (await loops.api('POST', `${orders}/async`, orderBody({ token: 'tok_slow', user_id: 'user-any' }))).body.order_id as string),
    );
    const done = (await loops.api('POST', orders, orderBody({ user_id: 'user-any' }))).body;
    expect(done.status).toBe('completed');
    const owners = new Map((await store.reader.all(`SELECT order_id, owner FROM order_snapshots WHERE user_id = ?`, 'user-any')).map((r) => [r.order_id, r.owner]));

    // Every order's status, read several times at once (several connections, so both loops answer).
    const reads = await Promise.all(slow.flatMap((id) => [0, 1, 2].map(() => loops.api('GET', `${orders}/${id}/status`))));
    for (const r of reads) expect([r.status, r.body.status]).toEqual([200, 'processing']);
    const asUser = client(loops.server.url, await mintToken({ secret: TEST_SECRET, sub: 'user-any', role: 'user' }));
    const lists = await Promise.all([0, 1, 2, 3, 4, 5].map(() => asUser('GET', `${orders}?limit=100`)));
    for (const l of lists) expect(l.body.items.map((o: any) => o.order_id).sort()).toEqual([...slow, done.order_id].sort());

    // Cancel every slow order (in flight) and the completed one, all at once.
    const cancels = await Promise.all(slow.map((id) => loops.api('POST', `${orders}/${id}/cancel`)));
    const late = await Promise.all([0, 1, 2, 3].map(() => loops.api('POST', `${orders}/${done.order_id}/cancel`)));
    for (const c of cancels) expect(c.status, JSON.stringify(c.body)).toBe(202);
    for (const c of late) expect([c.status, c.body.code]).toEqual([409, 'invalid_transition']);
    // Some cancels reached the loop that does not own the order (it routes the event to the owner).
    const loopOf = await answeredBy(loops, cancels.map((c) => c.headers.get('x-request-id')));
    const crossed = slow.filter((id, i) => {
      const loop = loopOf.get(cancels[i]!.headers.get('x-request-id')!);
      return loop !== undefined && owners.get(id) !== loops.owner(loop);
    });
    expect(crossed.length, 'cancels answered by the loop that does not own the order').toBeGreaterThan(0);

    // Retry (admin) of an order that is not parked, and of one that does not exist, from any loop.
    const retries = await Promise.all([0, 1, 2, 3].map(() => loops.api('POST', `${orders}/${done.order_id}/retry`)));
    for (const r of retries) expect([r.status, r.body.code]).toEqual([409, 'invalid_transition']);
    const missing = await Promise.all([0, 1, 2, 3].map(() => loops.api('POST', `${orders}/ord_01M8NOSUCHORDER0000000000/retry`)));
    for (const r of missing) expect([r.status, r.body.code]).toEqual([404, 'not_found']);
    expect(await loopsThatAnswered(loops, [...retries, ...missing, ...late, ...lists, ...reads])).toEqual(new Set([0, 1]));

    const finals = await untilFinal(loops.api, slow);
    for (const id of slow) expect(finals.get(id).status, id).toBe('cancelled');
    await expectLedgerAddsUp(store.reader, new Map([...finals, [done.order_id, done]]), store.dialect);
  }, 90_000);

  it('make one order from an Idempotency-Key replayed and sent concurrently to both loops', async () => {
    for (const path of [orders, `${orders}/async`]) {
      const key = `loops-${path.length}-${Date.now()}`;
      const body = orderBody({ user_id: 'user-key' });
      // Our own request ids: a replay answers with the stored response, whose headers are the first request's.
      const sent = Array.from({ length: 9 }, () => randomUUID());
      const answers = await Promise.all(sent.slice(0, 8).map((id) => loops.api('POST', path, body, { 'Idempotency-Key': key, 'X-Request-Id': id })));
      const replay = await loops.api('POST', path, body, { 'Idempotency-Key': key, 'X-Request-Id': sent[8]! });
      const all = [...answers, replay];
      expect(new Set(all.map((a) => a.body.order_id)).size, JSON.stringify(all.map((a) => [a.status, a.body.order_id]))).toBe(1);
      for (const a of all) expect([201, 202]).toContain(a.status);
      expect(all.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(8);
      const by = await answeredBy(loops, sent);
      expect(new Set(sent.map((id) => by.get(id)))).toEqual(new Set([0, 1]));
    }
    const made = await store.reader.all(`SELECT order_id FROM order_snapshots WHERE user_id = ?`, 'user-key');
    expect(made).toHaveLength(2);
  }, 60_000);

  it('count orders from both loops on /metrics, in an exposition that passes promtool', async () => {
    const answers = await Promise.all([0, 1, 2, 3].map(() => fetch(`${loops.server.url}/metrics`)));
    const texts = await Promise.all(answers.map((a) => a.text()));
    for (const a of answers) expect(a.status).toBe(200);
    const total = (await store.reader.get<{ n: number }>(`SELECT COUNT(*) AS n FROM order_snapshots`))!.n;
    const byOwner = await store.reader.all(`SELECT owner, COUNT(*) AS n FROM order_snapshots GROUP BY owner`);
    expect(byOwner).toHaveLength(2);
    for (const text of texts) {
      const started = Number(/^ordersaga_orders_started_total (\d+)$/m.exec(text)?.[1]);
      // Every order either loop started, which is more than either loop started alone.
      expect(started).toBe(total);
      expect(started).toBeGreaterThan(Math.max(...byOwner.map((o) => o.n)));
      const threads = Number(/^ordersaga_inventory_pool_threads (\d+)$/m.exec(text)?.[1]);
      expect(threads).toBe(2);
    }
    const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (promtool.error) {
      if (process.env.REQUIRE_PROMTOOL === '1' || process.env.CI) throw new Error(`promtool is required here but cannot run: ${promtool.error.message}`);
      console.warn('promtool not found: skipping the exposition check');
      return;
    }
    const checked = spawnSync('promtool', ['check', 'metrics'], { input: texts[0], encoding: 'utf8' });
    expect({ status: checked.status, output: `${checked.stdout}${checked.stderr}` }).toEqual({ status: 0, output: '' });
  });
});

describe.skipIf(!LOOPS_RUNNABLE)(`the per-user rate limit of two order loops on ${STORE_LABEL}`, () => {
  let limited: LoopsStore;
  let service: Loops;
  const BURST = 20;

  beforeAll(async () => {
    limited = await loopsStore('loopsrate');
    const token = await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' });
    service = await startLoops(limited, 'loopsrate', token, { RATE_LIMIT_PER_SEC: '1', RATE_LIMIT_BURST: String(BURST) });
  }, 90_000);

  afterAll(async () => {
    if (service) {
      service.server.child.kill('SIGTERM');
      await service.server.exited;
    }
    await limited?.drop();
  });

  it('hold for the service as a whole: of 2 × burst requests about burst pass, not 2 × burst', async () => {
    const api = client(service.server.url, await mintToken({ secret: TEST_SECRET, sub: 'rate-user', role: 'user' }));
    const answers = await Promise.all(Array.from({ length: 2 * BURST }, () => api('GET', '/api/v1/inventory')));
    const passed = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter((a) => a.status === 429);
    // Both loops answered (each alone would have let BURST through), and the window may turn once.
    expect(await loopsThatAnswered(service, answers)).toEqual(new Set([0, 1]));
    expect(passed).toBeGreaterThanOrEqual(BURST);
    expect(passed).toBeLessThanOrEqual(BURST + 2);
    expect(refused.length + passed).toBe(2 * BURST);
  });
});

describe.skipIf(!LOOPS_RUNNABLE)(`what two order loops print and log, on ${STORE_LABEL}`, () => {
  it('print the development tokens once, log listening once with the workers, and put its slot on every line of a loop', async () => {
    const quiet = await loopsStore('loopslog');
    const dir = mkdtempSync(join(tmpdir(), 'ordersaga-loopslog-'));
    // No JWT_SECRET: the development secret beside DB_PATH (a folder of the test's own on PostgreSQL too).
    const env = { JWT_SECRET: '', ...(quiet.env.DB_PATH ? {} : { DB_PATH: join(dir, 'unused.db') }) };
    const service = await startLoops(quiet, 'loopslog', '', env);
    try {
      for (let i = 0; i < 100 && !/admin token/.test(service.server.output()); i++) await new Promise((r) => setTimeout(r, 20));
      const output = service.server.output();
      expect(output.match(/^user token \(sub=alice, 24h\): +ey/gm)).toHaveLength(1);
      const token = /^user token \(sub=alice, 24h\): +(\S+)$/m.exec(output)![1]!;
      // The token the primary printed is good on every loop.
      const api = client(service.server.url, token);
      const answers = await Promise.all(Array.from({ length: 8 }, () => api('GET', '/api/v1/inventory')));
      for (const a of answers) expect(a.status).toBe(200);
      expect(await loopsThatAnswered(service, answers)).toEqual(new Set([0, 1]));

      const lines = service.lines();
      const listening = lines.filter((l) => l.msg === 'ordersaga listening');
      expect(listening).toHaveLength(1);
      expect(listening[0]).toMatchObject({ workers: 2, instance: 'loopslog' });
      // Lines without a slot are the primary's own.
      const primaryOnly = new Set(['ordersaga listening']);
      for (const l of lines) if (l.loop === undefined) expect(primaryOnly, JSON.stringify(l)).toContain(l.msg);
      expect(lines.filter((l) => l.msg === 'request').map((l) => l.loop).sort()).toContain(1);
    } finally {
      service.server.child.kill('SIGTERM');
      expect(await service.server.exited).toEqual({ code: 0, signal: null });
      await quiet.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
