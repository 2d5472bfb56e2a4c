import { OrderError } from '../../src/domain/errors.js';
import type { NewOrder, OrderChange, OrderChangeListener, OrderEngine, OrderQuery } from '../../src/orders/order.engine.js';
import type { OrderView } from '../../src/orders/order.view.js';
import type { AuditEntry, AuditStore, CatalogStore, IdempotencyEntry, IdempotencyStore, Product } from '../../src/store/store.ports.js';
import { sampleView } from '../store/contract/harness.js';

/**
 * An in-memory `OrderEngine` for HTTP tests: each submitted order takes the outcome the
 * test scripted for it (by payment token), and every call is recorded.
 */
export class FakeEngine implements OrderEngine {
  accepting = true;
  readonly views = new Map<string, OrderView>();
  readonly calls: Array<{ method: string; args: unknown[] }> = [];
  /** What `submit` does to an order paid with this token; default: settles completed. */
  outcomes = new Map<string, { settled: boolean; view: Partial<OrderView> } | OrderError>();

  async submit(order: NewOrder): Promise<OrderView> {
    this.calls.push({ method: 'submit', args: [order] });
    const outcome = this.outcomes.get(order.request.payment.token);
    if (outcome instanceof OrderError) throw outcome;
    const view = sampleView(order.order_id, { user_id: order.user_id, status: 'processing', state: 'placing' });
    this.views.set(order.order_id, view);
    return view;
  }
  async get(orderId: string) {
    this.calls.push({ method: 'get', args: [orderId] });
    return this.views.get(orderId) ?? null;
  }
  async list(query: OrderQuery) {
    this.calls.push({ method: 'list', args: [query] });
    return [...this.views.values()]
      .filter((v) => (query.user_id === undefined || v.user_id === query.user_id) && (query.status === undefined || v.status === query.status))
      .filter((v) => query.before === undefined || v.order_id < query.before)
      .sort((a, b) => (a.order_id < b.order_id ? 1 : -1))
      .slice(0, query.limit);
  }
  async waitUntilSettled(orderId: string) {
    const view = this.views.get(orderId);
    if (!view) throw new OrderError('not_found', `order ${orderId} not found`);
    const token = (this.calls.find((c) => c.method === 'submit' && (c.args[0] as NewOrder).order_id === orderId)?.args[0] as NewOrder | undefined)?.request.payment.token;
    const outcome = (token && this.outcomes.get(token)) || { settled: true, view: { status: 'completed' as const, state: 'completed' } };
    if (outcome instanceof OrderError) throw outcome;
    const settled = { ...view, ...outcome.view };
    this.views.set(orderId, settled);
    return { settled: outcome.settled, view: settled };
  }
  async history(orderId: string, _afterSeq = 0, _limit = 100): Promise<OrderChange[]> {
    const view = this.views.get(orderId);
    return view ? [{ order_id: orderId, seq: 1, at: view.updated_at, view }] : [];
  }
  async cancel(orderId: string) {
    this.calls.push({ method: 'cancel', args: [orderId] });
    const view = { ...this.views.get(orderId)!, status: 'cancelled' as const, state: 'cancelled' };
    this.views.set(orderId, view);
    return view;
  }
  async retry(orderId: string) {
    this.calls.push({ method: 'retry', args: [orderId] });
    return this.views.get(orderId)!;
  }
  subscribe(_listener: OrderChangeListener): () => void {
    return () => undefined;
  }
  async resumeUnfinished() {
    return 0;
  }
  async drain() {
    this.accepting = false;
    return { settled: 0, stopped: 0 };
  }
  stats() {
    return { live: 0 };
  }
}

/** In-memory catalog and idempotency stores, for `createApp` without a database. */
export function memoryStores(): { catalog: CatalogStore; idempotency: IdempotencyStore; audit: AuditStore & { entries: AuditEntry[] } } {
  const products = new Map<string, Product>();
  const entries: AuditEntry[] = [];
  const keys = new Map<string, IdempotencyEntry>();
  return {
    catalog: {
      async findProducts(skus) {
        return new Map(skus.filter((s) => products.has(s)).map((s) => [s, products.get(s)!]));
      },
      async getProduct(sku) {
        return products.get(sku) ?? null;
      },
      async listProducts() {
        return [...products.values()].sort((a, b) => (a.sku < b.sku ? -1 : 1));
      },
      async upsertProduct(input) {
        const old = products.get(input.sku);
        const product = old
          ? { ...old, ...input, added: old.added + (input.available - old.available) }
          : { ...input, reserved: 0, sold: 0, added: input.available };
        products.set(input.sku, product);
        return { product, created: !old };
      },
    },
    idempotency: {
      async claim(entry) {
        const slot = `${entry.user_id}\n${entry.key}`;
        const existing = keys.get(slot);
        if (existing) return { claimed: false, entry: existing };
        keys.set(slot, entry);
        return { claimed: true, entry };
      },
      async complete(userId, key, status, body) {
        const entry = keys.get(`${userId}\n${key}`);
        if (entry && entry.response_status === null) keys.set(`${userId}\n${key}`, { ...entry, response_status: status, response_body: body });
      },
      async get(userId, key) {
        return keys.get(`${userId}\n${key}`) ?? null;
      },
      async purgeExpired() {
        return 0;
      },
    },
    audit: {
      entries,
      async record(entry) {
        entries.push(entry);
      },
      async list({ before, limit, action, actor }) {
        return entries
          .filter((e) => (before === undefined || e.id < before) && (action === undefined || e.action === action) && (actor === undefined || e.actor === actor))
          .sort((a, b) => (a.id < b.id ? 1 : -1))
          .slice(0, limit);
      },
    },
  };
}
