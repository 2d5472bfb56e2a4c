import { newId } from '../../../src/domain/ids.js';
import { orderViewSchema, type OrderView } from '../../../src/orders/order.view.js';
import type { Inventory, OrderStateWrite, Stores } from '../../../src/store/store.ports.js';

/** One store under test: every port, and the inventory as the order steps see it (pool included). */
export interface StoreHarness {
  stores: Stores;
  inventory: Inventory;
  /** Stock of one SKU as the database holds it (committed). */
  stock(sku: string): Promise<{ available: number; reserved: number; sold: number; added: number }>;
  close(): Promise<void>;
}

export type HarnessFactory = () => Promise<StoreHarness>;

/** A test body run against a fresh store from `makeStore`, closed afterwards whatever happens. */
export const withStore = (makeStore: HarnessFactory, test: (h: StoreHarness) => Promise<void>) => async () => {
  const h = await makeStore();
  try {
    await test(h);
  } finally {
    await h.close();
  }
};

/** A fresh order id; later ones sort after earlier ones. */
export const orderId = (): string => newId('ord');

/** A valid view, checked against the schema the API answers with. */
export function sampleView(order_id: string, overrides: Partial<OrderView> = {}): OrderView {
  const now = new Date().toISOString();
  return orderViewSchema.parse({
    order_id,
    user_id: 'alice',
    status: 'processing',
    state: 'placing',
    order: { id: order_id, user_id: 'alice', items: [{ sku: 'SKU-A', quantity: 1, unit_price_cents: null }], total_cents: null, currency: 'USD', created_at: now },
    inventory_items: [{ sku: 'SKU-A', quantity: 1, status: 'not_reserved' }],
    payment_result: null,
    shipment: null,
    notifications: [],
    stages: [],
    errors: [],
    failure: null,
    deadline_at: now,
    processing_time: '0.000s',
    processing_time_ms: 0,
    created_at: now,
    updated_at: now,
    ...overrides,
  });
}

export function stateWrite(order_id: string, fence: { owner: string; epoch: number; seq: number }, overrides: Partial<OrderView> = {}): OrderStateWrite {
  const view = sampleView(order_id, overrides);
  return {
    order_id,
    user_id: view.user_id,
    status: view.status,
    state: view.state,
    ...fence,
    view,
    snapshot: JSON.stringify({ status: 'active', value: view.state, context: { order_id } }),
    created_at: view.created_at,
    updated_at: view.updated_at,
  };
}
