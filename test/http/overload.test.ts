import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { committed } from '../support/ledger.js';
import { orderBody, startTestService, waitForFinal, type TestService } from '../support/service.js';

/*
 * Load shedding: past MAX_LIVE_ORDERS a new order is refused at once with 503 `overloaded`
 * and Retry-After, instead of piling up actors (memory) and waits (latency). Slow payments
 * keep two orders live for a while.
 */
let svc: TestService;
let alice: string;

beforeAll(async () => {
  svc = await startTestService({ MAX_LIVE_ORDERS: '2', PAYMENT_SLOW_MS: '600' }, { products: [{ sku: 'SKU-A', name: 'A', price_cents: 100, available: 100 }] });
  alice = await svc.token('alice');
});
afterAll(() => svc.stop());

const placeAsync = (body = orderBody(), headers: Record<string, string> = {}) =>
  svc.call('POST', '/api/v1/pipeline/orders/async', { token: alice, body, headers });
const orderCount = async () => (await committed(svc).get<{ n: number }>('SELECT COUNT(*) AS n FROM order_snapshots'))!.n;

describe('at MAX_LIVE_ORDERS', () => {
  it('refuses a new order with 503 overloaded and Retry-After, takes nothing, and accepts again once orders finish', async () => {
    const slow = [await placeAsync(orderBody({ token: 'tok_slow' })), await placeAsync(orderBody({ token: 'tok_slow' }))];
    expect(slow.map((r) => r.status)).toEqual([202, 202]);
    const ids = await Promise.all(slow.map(async (r) => (await r.json()).order_id as string));

    const before = await orderCount();
    const refusedSync = await svc.call('POST', '/api/v1/pipeline/orders', { token: alice, body: orderBody() });
    const refusedAsync = await placeAsync(orderBody(), { 'Idempotency-Key': 'overload-key' });
    for (const res of [refusedSync, refusedAsync]) {
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.headers.get('retry-after')).toBe('1');
      expect(await res.json()).toMatchObject({ code: 'overloaded', status: 503 });
    }
    expect(await orderCount()).toBe(before);

    for (const id of ids) expect(await waitForFinal(svc, id, alice)).toMatchObject({ status: 'completed' });
    // The refused request's key was never answered, so retrying it now starts its order.
    const retried = await placeAsync(orderBody(), { 'Idempotency-Key': 'overload-key' });
    expect(retried.status).toBe(202);
    const { order_id } = await retried.json();
    expect(await waitForFinal(svc, order_id, alice)).toMatchObject({ status: 'completed' });
    // Three orders sold one unit each; the two refused requests took nothing.
    expect(await (await svc.call('GET', '/api/v1/inventory/SKU-A', { token: alice })).json()).toMatchObject({ available: 97, reserved: 0, sold: 3 });
  });
});
