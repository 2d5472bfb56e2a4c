import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import type { TestDatabase } from '../support/postgres.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';
import { processStoreEnv, TEST_SECRET } from '../support/service.js';

/*
 * The live status stream against a real server process, read by the real `eventsource` v3
 * client (which sends the Authorization header through its custom fetch) and by plain fetch
 * where the raw bytes matter (heartbeats, status codes).
 */

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-sse-'));
const databases: TestDatabase[] = [];
let server: ServerProcess;

/** This file's server processes' store (see processStoreEnv). */
const storeEnv = (name: string) => processStoreEnv(dir, name, databases);
const tokens: Record<string, string> = {};

const order = (token: string) => ({
  items: [{ sku: 'SKU-TSHIRT', quantity: 1 }],
  payment: { token },
  shipping: { name: 'Alice', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
});

beforeAll(async () => {
  server = await startServerProcess({
    ...(await storeEnv('sse')),
    JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: 'warn',
    SSE_HEARTBEAT_MS: '100',
    SSE_MAX_STREAMS_PER_USER: '3',
    PAYMENT_SLOW_MS: '1500',
    RATE_LIMIT_PER_SEC: '10000',
    RATE_LIMIT_BURST: '10000',
  });
  for (const [sub, role] of [['alice', 'user'], ['bob', 'user'], ['carol', 'user'], ['dave', 'user'], ['ops', 'admin']] as const) {
    tokens[sub] = await mintToken({ secret: TEST_SECRET, sub, role });
  }
});

afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function placeAsync(sub: string, paymentToken: string): Promise<string> {
  const res = await client(server.url, tokens[sub]!)('POST', '/api/v1/pipeline/orders/async', order(paymentToken));
  expect(res.status).toBe(202);
  return res.body.order_id as string;
}

const eventsPath = (id: string) => `/api/v1/pipeline/orders/${id}/events`;

interface Received {
  seq: number;
  view: any;
}

/**
 * Opens an EventSource with a bearer token (and optionally a Last-Event-ID on the first
 * request) and collects `state` events until `until` says stop or the server ends the stream
 * for good (a 204 on the reconnect closes the client).
 */
function listen(path: string, sub: string, options: { lastEventId?: string; onEvent?: (e: Received, es: EventSource) => void } = {}) {
  const received: Received[] = [];
  let first = true;
  const es = new EventSource(`${server.url}${path}`, {
    fetch: (input, init) => {
      const headers: Record<string, string> = { ...(init?.headers as Record<string, string>), Authorization: `Bearer ${tokens[sub]}` };
      if (first && options.lastEventId !== undefined) headers['Last-Event-ID'] = options.lastEventId;
      first = false;
      return fetch(input, { ...init, headers });
    },
  });
  const closed = new Promise<void>((resolve) => {
    const check = () => {
      if (es.readyState === es.CLOSED) resolve();
    };
    es.addEventListener('error', () => setTimeout(check, 0));
  });
  es.addEventListener('state', (e) => {
    const r = { seq: Number(e.lastEventId), view: JSON.parse(e.data) };
    received.push(r);
    options.onEvent?.(r, es);
  });
  return { es, received, closed };
}

async function history(id: string, sub = 'alice', query = '') {
  return client(server.url, tokens[sub]!)('GET', `/api/v1/pipeline/orders/${id}/history${query}`);
}

/** Reads a stream's raw text until `done` says so (or the stream ends), then aborts it. */
async function readRaw(res: Response, done: (text: string) => boolean): Promise<{ text: string; ended: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) return { text, ended: true };
    text += decoder.decode(value, { stream: true });
    if (done(text)) {
      await reader.cancel();
      return { text, ended: false };
    }
  }
}

