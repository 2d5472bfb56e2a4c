import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledger } from '../support/ledger.js';
import { orderBody, startTestService, waitForFinal, waitForState, type TestService } from '../support/service.js';

let svc: TestService;
let admin: string;
let user: string;

beforeAll(async () => {
  svc = await startTestService({ INVENTORY_THREADS: '2' });
  [admin, user] = await Promise.all([svc.token('root', 'admin'), svc.token('alice')]);
});
afterAll(() => svc.stop());

describe('inventory API', () => {
  it('lets an admin create (201) and update (200) a product; anyone signed in can read it', async () => {
    const created = await svc.call('PUT', '/api/v1/inventory/SKU-NEW', { token: admin, body: { name: 'New', price_cents: 999, available: 10 } });
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ sku: 'SKU-NEW', name: 'New', price_cents: 999, available: 10, reserved: 0, sold: 0 });
    const updated = await svc.call('PUT', '/api/v1/inventory/SKU-NEW', { token: admin, body: { name: 'Newer', price_cents: 1099, available: 25 } });
    expect(updated.status).toBe(200);
    expect((await updated.json()).available).toBe(25);

    const one = await svc.call('GET', '/api/v1/inventory/SKU-NEW', { token: user });
    expect(await one.json()).toEqual({ sku: 'SKU-NEW', name: 'Newer', price_cents: 1099, available: 25, reserved: 0, sold: 0 });
    const all = await (await svc.call('GET', '/api/v1/inventory', { token: user })).json();
    expect(all.items.map((p: any) => p.sku)).toContain('SKU-NEW');
  });

  it('forbids a user from writing the catalog', async () => {
    const res = await svc.call('PUT', '/api/v1/inventory/SKU-X', { token: user, body: { name: 'X', price_cents: 1, available: 1 } });
    expect(res.status).toBe(403);
  });

  it('answers 404 for an unknown SKU and 400 for a bad product', async () => {
    expect((await svc.call('GET', '/api/v1/inventory/SKU-MISSING', { token: user })).status).toBe(404);
    const bad = await svc.call('PUT', '/api/v1/inventory/SKU-BAD', { token: admin, body: { name: '', price_cents: -1, available: 1.5 } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors.map((e: any) => e.path).sort()).toEqual(['/available', '/name', '/price_cents']);
    const badSku = await svc.call('PUT', '/api/v1/inventory/bad%20sku', { token: admin, body: { name: 'n', price_cents: 1, available: 1 } });
    expect(badSku.status).toBe(400);
  });

  it('keeps stock added = available + reserved + sold when an admin restocks while orders hold reservations', async () => {
    await svc.call('PUT', '/api/v1/inventory/SKU-R', { token: admin, body: { name: 'R', price_cents: 100, available: 5 } });
    const { order_id } = await (
      await svc.call('POST', '/api/v1/pipeline/orders/async', { token: user, body: orderBody({ token: 'tok_slow', items: [{ sku: 'SKU-R', quantity: 2 }] }) })
    ).json();
    await waitForState(svc, order_id, user, 'paying'); // the slow capture is in flight
    const mid = await (await svc.call('GET', '/api/v1/inventory/SKU-R', { token: user })).json();
    expect(mid).toMatchObject({ available: 3, reserved: 2, sold: 0 });
    await svc.call('PUT', '/api/v1/inventory/SKU-R', { token: admin, body: { name: 'R', price_cents: 100, available: 10 } });
    expect((await waitForFinal(svc, order_id, user)).status).toBe('completed');
    const row = (await ledger(svc)).products.find((p) => p.sku === 'SKU-R')!;
    expect(row).toEqual({ sku: 'SKU-R', available: 10, reserved: 0, sold: 2, added: 12 });
  });
});
