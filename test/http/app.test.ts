import { beforeEach, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { OrderError } from '../../src/domain/errors.js';
import { newId } from '../../src/domain/ids.js';
import { createApp } from '../../src/http/app.js';
import { createLogger } from '../../src/logger.js';
import { FakeEngine, memoryStores } from '../support/fake-engine.js';
import { orderBody, TEST_SECRET, type TestResponse } from '../support/service.js';
import { sampleView } from '../store/contract/harness.js';
import { checkedRequest } from '../support/openapi.js';

/*
 * The HTTP layer alone, in front of a fake engine: how each engine outcome is answered,
 * with no database, pool or machine booted.
 */
let engine: FakeEngine;
let app: ReturnType<typeof createApp>;
let alice: string;
let bob: string;
let admin: string;

beforeEach(async () => {
  engine = new FakeEngine();
  const { catalog, idempotency, audit } = memoryStores();
  app = createApp({
    engine,
    catalog,
    logger: createLogger('silent'),
    auth: { secret: new TextEncoder().encode(TEST_SECRET) },
    rateLimit: { perSecond: 1000, burst: 1000 },
    syncWaitMs: 50,
    idempotency: { store: idempotency, ttlHours: 24 },
    audit,
  });
  [alice, bob, admin] = await Promise.all([
    mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user' }),
    mintToken({ secret: TEST_SECRET, sub: 'bob', role: 'user' }),
    mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' }),
  ]);
});

const call = async (method: string, path: string, token: string, body?: unknown, headers: Record<string, string> = {}) =>
  (await checkedRequest(app, path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })) as TestResponse;

describe('the HTTP API in front of an order engine', () => {
  it('answers a settled completed order with 201, the view and its Location', async () => {
    const res = await call('POST', '/api/v1/pipeline/orders', alice, orderBody());
    expect(res.status).toBe(201);
    const view = await res.json();
    expect(view).toMatchObject({ status: 'completed', user_id: 'alice' });
    expect(res.headers.get('location')).toBe(`/api/v1/pipeline/orders/${view.order_id}/status`);
  });

  it('answers 202 while the order is still running', async () => {
    engine.outcomes.set('tok_slow', { settled: false, view: { state: 'paying' } });
    const res = await call('POST', '/api/v1/pipeline/orders', alice, orderBody({ token: 'tok_slow' }));
    expect(res.status).toBe(202);
    expect((await res.json()).state).toBe('paying');
  });

  it.each([
    ['tok_declined', { status: 'failed', failure: { stage: 'payment', code: 'payment_declined', message: 'declined' } }, 402, 'payment_declined'],
    ['tok_cancelled', { status: 'cancelled', failure: { stage: 'payment', code: 'order_cancelled', message: 'by the customer' } }, 409, 'order_cancelled'],
    ['tok_parked', { status: 'compensation_failed', failure: { stage: 'fulfillment', code: 'fulfillment_failed', message: 'AQ' } }, 502, 'compensation_failed'],
  ] as const)('answers a %s order with a problem carrying the order', async (token, view, status, code) => {
    engine.outcomes.set(token, { settled: true, view: view as any });
    const res = await call('POST', '/api/v1/pipeline/orders', alice, orderBody({ token }));
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = await res.json();
    expect(problem).toMatchObject({ code, status, order: { status: view.status } });
    expect(problem.order_id).toBe(problem.order.order_id);
  });

  it('passes overload on as 503 with Retry-After, and refuses changes but not reads while draining', async () => {
    engine.outcomes.set('tok_busy', new OrderError('overloaded', 'busy'));
    const busy = await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody({ token: 'tok_busy' }));
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');

    const created = await (await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody())).json();
    await engine.drain();
    const refused = await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody());
    expect(refused.status).toBe(503);
    expect((await refused.json()).code).toBe('shutting_down');
    expect((await call('GET', `/api/v1/pipeline/orders/${created.order_id}/status`, alice)).status).toBe(200);
  });

  it("cancels only the caller's own running order, and never asks the engine about another's", async () => {
    const created = await (await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody())).json();
    expect((await call('POST', `/api/v1/pipeline/orders/${created.order_id}/cancel`, bob)).status).toBe(404);
    expect(engine.calls.filter((c) => c.method === 'cancel')).toEqual([]);
    const res = await call('POST', `/api/v1/pipeline/orders/${created.order_id}/cancel`, alice);
    expect(res.status).toBe(202);
    expect((await res.json()).status).toBe('cancelled');
    const again = await call('POST', `/api/v1/pipeline/orders/${created.order_id}/cancel`, alice);
    expect(again.status).toBe(409);
    expect((await again.json()).code).toBe('invalid_transition');
  });

  it('keeps retry for admins, and answers a malformed order id with 404 without asking the engine', async () => {
    const id = newId('ord');
    engine.views.set(id, sampleView(id, { status: 'compensation_failed', state: 'compensationFailed' }));
    expect((await call('POST', `/api/v1/pipeline/orders/${id}/retry`, alice)).status).toBe(403);
    expect((await call('POST', `/api/v1/pipeline/orders/${id}/retry`, admin)).status).toBe(202);
    const gets = engine.calls.filter((c) => c.method === 'get').length;
    expect((await call('GET', '/api/v1/pipeline/orders/not-an-id/status', admin)).status).toBe(404);
    expect(engine.calls.filter((c) => c.method === 'get').length).toBe(gets);
  });

  it("lists a user's own orders newest first, a page at a time, and everyone's for an admin", async () => {
    const ids: string[] = [];
    for (const user of ['alice', 'bob', 'alice', 'alice']) {
      const id = newId('ord');
      ids.push(id);
      engine.views.set(id, sampleView(id, { user_id: user }));
    }
    const first = await (await call('GET', '/api/v1/pipeline/orders?limit=2', alice)).json();
    expect(first.items.map((v: { order_id: string }) => v.order_id)).toEqual([ids[3], ids[2]]);
    expect(first.next_cursor).toBe(ids[2]);
    const second = await (await call('GET', `/api/v1/pipeline/orders?limit=2&cursor=${first.next_cursor}`, alice)).json();
    expect(second).toEqual({ items: [expect.objectContaining({ order_id: ids[0] })], next_cursor: null });
    expect((await (await call('GET', '/api/v1/pipeline/orders', admin)).json()).items).toHaveLength(4);
    expect(engine.calls.filter((c) => c.method === 'list').map((c) => (c.args[0] as { user_id?: string }).user_id)).toEqual(['alice', 'alice', undefined]);
  });
});
