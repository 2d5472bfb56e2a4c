import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createService } from '../../src/main.js';
import { committed } from '../support/ledger.js';
import { orderBody, startTestService, TEST_SECRET, type TestService } from '../support/service.js';
import { checkedRequest } from '../support/openapi.js';

let svc: TestService;
let alice: string;
let bob: string;

beforeAll(async () => {
  svc = await startTestService({}, { products: [{ sku: 'SKU-A', name: 'A', price_cents: 100, available: 1000 }] });
  [alice, bob] = await Promise.all([svc.token('alice'), svc.token('bob')]);
});
afterAll(() => svc.stop());

const orderCount = async () => (await committed(svc).get<{ n: number }>('SELECT COUNT(*) AS n FROM order_snapshots'))!.n;
const post = (path: string, token: string, key: string, body = orderBody()) =>
  svc.call('POST', `/api/v1/pipeline/orders${path}`, { token, body, headers: { 'Idempotency-Key': key } });

describe('Idempotency-Key', () => {
  it('replays the original answer for the same key and body, with Idempotent-Replayed, and creates no new order', async () => {
    const first = await post('', alice, 'key-sync-1');
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const original = await first.json();
    const before = await orderCount();

    const again = await post('', alice, 'key-sync-1');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(`/api/v1/pipeline/orders/${original.order_id}/status`);
    expect(await again.json()).toEqual(original);
    expect(await orderCount()).toBe(before);
  });

  it('replays a failed answer with its status code and problem body', async () => {
    const first = await post('', alice, 'key-declined', orderBody({ token: 'tok_declined' }));
    expect(first.status).toBe(402);
    const again = await post('', alice, 'key-declined', orderBody({ token: 'tok_declined' }));
    expect(again.status).toBe(402);
    expect(again.headers.get('content-type')).toBe('application/problem+json');
    expect((await again.json()).order_id).toBe((await first.json()).order_id);
  });

  it('works on the async endpoint too', async () => {
    const first = await post('/async', alice, 'key-async-1');
    const again = await post('/async', alice, 'key-async-1');
    expect([first.status, again.status]).toEqual([202, 202]);
    expect((await again.json()).order_id).toBe((await first.json()).order_id);
  });

  it('refuses the same key with a different body, or on the other endpoint, with 422 idempotency_key_reused', async () => {
    await post('', alice, 'key-reuse');
    const other = await post('', alice, 'key-reuse', orderBody({ items: [{ sku: 'SKU-A', quantity: 2 }] }));
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: 'idempotency_key_reused', status: 422 });
    expect((await post('/async', alice, 'key-reuse')).status).toBe(422);
  });

  it('scopes keys to the caller: another user with the same key gets their own order', async () => {
    const a = await (await post('', alice, 'shared-key')).json();
    const b = await (await post('', bob, 'shared-key')).json();
    expect(a.order_id).not.toBe(b.order_id);
    expect(b.user_id).toBe('bob');
  });

  it('creates one order from concurrent requests with one key', async () => {
    const before = await orderCount();
    const answers = await Promise.all(Array.from({ length: 5 }, () => post('', alice, 'key-concurrent', orderBody({ token: 'tok_slow' }))));
    const ids = new Set(await Promise.all(answers.map(async (r) => (await r.json()).order_id)));
    expect(ids.size).toBe(1);
    expect(answers.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    expect(answers.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(4);
    expect(await orderCount()).toBe(before + 1);
  });

  it('rejects a key that is empty, too long or not printable ASCII', async () => {
    for (const key of ['x'.repeat(256), 'tab\there', 'ünïcode']) {
      const res = await post('', alice, key);
      expect(res.status).toBe(400);
      expect((await res.json()).errors).toEqual([{ path: 'header/Idempotency-Key', message: expect.any(String) }]);
    }
  });

  it('keeps keys across a restart on the same database', async () => {
    const first = await (await post('', alice, 'key-restart')).json();
    // A restart: the first service has committed everything (a second connection in the same
    // process must not wait on the first one's pending group commit).
    await svc.stores.flush();
    const config = loadConfig({ DB_PATH: svc.config.dbPath, DATABASE_URL: svc.config.database.url ?? '', JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'silent', SEED_DEMO: 'false' });
    const second = await createService(config, createLogger('silent'));
    try {
      const res = await checkedRequest(second.app, '/api/v1/pipeline/orders', {
        method: 'POST',
        headers: { Authorization: `Bearer ${alice}`, 'Content-Type': 'application/json', 'Idempotency-Key': 'key-restart' },
        body: JSON.stringify(orderBody()),
      });
      expect(res.status).toBe(201);
      expect(res.headers.get('idempotent-replayed')).toBe('true');
      expect(((await res.json()) as { order_id: string }).order_id).toBe(first.order_id);
    } finally {
      await second.close();
    }
  });

  it('after a crash between claiming a key and answering, a retry starts that same order instead of another', async () => {
    const body = orderBody();
    const now = new Date();
    // What a crash right after the claim leaves behind: the key, its order id, no order, no answer.
    await svc.stores.idempotency.claim({
      user_id: 'alice',
      key: 'key-crashed',
      request_hash: (await import('node:crypto')).createHash('sha256').update(`POST /orders\n${JSON.stringify({ user_id: 'alice', request: { items: body.items, payment: body.payment, shipping: body.shipping } })}`).digest('hex'),
      order_id: 'ord_01KCRASHED0000000000000000',
      request: '{}',
      response_status: null,
      response_body: null,
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + 3_600_000).toISOString(),
    });
    const res = await post('', alice, 'key-crashed', body);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    expect((await res.json()).order_id).toBe('ord_01KCRASHED0000000000000000');
  });

  it('forgets keys after their time to live', async () => {
    await post('', alice, 'key-expiring');
    await committed(svc).run(`UPDATE idempotency_keys SET expires_at = '2000-01-01T00:00:00.000Z' WHERE key = 'key-expiring'`);
    expect(await svc.stores.idempotency.purgeExpired(new Date())).toBe(1);
    const res = await post('', alice, 'key-expiring');
    expect(res.headers.get('idempotent-replayed')).toBeNull();
  });
});
