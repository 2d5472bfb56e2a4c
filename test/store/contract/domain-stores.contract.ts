import { describe, expect, it } from 'vitest';
import { OrderError } from '../../../src/domain/errors.js';
import { newId } from '../../../src/domain/ids.js';
import type { AuditEntry } from '../../../src/store/store.ports.js';
import { orderId, withStore as withFreshStore, type HarnessFactory, type StoreHarness } from './harness.js';

const shipping = { name: 'A', line1: 'B', city: 'C', postal_code: 'D', country: 'DE' };
const order = (id: string) => ({
  id,
  user_id: 'alice',
  items: [{ sku: 'SKU-A', quantity: 2, unit_price_cents: 500 }],
  total_cents: 1000,
  currency: 'USD',
  created_at: new Date().toISOString(),
});

/** What the catalog, the steps' effect stores and the idempotency store must do. */
export function domainStoresContract(makeStore: HarnessFactory) {
  const withStore = (test: (h: StoreHarness) => Promise<void>) => withFreshStore(makeStore, test);

  describe('catalog', () => {
    it(
      'creates and updates products, keeping added = available + reserved + sold',
      withStore(async ({ stores: { catalog }, inventory }) => {
        expect((await catalog.upsertProduct({ sku: 'C-1', name: 'one', price_cents: 100, available: 10 })).created).toBe(true);
        await inventory.reserve(orderId(), [{ sku: 'C-1', quantity: 4 }]);
        const { product, created } = await catalog.upsertProduct({ sku: 'C-1', name: 'uno', price_cents: 120, available: 20 });
        expect(created).toBe(false);
        expect(product).toEqual({ sku: 'C-1', name: 'uno', price_cents: 120, available: 20, reserved: 4, sold: 0, added: 24 });
        await catalog.upsertProduct({ sku: 'C-0', name: 'zero', price_cents: 1, available: 0 });
        expect((await catalog.listProducts()).map((p) => p.sku)).toEqual(['C-0', 'C-1']);
        const found = await catalog.findProducts(['C-1', 'NOPE']);
        expect([...found.keys()]).toEqual(['C-1']);
        expect(await catalog.getProduct('NOPE')).toBeNull();
      }),
    );
  });

  describe('order records', () => {
    it(
      'places an order once, and refuses to place one closed first',
      withStore(async ({ stores }) => {
        const placed = order(orderId());
        expect(await stores.orders.place(placed, shipping)).toEqual(placed);
        const again = await stores.orders.place({ ...placed, total_cents: 1 }, shipping);
        expect(again.total_cents).toBe(1000);

        const closed = orderId();
        await stores.orders.close(closed, 'cancelled', { user_id: 'alice', request: { items: [{ sku: 'SKU-A', quantity: 1 }], payment: { token: 't' }, shipping }, created_at: new Date().toISOString() });
        const err = await stores.orders.place(order(closed), shipping).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OrderError);
        expect((err as OrderError).code).toBe('order_cancelled');
      }),
    );
  });

  describe('payments', () => {
    it(
      'records one charge per order and refunds it once; a refund before any charge voids the order',
      withStore(async ({ stores: { payments } }) => {
        const id = orderId();
        const charge = { payment_id: newId('ch'), order_id: id, status: 'captured' as const, amount_cents: 700, refunded_cents: 0, decline_code: null };
        expect(await payments.recordCharge({ ...charge, idempotency_key: `${id}:capture` })).toEqual(charge);
        const second = await payments.recordCharge({ ...charge, payment_id: newId('ch'), amount_cents: 1, idempotency_key: `${id}:capture` });
        expect(second).toEqual(charge);
        expect(await payments.findCharge(id)).toEqual(charge);
        expect(await payments.refundOrder(id, `${id}:refund`)).toMatchObject({ status: 'refunded', refunded_cents: 700 });
        expect(await payments.refundOrder(id, `${id}:refund`)).toMatchObject({ status: 'refunded', refunded_cents: 700 });

        const never = orderId();
        expect(await payments.refundOrder(never, `${never}:refund`)).toMatchObject({ status: 'voided', amount_cents: 0 });
        const late = await payments.recordCharge({ ...charge, payment_id: newId('ch'), order_id: never, idempotency_key: `${never}:capture` });
        expect(late.status).toBe('voided');
      }),
    );

    it(
      'refunds a captured charge of nothing (a free order) without a refund row, so its compensation cannot fail',
      withStore(async ({ stores: { payments } }) => {
        const id = orderId();
        const free = { payment_id: newId('ch'), order_id: id, status: 'captured' as const, amount_cents: 0, refunded_cents: 0, decline_code: null };
        await payments.recordCharge({ ...free, idempotency_key: `${id}:capture` });
        expect(await payments.refundOrder(id, `${id}:refund`)).toMatchObject({ status: 'refunded', amount_cents: 0, refunded_cents: 0 });
        expect(await payments.refundOrder(id, `${id}:refund`)).toMatchObject({ status: 'refunded', refunded_cents: 0 });
      }),
    );
  });

  describe('shipments and notifications', () => {
    it(
      'stores one shipment per order and one notification per key',
      withStore(async ({ stores: { shipments, notifications } }) => {
        const id = orderId();
        const shipment = { shipment_id: newId('shp'), order_id: id, carrier: 'c', tracking_number: 't1', country: 'DE' };
        expect(await shipments.insert({ ...shipment, idempotency_key: `${id}:ship` })).toEqual(shipment);
        expect(await shipments.insert({ ...shipment, shipment_id: newId('shp'), tracking_number: 't2', idempotency_key: `${id}:ship` })).toEqual(shipment);
        expect(await shipments.find(id)).toEqual(shipment);

        const n = { notification_id: newId('ntf'), order_id: id, kind: 'shipment' as const, recipient: 'alice', created_at: new Date().toISOString() };
        expect(await notifications.insert({ ...n, idempotency_key: `${id}:notify:shipment`, payload: { a: 1 } })).toEqual(n);
        await notifications.insert({ ...n, notification_id: newId('ntf'), idempotency_key: `${id}:notify:shipment`, payload: {} });
        expect(await notifications.listForOrder(id)).toEqual([n]);
      }),
    );
  });

  describe('idempotency keys', () => {
    it(
      'claims a key once, stores the first answer, and forgets expired keys',
      withStore(async ({ stores: { idempotency } }) => {
        const now = new Date();
        const entry = {
          user_id: 'alice',
          key: 'k1',
          request_hash: 'h',
          order_id: orderId(),
          request: '{}',
          response_status: null,
          response_body: null,
          created_at: now.toISOString(),
          expires_at: new Date(now.getTime() + 60_000).toISOString(),
        };
        expect(await idempotency.claim(entry)).toEqual({ claimed: true, entry });
        const again = await idempotency.claim({ ...entry, order_id: orderId() });
        expect(again).toEqual({ claimed: false, entry });
        await idempotency.complete('alice', 'k1', 201, '{"a":1}');
        await idempotency.complete('alice', 'k1', 500, 'later');
        expect(await idempotency.get('alice', 'k1')).toMatchObject({ response_status: 201, response_body: '{"a":1}' });
        expect(await idempotency.get('bob', 'k1')).toBeNull();
        expect(await idempotency.purgeExpired(new Date(now.getTime() + 120_000))).toBe(1);
        expect(await idempotency.get('alice', 'k1')).toBeNull();
      }),
    );
  });

  describe('audit log', () => {
    const entry = (i: number, overrides: Partial<AuditEntry> = {}): AuditEntry => ({
      id: newId('aud'),
      at: new Date().toISOString(),
      actor: 'ops',
      role: 'admin',
      issuer: i === 3 ? 'https://idp.example' : null,
      action: i % 2 ? 'order.retry' : 'inventory.set',
      target: `T-${i}`,
      address: i === 0 ? null : '127.0.0.1',
      request_id: i === 0 ? null : `req-${i}`,
      status: i === 2 ? 409 : 200,
      code: i === 2 ? 'invalid_transition' : null,
      details: i === 1 ? { available: 5, name: 'Ωmega 😀' } : null,
      ...overrides,
    });

    it(
      'keeps entries newest first, a page at a time',
      withStore(async ({ stores: { audit } }) => {
        const entries = [0, 1, 2, 3].map((i) => entry(i));
        for (const e of entries) await audit.record(e);
        const first = await audit.list({ limit: 3 });
        expect(first).toEqual([entries[3], entries[2], entries[1]]);
        expect(await audit.list({ before: first.at(-1)!.id, limit: 3 })).toEqual([entries[0]]);
        expect(await audit.list({ before: entries[0]!.id, limit: 3 })).toEqual([]);
      }),
    );

    it(
      'keeps one order for entries recorded in the same millisecond, with no gap or repeat between pages',
      withStore(async ({ stores: { audit } }) => {
        const at = new Date().toISOString();
        // One `at` for all, written concurrently: the order is the ids', not the times' nor the writes'.
        const entries = Array.from({ length: 25 }, (_, i) => entry(i, { at }));
        await Promise.all(entries.map((e) => audit.record(e)));
        const seen: AuditEntry[] = [];
        let before: string | undefined;
        for (;;) {
          const page = await audit.list({ limit: 4, ...(before ? { before } : {}) });
          if (page.length === 0) break;
          seen.push(...page);
          before = page.at(-1)!.id;
        }
        expect(seen.map((e) => e.id)).toEqual(entries.map((e) => e.id).reverse());
      }),
    );

    it(
      'lists by action and by actor, newest first, each a page at a time',
      withStore(async ({ stores: { audit } }) => {
        const entries = [0, 1, 2, 3, 4, 5].map((i) => entry(i, { actor: i < 3 ? 'ops' : 'root' }));
        for (const e of entries) await audit.record(e);
        const retries = entries.filter((e) => e.action === 'order.retry').reverse();
        expect(await audit.list({ action: 'order.retry', limit: 10 })).toEqual(retries);
        const page = await audit.list({ action: 'order.retry', limit: 2 });
        expect(page).toEqual(retries.slice(0, 2));
        expect(await audit.list({ action: 'order.retry', before: page.at(-1)!.id, limit: 2 })).toEqual(retries.slice(2));
        expect(await audit.list({ actor: 'root', limit: 10 })).toEqual(entries.slice(3).reverse());
        expect(await audit.list({ actor: 'root', action: 'inventory.set', limit: 10 })).toEqual([entries[4]]);
        expect(await audit.list({ actor: 'nobody', limit: 10 })).toEqual([]);
      }),
    );
  });

  describe('inventory', () => {
    it(
      'reserves all lines or none, idempotently, and releases once',
      withStore(async ({ stores: { catalog }, inventory, stock }) => {
        await catalog.upsertProduct({ sku: 'I-A', name: 'a', price_cents: 1, available: 5 });
        await catalog.upsertProduct({ sku: 'I-B', name: 'b', price_cents: 1, available: 1 });
        const id = orderId();
        const items = [{ sku: 'I-A', quantity: 2 }, { sku: 'I-B', quantity: 1 }];
        expect(await inventory.reserve(id, items)).toEqual({ order_id: id, status: 'reserved', items });
        expect(await inventory.reserve(id, items)).toEqual({ order_id: id, status: 'reserved', items });
        await expect(inventory.reserve(orderId(), [{ sku: 'I-A', quantity: 1 }, { sku: 'I-B', quantity: 1 }])).rejects.toMatchObject({
          code: 'insufficient_stock',
          details: { sku: 'I-B', requested: 1, available: 0 },
        });
        await expect(inventory.reserve(orderId(), [{ sku: 'NOPE', quantity: 1 }])).rejects.toMatchObject({ code: 'unknown_sku' });
        expect(await stock('I-A')).toEqual({ available: 3, reserved: 2, sold: 0, added: 5 });
        expect((await inventory.release(id))?.status).toBe('released');
        expect((await inventory.release(id))?.status).toBe('released');
        expect(await stock('I-A')).toEqual({ available: 5, reserved: 0, sold: 0, added: 5 });
      }),
    );

    it(
      'sells a reservation once; a release that came first leaves a tombstone so a late reserve takes nothing',
      withStore(async ({ stores: { catalog }, inventory, stock }) => {
        await catalog.upsertProduct({ sku: 'I-S', name: 's', price_cents: 1, available: 3 });
        const id = orderId();
        await inventory.reserve(id, [{ sku: 'I-S', quantity: 2 }]);
        expect((await inventory.sell(id)).status).toBe('committed');
        expect((await inventory.sell(id)).status).toBe('committed');
        await expect(inventory.release(id)).rejects.toMatchObject({ code: 'step_failed' });
        expect(await stock('I-S')).toEqual({ available: 1, reserved: 0, sold: 2, added: 3 });

        const late = orderId();
        expect(await inventory.release(late)).toBeNull();
        await expect(inventory.reserve(late, [{ sku: 'I-S', quantity: 1 }])).rejects.toMatchObject({ code: 'reservation_released' });
        await expect(inventory.sell(late)).rejects.toMatchObject({ code: 'reservation_released' });
        expect(await stock('I-S')).toEqual({ available: 1, reserved: 0, sold: 2, added: 3 });
      }),
    );

    it(
      'never oversells when many orders race for one SKU, whatever the lines',
      withStore(async ({ stores: { catalog }, inventory, stock }) => {
        await catalog.upsertProduct({ sku: 'I-HOT', name: 'hot', price_cents: 1, available: 30 });
        await catalog.upsertProduct({ sku: 'I-COLD', name: 'cold', price_cents: 1, available: 1000 });
        const results = await Promise.allSettled(
          Array.from({ length: 90 }, (_, i) =>
            inventory.reserve(orderId(), i % 2 ? [{ sku: 'I-COLD', quantity: 1 }, { sku: 'I-HOT', quantity: 1 }] : [{ sku: 'I-HOT', quantity: 1 }, { sku: 'I-COLD', quantity: 1 }]),
          ),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(30);
        expect(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'insufficient_stock')).toBe(true);
        expect(await stock('I-HOT')).toEqual({ available: 0, reserved: 30, sold: 0, added: 30 });
        expect(await stock('I-COLD')).toEqual({ available: 970, reserved: 30, sold: 0, added: 1000 });
      }),
    );
  });
}
