import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/domain/ids.js';
import { committed } from '../support/ledger.js';
import { startTestService, orderBody, waitForFinal, type TestService } from '../support/service.js';

/*
 * A status answer is a promise about what survives a crash: whatever state a client is
 * shown must already be committed. (A kill -9 right after a client saw `paying` once
 * brought the order back at `reserving`, because the answer was built from a snapshot
 * queued for the turn's commit.) A second connection sees only committed data, on either store.
 */
let svc: TestService;

beforeAll(async () => {
  svc = await startTestService({ PAYMENT_SLOW_MS: '200' }, { products: [{ sku: 'SKU-A', name: 'A', price_cents: 500, available: 100 }] });
});
afterAll(async () => {
  await svc?.stop();
});

const committedRow = (orderId: string) =>
  committed(svc).get<{ status: string; state: string; version: number }>('SELECT status, state, version FROM order_snapshots WHERE order_id = ?', orderId);

const FORWARD = ['placing', 'reserving', 'paying', 'fulfilling', 'notifying', 'completed'];

describe('status reads', () => {
  it('show only states that are already committed, even while the change is still queued for the commit', async () => {
    const orderId = newId('ord');
    // Not awaited: the actor starts now and its first states are queued for this turn's commit.
    const submitted = svc.engine.submit({ order_id: orderId, user_id: 'alice', request: orderBody({ token: 'tok_slow' }) });
    const seen = await svc.engine.get(orderId);
    expect(seen).not.toBeNull();
    // Read just after: the row may have moved on since, never be behind what was shown.
    expect(FORWARD.indexOf((await committedRow(orderId))!.state)).toBeGreaterThanOrEqual(FORWARD.indexOf(seen!.state));
    await submitted;

    const token = await svc.token('alice');
    for (let i = 0; i < 50; i++) {
      const res = await svc.call('GET', `/api/v1/pipeline/orders/${orderId}/status`, { token });
      expect(res.status).toBe(200);
      const body = await res.json();
      const row = (await committedRow(orderId))!;
      // The row may have moved on since, never fallen behind.
      expect(FORWARD.indexOf(row.state)).toBeGreaterThanOrEqual(FORWARD.indexOf(body.state));
      if (body.status !== 'processing') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await waitForFinal(svc, orderId, token)).toMatchObject({ status: 'completed' });
  });
});
