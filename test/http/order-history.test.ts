import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderBody, startTestService, type TestService } from '../support/service.js';

let svc: TestService;
let alice: string;
let bob: string;
let admin: string;

beforeAll(async () => {
  // Gateway errors are retried: the payment stage then shows several attempts.
  svc = await startTestService({ RETRY_MAX_ATTEMPTS: '3' }, { products: [{ sku: 'SKU-A', name: 'Thing A', price_cents: 1500, available: 1000 }] });
  [alice, bob, admin] = await Promise.all([svc.token('alice'), svc.token('bob'), svc.token('root', 'admin')]);
});
afterAll(() => svc.stop());

async function place(token: string, payment = 'tok_visa'): Promise<any> {
  const res = await svc.call('POST', '/api/v1/pipeline/orders', { token, body: orderBody({ token: payment }) });
  return res.json();
}

const historyOf = (id: string, token: string, query = '') => svc.call('GET', `/api/v1/pipeline/orders/${id}/history${query}`, { token });

describe('GET /api/v1/pipeline/orders/{id}/history', () => {
  it("lists a completed order's committed changes in order: seq 1, 2, …, their times, states, statuses and stage records", async () => {
    const order = await place(alice);
    expect(order.status).toBe('completed');
    const res = await historyOf(order.order_id, alice);
    expect(res.status).toBe(200);
    const { items, next_after } = await res.json();
    expect(next_after).toBeNull();
    expect(items.map((c: any) => c.seq)).toEqual(items.map((_: unknown, i: number) => i + 1));
    const times = items.map((c: any) => Date.parse(c.at));
    expect(times.every((t: number) => Number.isFinite(t))).toBe(true);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(items.slice(0, -1).every((c: any) => c.status === 'processing')).toBe(true);
    const last = items.at(-1);
    expect(last).toMatchObject({ state: 'completed', status: 'completed', failure: null, at: order.updated_at });
    expect(last.stages.find((s: any) => s.name === 'payment')).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    expect(last.stages).toEqual(order.stages);
    // The states it went through (those committed in one turn are one change), in the machine's order.
    const forward = ['placing', 'reserving', 'paying', 'fulfilling', 'notifying', 'completed'];
    const ranks = items.map((c: any) => forward.indexOf(c.state));
    expect(ranks.every((r: number) => r >= 0)).toBe(true);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
  });

  it('shows the retries and the compensation of a failed order', async () => {
    const order = await place(alice, 'tok_gateway_error');
    expect(order.code).toBe('payment_unavailable');
    const { items } = await (await historyOf(order.order_id, alice)).json();
    const last = items.at(-1);
    expect(last).toMatchObject({ status: 'failed', failure: { stage: 'payment', code: 'payment_unavailable' } });
    const payment = last.stages.find((s: any) => s.name === 'payment');
    expect(payment).toMatchObject({ attempts: 3, error: { code: 'payment_unavailable' } });
    expect(last.stages.find((s: any) => s.name === 'reservation').status).toBe('compensated');
    // The retries were committed as they happened: the attempts count up through the changes.
    const attempts = items.map((c: any) => c.stages.find((s: any) => s.name === 'payment').attempts);
    expect([...attempts].sort((a, b) => a - b)).toEqual(attempts);
    expect(new Set(attempts.filter((a: number) => a > 0)).size).toBeGreaterThan(1);
  });

  it('pages with after and limit, and the pages join up to the whole history', async () => {
    const order = await place(alice);
    const whole = (await (await historyOf(order.order_id, alice)).json()).items;
    const paged: any[] = [];
    let after = 0;
    for (let pages = 0; pages < 100; pages++) {
      const body = await (await historyOf(order.order_id, alice, `?after=${after}&limit=2`)).json();
      expect(body.items.length).toBeLessThanOrEqual(2);
      paged.push(...body.items);
      if (body.next_after === null) break;
      after = body.next_after;
    }
    expect(paged).toEqual(whole);
    expect((await (await historyOf(order.order_id, alice, `?after=${whole.at(-1).seq}`)).json()).items).toEqual([]);
  });

  it("is 404 for another user's order, an unknown one and a malformed id, and open to an admin", async () => {
    const order = await place(alice);
    for (const [id, token] of [
      [order.order_id, bob],
      ['ord_01ARZ3NDEKTSV4RRFFQ69G5FAV', alice],
      ['nope', alice],
    ] as const) {
      const res = await historyOf(id, token);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect((await res.json()).code).toBe('not_found');
    }
    expect((await historyOf(order.order_id, admin)).status).toBe(200);
    expect((await svc.call('GET', `/api/v1/pipeline/orders/${order.order_id}/history`)).status).toBe(401);
  });

  it('refuses a bad after or limit with 400 validation_failed naming the parameter', async () => {
    const order = await place(alice);
    for (const [query, path] of [
      ['?limit=0', '?/limit'],
      ['?limit=201', '?/limit'],
      ['?after=-1', '?/after'],
      ['?after=abc', '?/after'],
    ] as const) {
      const res = await historyOf(order.order_id, alice, query);
      expect(res.status).toBe(400);
      const body = await res.json();
      expect(body).toMatchObject({ code: 'validation_failed', status: 400 });
      expect(body.errors.map((e: any) => e.path)).toContain(path);
    }
  });
});