function rawStream(path: string, sub: string, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${tokens[sub]}`, ...headers }, ...(signal ? { signal } : {}) });
}

describe('GET /api/v1/pipeline/orders/{id}/events', () => {
  it('streams an order from its current state through every committed change to completed, then closes for good', async () => {
    const id = await placeAsync('alice', 'tok_slow');
    const { es, received, closed } = listen(eventsPath(id), 'alice');
    await closed; // the server ended the stream after the final state, and answered the reconnect with 204
    es.close();

    expect(received.at(-1)!.view).toMatchObject({ order_id: id, status: 'completed', state: 'completed' });
    expect(received.slice(0, -1).every((r) => r.view.status === 'processing')).toBe(true);
    // Consecutive ids, and exactly the tail of the order's history from the first one sent.
    const seqs = received.map((r) => r.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    const { body } = await history(id);
    const tail = body.items.filter((c: any) => c.seq >= seqs[0]!);
    expect(tail.map((c: any) => [c.seq, c.state, c.status])).toEqual(received.map((r) => [r.seq, r.view.state, r.view.status]));
    expect(received.length).toBeGreaterThan(1); // it was paying (slowly) when the stream opened
  });

  it('starts with the current state of an order that has already ended, and sends nothing else', async () => {
    const id = await placeAsync('alice', 'tok_visa');
    // Wait until it is done, through the history.
    for (let i = 0; i < 200 && (await history(id)).body.items.at(-1)?.status !== 'completed'; i++) await new Promise((r) => setTimeout(r, 25));
    const last = (await history(id)).body.items.at(-1);
    const { es, received, closed } = listen(eventsPath(id), 'alice');
    await closed;
    es.close();
    expect(received.map((r) => [r.seq, r.view.status])).toEqual([[last.seq, 'completed']]);
  });

  it('resumes with Last-Event-ID: the changes after it first, nothing lost and nothing twice, then the live ones', async () => {
    const id = await placeAsync('alice', 'tok_slow');
    // Take the first event, then drop the connection as a client losing its network would.
    const first = await new Promise<Received>((resolve) => {
      const l = listen(eventsPath(id), 'alice', {
        onEvent: (e, es) => {
          es.close();
          resolve(e);
        },
      });
      void l;
    });
    expect(first.view.status).toBe('processing');
    const resumed = listen(eventsPath(id), 'alice', { lastEventId: String(first.seq) });
    await resumed.closed;
    resumed.es.close();
    const seqs = [first.seq, ...resumed.received.map((r) => r.seq)];
    expect(seqs).toEqual(seqs.map((_, i) => first.seq + i));
    expect(resumed.received.at(-1)!.view.status).toBe('completed');

    // From the very beginning: the whole history, in order.
    const all = listen(eventsPath(id), 'alice', { lastEventId: '0' });
    await all.closed;
    all.es.close();
    const { body } = await history(id);
    expect(all.received.map((r) => r.seq)).toEqual(body.items.map((c: any) => c.seq));
    expect(all.received[0]!.seq).toBe(1);

    // At the final state there is nothing left: 204, which tells EventSource clients not to reconnect.
    const atEnd = await rawStream(eventsPath(id), 'alice', { 'Last-Event-ID': String(body.items.at(-1).seq) });
    expect(atEnd.status).toBe(204);
  });

  it('sends a comment line between changes to keep the connection open (SSE_HEARTBEAT_MS)', async () => {
    const id = await placeAsync('alice', 'tok_slow');
    const res = await rawStream(eventsPath(id), 'alice');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { text } = await readRaw(res, (t) => (t.match(/^: keep-alive$/gm) ?? []).length >= 2);
    expect(text).toMatch(/^event: state\nid: \d+\ndata: \{.*\}\n\n/);
    expect((text.match(/^: keep-alive\n\n/gm) ?? []).length).toBeGreaterThanOrEqual(2);
  });

  it("is 404 for another user's order, an unknown order and a malformed id, and open to an admin", async () => {
    const id = await placeAsync('alice', 'tok_visa');
    for (const [path, sub] of [
      [eventsPath(id), 'bob'],
      [eventsPath('ord_01ARZ3NDEKTSV4RRFFQ69G5FAV'), 'alice'],
      [eventsPath('not-an-order'), 'alice'],
    ] as const) {
      const res = await rawStream(path, sub);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await res.json()).toMatchObject({ code: 'not_found' });
    }
    const admin = listen(eventsPath(id), 'ops');
    await admin.closed;
    admin.es.close();
    expect(admin.received.at(-1)!.view).toMatchObject({ user_id: 'alice', status: 'completed' });
    expect((await rawStream(eventsPath(id), 'alice', { Authorization: '' })).status).toBe(401);
  });

  it('refuses a Last-Event-ID that is not a non-negative integer with 400 invalid_last_event_id', async () => {
    const id = await placeAsync('alice', 'tok_visa');
    for (const bad of ['-1', 'abc', '1.5', '1e3', '99999999999999999999']) {
      const res = await rawStream(eventsPath(id), 'alice', { 'Last-Event-ID': bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'invalid_last_event_id', status: 400 });
    }
  });

  it('ends with cancelled when the order is cancelled mid-stream', async () => {
    const id = await placeAsync('alice', 'tok_slow');
    let cancel: Promise<number> | undefined;
    const l = listen(eventsPath(id), 'alice', {
      // Cancel once the stream shows the (slow) payment under way, so the order is cancelled mid-flight.
      onEvent: (e) => {
        if (e.view.state !== 'paying') return;
        cancel ??= client(server.url, tokens.alice!)('POST', `/api/v1/pipeline/orders/${id}/cancel`).then((r) => r.status);
      },
    });
    await l.closed;
    l.es.close();
    expect(await cancel).toBe(202);
    expect(l.received.at(-1)!.view).toMatchObject({ status: 'cancelled', state: 'cancelled' });
    expect(l.received.some((r) => r.view.state === 'paying')).toBe(true);
  });

  it('limits the streams one user may hold open (SSE_MAX_STREAMS_PER_USER) with 429 too_many_streams, and frees a closed one', async () => {
    const aborts = [new AbortController(), new AbortController(), new AbortController()];
    const open = await Promise.all(aborts.map((a) => rawStream('/api/v1/pipeline/events', 'carol', {}, a.signal)));
    expect(open.map((r) => r.status)).toEqual([200, 200, 200]);
    const over = await rawStream('/api/v1/pipeline/events', 'carol');
    expect(over.status).toBe(429);
    expect(await over.json()).toMatchObject({ code: 'too_many_streams' });
    // Another user is not affected.
    const other = new AbortController();
    expect((await rawStream('/api/v1/pipeline/events', 'dave', {}, other.signal)).status).toBe(200);
    other.abort();
    // Closing one frees its place (the server notices the disconnect a moment later).
    aborts[0]!.abort();
    let status = 0;
    const again = new AbortController();
    for (let i = 0; i < 100 && status !== 200; i++) {
      const res = await rawStream('/api/v1/pipeline/events', 'carol', {}, again.signal);
      status = res.status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(200);
    again.abort();
    for (const a of aborts) a.abort();
  });
});

describe('GET /api/v1/pipeline/events', () => {
  it("tells a user of their own orders' changes only, and an admin of everyone's", async () => {
    const feeds = Object.fromEntries(
      (['alice', 'bob', 'ops'] as const).map((sub) => {
        const changes: any[] = [];
        const es = new EventSource(`${server.url}/api/v1/pipeline/events`, {
          fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), Authorization: `Bearer ${tokens[sub]}` } }),
        });
        const opened = new Promise<void>((resolve) => es.addEventListener('open', () => resolve()));
        es.addEventListener('change', (e) => changes.push(JSON.parse(e.data)));
        return [sub, { es, changes, opened }];
      }),
    );
    await Promise.all(Object.values(feeds).map((f) => f.opened));
    const alices = await placeAsync('alice', 'tok_visa');
    const bobs = await placeAsync('bob', 'tok_visa');
    const done = (sub: string, id: string) => feeds[sub]!.changes.some((c) => c.order_id === id && c.view.status === 'completed');
    for (let i = 0; i < 400 && !(done('alice', alices) && done('bob', bobs) && done('ops', alices) && done('ops', bobs)); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const f of Object.values(feeds)) f.es.close();
    expect(new Set(feeds.alice!.changes.map((c) => c.order_id))).toEqual(new Set([alices]));
    expect(new Set(feeds.bob!.changes.map((c) => c.order_id))).toEqual(new Set([bobs]));
    expect(new Set(feeds.ops!.changes.map((c) => c.order_id))).toEqual(new Set([alices, bobs]));
    const { body } = await history(alices);
    expect(feeds.alice!.changes.map((c) => c.seq)).toEqual(body.items.map((c: any) => c.seq));
    expect(feeds.alice!.changes.every((c) => c.at === c.view.updated_at)).toBe(true);
  });
});

describe('shutdown', () => {
  it('closes open event streams on SIGTERM instead of waiting for them, refuses new ones, and exits', async () => {
    const own = await startServerProcess({
      ...(await storeEnv('sse_shutdown')),
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'info',
      SSE_HEARTBEAT_MS: '100',
      // The order stays live through the whole grace period, so only closing the stream lets the server close.
      PAYMENT_SLOW_MS: '60000',
      SHUTDOWN_GRACE_MS: '1500',
    });
    const alice = client(own.url, tokens.alice!);
    const { body } = await alice('POST', '/api/v1/pipeline/orders/async', order('tok_slow'));
    const streamRes = await fetch(`${own.url}${eventsPath(body.order_id)}`, { headers: { Authorization: `Bearer ${tokens.alice}` } });
    expect(streamRes.status).toBe(200);
    const listStream = await fetch(`${own.url}/api/v1/pipeline/events`, { headers: { Authorization: `Bearer ${tokens.alice}` } });
    let exited = false;
    void own.exited.then(() => (exited = true));

    const reading = readRaw(streamRes, () => false);
    const readingList = readRaw(listStream, () => false);
    await new Promise((r) => setTimeout(r, 200));
    own.child.kill('SIGTERM');
    const { ended, text } = await reading;
    expect(ended).toBe(true);
    expect(exited).toBe(false); // closed by the drain, not by the process dying
    expect(text).toMatch(/event: state/);
    expect((await readingList).ended).toBe(true);
    // While draining, a new stream is refused rather than held open.
    const refused = await fetch(`${own.url}${eventsPath(body.order_id)}`, { headers: { Authorization: `Bearer ${tokens.alice}` } });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: 'shutting_down' });

    expect(await own.exited).toEqual({ code: 0, signal: null });
    expect(own.output()).toMatch(/closed open event streams/);
  });
});
