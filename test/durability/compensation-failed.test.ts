import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { SimulatedPaymentGateway } from '../../src/gateways/payment.gateway.js';
import { ledger } from '../support/ledger.js';
import { orderBody, startTestService, waitForFinal, type TestService } from '../support/service.js';

/** The simulated gateway, except its refunds fail the first `failures` times. */
class FlakyRefunds extends SimulatedPaymentGateway {
  calls = 0;
  constructor(
    ledgerStore: ConstructorParameters<typeof SimulatedPaymentGateway>[0],
    private readonly failures: number,
  ) {
    super(ledgerStore, { slowMs: 10 });
  }
  override async refund(request: Parameters<SimulatedPaymentGateway['refund']>[0]) {
    this.calls += 1;
    if (this.calls <= this.failures) throw new OrderError('payment_unavailable', `refund outage #${this.calls}`);
    return super.refund(request);
  }
}

let svc: TestService;
let gateway: FlakyRefunds;
let alice: string;
let admin: string;

beforeAll(async () => {
  svc = await startTestService(
    { RETRY_MAX_ATTEMPTS: '3' },
    {
      products: [{ sku: 'SKU-A', name: 'A', price_cents: 800, available: 10 }],
      overrides: { payments: (stores) => (gateway = new FlakyRefunds(stores.payments, 4)) },
    },
  );
  [alice, admin] = await Promise.all([svc.token('alice'), svc.token('ops', 'admin')]);
});
afterAll(() => svc.stop());

describe('a compensation that keeps failing', () => {
  it('parks the order in compensation_failed, visible with the failing stage, and never skips the undo', async () => {
    const res = await svc.call('POST', '/api/v1/pipeline/orders', { token: alice, body: orderBody({ items: [{ sku: 'SKU-A', quantity: 2 }], country: 'AQ' }) });
    expect(res.status).toBe(502);
    const problem = await res.json();
    expect(problem.code).toBe('compensation_failed');
    const order = problem.order;
    expect(order).toMatchObject({ status: 'compensation_failed', state: 'compensationFailed' });
    expect(order.stages.find((s: any) => s.name === 'refund')).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'payment_unavailable' } });
    expect(order.stages.find((s: any) => s.name === 'release').status).toBe('pending');
    expect(gateway.calls).toBe(3);
    // Nothing was silently dropped: the money is still captured, the stock still reserved.
    expect((await ledger(svc)).money(order.order_id).net).toBe(1600);
    expect((await ledger(svc)).products[0]).toMatchObject({ reserved: 2, available: 8 });
    expect(svc.engine.stats().live).toBe(0);

    const listed = await (await svc.call('GET', '/api/v1/pipeline/orders?status=compensation_failed', { token: admin })).json();
    expect(listed.items.map((o: any) => o.order_id)).toContain(order.order_id);
    const cancel = await svc.call('POST', `/api/v1/pipeline/orders/${order.order_id}/cancel`, { token: alice });
    expect(cancel.status).toBe(409);
  });

  it('can be resumed by an admin only, and then finishes the undo: refund, release, cancel', async () => {
    const [parked] = (await (await svc.call('GET', '/api/v1/pipeline/orders?status=compensation_failed', { token: admin })).json()).items;
    const byUser = await svc.call('POST', `/api/v1/pipeline/orders/${parked.order_id}/retry`, { token: alice });
    expect(byUser.status).toBe(403);

    // The outage continues once more: the first retry uses up one more failure, then succeeds.
    const retried = await svc.call('POST', `/api/v1/pipeline/orders/${parked.order_id}/retry`, { token: admin });
    expect(retried.status).toBe(202);
    const final = await waitForFinal(svc, parked.order_id, admin);
    expect(final.status).toBe('failed');
    expect(final.failure.code).toBe('fulfillment_failed');
    expect(final.stages.filter((s: any) => ['refund', 'release', 'cancellation'].includes(s.name)).map((s: any) => s.status)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
    ]);
    expect((await ledger(svc)).money(parked.order_id)).toEqual({ captured: 1600, refunded: 1600, net: 0 });
    expect((await ledger(svc)).products[0]).toMatchObject({ reserved: 0, available: 10, sold: 0 });

    const again = await svc.call('POST', `/api/v1/pipeline/orders/${parked.order_id}/retry`, { token: admin });
    expect(again.status).toBe(409);
    expect((await again.json()).code).toBe('invalid_transition');
  });
});
