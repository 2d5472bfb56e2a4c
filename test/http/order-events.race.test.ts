import { beforeEach, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { newId } from '../../src/domain/ids.js';
import { createApp } from '../../src/http/app.js';
import { OrderStreams } from '../../src/http/order-streams.js';
import { createLogger } from '../../src/logger.js';
import type { OrderChange, OrderChangeListener } from '../../src/orders/order.engine.js';
import type { OrderView } from '../../src/orders/order.view.js';
import { FakeEngine, memoryStores } from '../support/fake-engine.js';
import { TEST_SECRET } from '../support/service.js';
import { sampleView } from '../store/contract/harness.js';

/*
 * The moments a real engine makes rare, made to happen on cue: a change committed while the
 * stream reads the history, a change the stream is never told of, a drain while streams are
 * open. The engine is scripted; the HTTP layer and the stream code are the real ones.
 */

/** A fake engine with a change log, live listeners, and a hook that runs inside `history`. */
class ScriptedEngine extends FakeEngine {
  readonly log: OrderChange[] = [];
  private readonly listeners = new Set<OrderChangeListener>();
  /** Runs inside the next `history` call, before or after it reads the log. */
  duringHistory: { beforeRead: boolean; run: () => void } | null = null;

  commit(orderId: string, view: Partial<OrderView>, { tell = true } = {}): OrderChange {
    const seq = this.log.filter((c) => c.order_id === orderId).length + 1;
    const at = new Date(Date.now() + seq).toISOString();
    const full = sampleView(orderId, { ...view, updated_at: at });
    const change = { order_id: orderId, seq, at, view: full };
    this.log.push(change);
    this.views.set(orderId, full);
    if (tell) for (const l of this.listeners) l([change], { states: 1, fenced: 0, duration_ms: 0 });
    return change;
  }

  override async history(orderId: string, afterSeq: number, limit: number): Promise<OrderChange[]> {
    const hook = this.duringHistory;
    this.duringHistory = null;
    if (hook?.beforeRead) hook.run();
    const read = this.log.filter((c) => c.order_id === orderId && c.seq > afterSeq).slice(0, limit);
    if (hook && !hook.beforeRead) hook.run();
    return read;
  }

  override subscribe(listener: OrderChangeListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}

let engine: ScriptedEngine;
let streams: OrderStreams;
let app: ReturnType<typeof createApp>;
let alice: string;
let bob: string;

beforeEach(async () => {
  engine = new ScriptedEngine();
  streams = new OrderStreams({ engine, heartbeatMs: 60_000, maxStreams: 3, maxStreamsPerUser: 2 });
  const { catalog, idempotency, audit } = memoryStores();
  app = createApp({
    audit,
    engine,
    streams,
    catalog,
    logger: createLogger('silent'),
    auth: { secret: new TextEncoder().encode(TEST_SECRET), clockToleranceS: 0 },
    rateLimit: { perSecond: 1000, burst: 1000 },
    syncWaitMs: 50,
    idempotency: { store: idempotency, ttlHours: 24 },
  });
  [alice, bob] = await Promise.all([mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user' }), mintToken({ secret: TEST_SECRET, sub: 'bob', role: 'user' })]);
});

const open = (path: string, token: string, headers: Record<string, string> = {}) =>
  app.request(path, { headers: { Authorization: `Bearer ${token}`, ...headers } }) as Promise<Response>;

/**
 * Reads events until `count` have arrived or the stream ends; returns them and whether it ended.
 * `when` runs once as soon as `when.count` events have arrived, and reading goes on.
 */
async function events(
  res: Response,
  count = Infinity,
  when?: { count: number; run: () => void },
): Promise<{ events: Array<{ type: string; id: number | null; data: any }>; ended: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const parsed: Array<{ type: string; id: number | null; data: any }> = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { events: parsed, ended: true };
    text += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      if (block.startsWith(':')) continue;
      const field = (name: string) => block.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1];
      parsed.push({ type: field('event')!, id: field('id') === undefined ? null : Number(field('id')), data: JSON.parse(field('data')!) });
      if (parsed.length === when?.count) when.run();
    }
    if (parsed.length >= count) {
      await reader.cancel();
      return { events: parsed, ended: false };
    }
  }
}

const eventsPath = (id: string) => `/api/v1/pipeline/orders/${id}/events`;

describe('the order event stream, at the edges of timing', () => {
  for (const inHistory of [true, false]) {
    it(`sends a change committed while the history is read exactly once, in order (${inHistory ? 'the read sees it' : 'the read misses it'})`, async () => {
      const id = newId('ord');
      engine.commit(id, { state: 'reserving' });
      engine.commit(id, { state: 'paying' });
      // Committed after the stream subscribed: told live, and (or not) part of what the read returns.
      engine.duringHistory = { beforeRead: inHistory, run: () => engine.commit(id, { state: 'fulfilling' }) };
      const res = await open(eventsPath(id), alice, { 'Last-Event-ID': '0' });
      // The third arrives with nothing committed after it (no later change to reveal a gap); only then the final one.
      const { events: got, ended } = await events(res, Infinity, { count: 3, run: () => engine.commit(id, { state: 'completed', status: 'completed' }) });
      expect(ended).toBe(true);
      expect(got.map((e) => [e.id, e.data.state])).toEqual([
        [1, 'reserving'],
        [2, 'paying'],
        [3, 'fulfilling'],
        [4, 'completed'],
      ]);
    });
  }

  it('fills a gap in the live changes from the history (a change it was not told of)', async () => {
    const id = newId('ord');
    engine.commit(id, { state: 'reserving' });
    const res = await open(eventsPath(id), alice);
    const reading = events(res);
    await new Promise((r) => setTimeout(r, 10));
    engine.commit(id, { state: 'paying' }, { tell: false });
    engine.commit(id, { state: 'fulfilling' });
    engine.commit(id, { state: 'failed', status: 'failed' });
    const { events: got, ended } = await reading;
    expect(ended).toBe(true);
    expect(got.map((e) => e.id)).toEqual([1, 2, 3, 4]);
  });

  it('stays open on a parked order (an admin may retry it) and ends once the retried order is final', async () => {
    const id = newId('ord');
    engine.commit(id, { state: 'compensationFailed', status: 'compensation_failed' });
    const res = await open(eventsPath(id), alice);
    const reading = events(res);
    await new Promise((r) => setTimeout(r, 30));
    expect(streams.size).toBe(1);
    engine.commit(id, { state: 'releasingStock', status: 'processing' });
    engine.commit(id, { state: 'failed', status: 'failed' });
    const { events: got, ended } = await reading;
    expect(ended).toBe(true);
    expect(got.map((e) => e.data.status)).toEqual(['compensation_failed', 'processing', 'failed']);
    expect(streams.size).toBe(0);
  });

  it('answers 204 when resumed at or after the final state', async () => {
    const id = newId('ord');
    engine.commit(id, { state: 'reserving' });
    engine.commit(id, { state: 'completed', status: 'completed' });
    for (const last of ['2', '9']) {
      const res = await open(eventsPath(id), alice, { 'Last-Event-ID': last });
      expect(res.status).toBe(204);
    }
    expect(streams.size).toBe(0);
  });

  it('counts streams per user and in all, and frees them when they end', async () => {
    const ids = [newId('ord'), newId('ord'), newId('ord'), newId('ord')];
    for (const id of ids) engine.commit(id, { state: 'paying', user_id: id === ids[3] ? 'bob' : 'alice' });
    const first = await open(eventsPath(ids[0]!), alice);
    const second = await open(eventsPath(ids[1]!), alice);
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await open(eventsPath(ids[2]!), alice);
    expect(third.status).toBe(429);
    expect(await third.json()).toMatchObject({ code: 'too_many_streams' });
    const bobs = await open(eventsPath(ids[3]!), bob);
    expect(bobs.status).toBe(200);
    // Three open: the instance is full, for anyone.
    const carol = await mintToken({ secret: TEST_SECRET, sub: 'carol', role: 'admin' });
    const full = await open('/api/v1/pipeline/events', carol);
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('5');
    expect(await full.json()).toMatchObject({ code: 'streams_unavailable' });
    // A final change ends alice's first stream and frees its place.
    const ending = events(first);
    engine.commit(ids[0]!, { state: 'completed', status: 'completed' });
    expect((await ending).ended).toBe(true);
    expect(streams.size).toBe(2);
    expect((await open(eventsPath(ids[2]!), alice)).status).toBe(200);
    streams.closeAll();
  });

  it('closes a stream when its token expires, and the same token cannot reopen it', async () => {
    const id = newId('ord');
    engine.commit(id, { state: 'paying' });
    const shortLived = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user', expiresIn: '2s' });
    const res = await open(eventsPath(id), shortLived);
    expect(res.status).toBe(200);
    const { events: got, ended } = await events(res);
    expect(ended).toBe(true);
    expect(got.map((e) => e.data.state)).toEqual(['paying']);
    expect(streams.size).toBe(0);
    const again = await open(eventsPath(id), shortLived, { 'Last-Event-ID': '1' });
    expect(again.status).toBe(401);
    expect(await again.json()).toMatchObject({ code: 'token_expired' });
  });

  it('closes every open stream on closeAll (the drain) and then refuses new ones with 503 shutting_down', async () => {
    const id = newId('ord');
    engine.commit(id, { state: 'paying' });
    const res = await open(eventsPath(id), alice);
    const feed = await open('/api/v1/pipeline/events', bob);
    const reading = [events(res), events(feed)];
    expect(streams.closeAll()).toBe(2);
    const [one, two] = await Promise.all(reading);
    expect(one!.ended && two!.ended).toBe(true);
    expect(one!.events.map((e) => e.data.state)).toEqual(['paying']);
    const refused = await open(eventsPath(id), alice);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: 'shutting_down' });
    expect(streams.size).toBe(0);
  });
});
