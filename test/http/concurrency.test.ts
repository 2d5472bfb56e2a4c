import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledger } from '../support/ledger.js';
import { orderBody, startTestService, waitForFinal, type TestService } from '../support/service.js';

let svc: TestService;

beforeAll(async () => {
  svc = await startTestService(
    { ORDER_TIMEOUT_MS: '60000' },
    {
      products: [
        { sku: 'SKU-HOT', name: 'Hot item', price_cents: 700, available: 100 },
        { sku: 'SKU-X', name: 'X', price_cents: 100, available: 50 },
        { sku: 'SKU-Y', name: 'Y', price_cents: 100, available: 50 },
        { sku: 'SKU-Z', name: 'Z', price_cents: 100, available: 1 },
      ],
    },
  );
});
afterAll(() => svc.stop());

describe('many orders against scarce stock, through HTTP, the real pool and a real store', () => {
  it('sells exactly the 100 in stock to 300 concurrent one-unit orders and fails the other 200 with insufficient_stock', async () => {
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => svc.token(`user-${i}`)));
    const accepted = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const token = tokens[i % tokens.length]!;
        const res = await svc.call('POST', '/api/v1/pipeline/orders/async', { token, body: orderBody({ items: [{ sku: 'SKU-HOT', quantity: 1 }] }) });
        expect(res.status).toBe(202);
        return { id: (await res.json()).order_id as string, token };
      }),
    );
    const finals = await Promise.all(accepted.map(({ id, token }) => waitForFinal(svc, id, token, 60_000)));
    const completed = finals.filter((o) => o.status === 'completed');
    const failed = finals.filter((o) => o.status === 'failed');
    expect(completed).toHaveLength(100);
    expect(failed).toHaveLength(200);
    expect(failed.every((o) => o.failure.code === 'insufficient_stock')).toBe(true);
    expect((await ledger(svc)).products.find((p) => p.sku === 'SKU-HOT')).toEqual({ sku: 'SKU-HOT', available: 0, reserved: 0, sold: 100, added: 100 });

    const { money } = await ledger(svc);
    for (const o of completed) expect(money(o.order_id).net).toBe(700);
    for (const o of failed) expect(money(o.order_id)).toEqual({ captured: 0, refunded: 0, net: 0 });
  }, 90_000); // the orders have 60 s to finish (waitForFinal); on PostgreSQL under a full suite's load they can take over 30

  it('a multi-item order that cannot get its last item leaves every other item’s stock untouched', async () => {
    const token = await svc.token('multi');
    const before = (await ledger(svc)).products;
    const res = await svc.call('POST', '/api/v1/pipeline/orders', {
      token,
      body: orderBody({
        items: [
          { sku: 'SKU-X', quantity: 5 },
          { sku: 'SKU-Y', quantity: 5 },
          { sku: 'SKU-Z', quantity: 2 },
        ],
      }),
    });
    expect(res.status).toBe(409);
    const problem = await res.json();
    expect(problem.code).toBe('insufficient_stock');
    expect(problem.detail).toContain('SKU-Z');
    expect((await ledger(svc)).products).toEqual(before);
  });
});
