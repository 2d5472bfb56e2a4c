import { OrderError } from '../../domain/errors.js';
import { newId } from '../../domain/ids.js';
import type { Notification, Order, OrderLine, Shipment } from '../../domain/order.js';
import type { Logger } from '../../logger.js';
import { currentFence, fenceParams, staleEpoch } from '../fence.js';
import { unwrapStockResult } from '../../workers/inventory.wire.js';
import type {
  AuditEntry,
  AuditStore,
  CatalogStore,
  ChargeRecord,
  ClusterStore,
  IdempotencyEntry,
  IdempotencyStore,
  NotificationStore,
  OrderRecordStore,
  PaymentLedger,
  Product,
  ShipmentStore,
  Stores,
} from '../store.ports.js';
import { inTransaction, migrate, openPool, run, type Pool } from './postgres.database.js';
import { createPostgresCluster } from './postgres.cluster.js';
import { sell } from './postgres.inventory.js';
import { createPostgresOrderStates, type PostgresOrderStatesOptions } from './postgres.order-states.js';
import { plans } from './postgres.plans.js';

/** Every store on PostgreSQL: the main thread's pool and what it was opened with. */
export interface PostgresStore {
  stores: Stores;
  /** Leases, claims, inbox and notifications, for several instances on this database. */
  cluster: ClusterStore;
  pool: Pool;
  url: string;
  close(): Promise<void>;
}

export interface OpenPostgresOptions {
  url: string;
  logger: Logger;
  /** Connections of the main thread's pool (the inventory workers have one each besides). */
  poolSize?: number;
  /** How long a statement waits for a row lock before failing as `storage_busy` (default 5 s). */
  lockTimeoutMs?: number;
  onFatal?: PostgresOrderStatesOptions['onFatal'];
}

/** Connects, applies the migrations (safe when several instances start at once), and builds every store. */
export async function openPostgresStore(options: OpenPostgresOptions): Promise<PostgresStore> {
  const { logger } = options;
  const pool = openPool({
    url: options.url,
    max: options.poolSize ?? 10,
    ...(options.lockTimeoutMs !== undefined ? { lockTimeoutMs: options.lockTimeoutMs } : {}),
    onIdleError: (err) => logger.warn({ err }, 'an idle PostgreSQL connection failed; the pool replaces it'),
  });
  try {
    const applied = await migrate(pool);
    if (applied.length > 0) logger.info({ versions: applied }, 'applied PostgreSQL migrations');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const stores = createPostgresStores(pool, { logger, ...(options.onFatal ? { onFatal: options.onFatal } : {}) });
  const cluster = createPostgresCluster(pool, { url: options.url, logger });
  return { stores, cluster, pool, url: options.url, close: () => pool.end() };
}

/**
 * Every store the main thread uses, on one pool. How this differs from SQLite: there, every
 * write of a turn joins one group commit with the order states that record it. Here each
 * step's effect is its own transaction (most are one statement), committed before the
 * step resolves; the state recording it commits later, in the next unit of work. So an
 * effect can be durable without the state that records it (a crash in between), never the
 * other way round, and since every effect is idempotent per order (unique keys and
 * `ON CONFLICT DO NOTHING`, or a conditional update), the step that runs again after a
 * restart finds the effect made and returns it. Shipping is the one place where SQLite
 * commits two effects together (the shipment and the sold stock); here they are two
 * idempotent effects of one step, and the order ships when the state after both commits.
 */
export function createPostgresStores(pool: Pool, options: PostgresOrderStatesOptions): Stores {
  // flush(): every write already waits for its own commit, so what is left is the ones still running.
  const pending = new Set<Promise<unknown>>();
  const track = <T>(write: Promise<T>): Promise<T> => {
    pending.add(write);
    void write.finally(() => pending.delete(write)).catch(() => undefined);
    return write;
  };
  const tracked = <A extends unknown[], T>(fn: (...args: A) => Promise<T>) => (...args: A) => track(fn(...args));

  const catalog = createCatalogStore(pool);
  const orders = createOrderRecordStore(pool);
  const payments = createPaymentLedger(pool);
  const shipments = createShipmentStore(pool);
  const notifications = createNotificationStore(pool);
  const idempotency = createIdempotencyStore(pool);
  const audit = createAuditStore(pool);
  return {
    states: createPostgresOrderStates(pool, options),
    catalog: { ...catalog, upsertProduct: tracked(catalog.upsertProduct) },
    orders: { place: tracked(orders.place), close: tracked(orders.close) },
    payments: { ...payments, recordCharge: tracked(payments.recordCharge), refundOrder: tracked(payments.refundOrder) },
    shipments: { ...shipments, insert: tracked(shipments.insert) },
    notifications: { ...notifications, insert: tracked(notifications.insert) },
    idempotency: {
      ...idempotency,
      claim: tracked(idempotency.claim),
      complete: tracked(idempotency.complete),
      purgeExpired: tracked(idempotency.purgeExpired),
    },
    audit: { ...audit, record: tracked(audit.record) },
    stock: {
      sell: tracked(async (orderId: string) => {
        const fence = currentFence();
        const result = await sell(pool, orderId, fence);
        if (!result.ok && result.fenced) throw staleEpoch(orderId, fence!);
        return unwrapStockResult(result)!;
      }),
    },
    flush: async () => {
      await Promise.allSettled([...pending]);
    },
  };
}

function createCatalogStore(pool: Pool): CatalogStore {
  return {
    async findProducts(skus) {
      const rows = await run<Product>(pool, plans.findProducts, [[...skus]]);
      return new Map(rows.map((p) => [p.sku, p]));
    },
    async getProduct(sku) {
      return (await run<Product>(pool, plans.getProduct, [sku]))[0] ?? null;
    },
    async listProducts() {
      return run<Product>(pool, plans.listProducts, []);
    },
    async upsertProduct(input) {
      const [row] = await run<Product & { created: boolean }>(pool, plans.upsertProduct, [
        input.sku,
        input.name,
        input.price_cents,
        input.available,
        new Date().toISOString(),
      ]);
      const { created, ...product } = row!;
      return { product, created };
    },
  };
}

interface OrderRow {
  id: string;
  user_id: string;
  status: string;
  items: string;
  total_cents: number;
  currency: string;
  created_at: string;
}

function createOrderRecordStore(pool: Pool): OrderRecordStore {
  const toOrder = (row: OrderRow): Order => ({
    id: row.id,
    user_id: row.user_id,
    items: JSON.parse(row.items) as OrderLine[],
    total_cents: row.total_cents,
    currency: row.currency,
    created_at: row.created_at,
  });
  return {
    async place(order, shipping) {
      const now = new Date().toISOString();
      const fence = currentFence();
      const [row] = await run<{ allowed: boolean; inserted: boolean }>(pool, plans.placeOrder, [
        order.id,
        order.user_id,
        JSON.stringify(order.items),
        order.total_cents,
        order.currency,
        JSON.stringify(shipping),
        order.created_at,
        now,
        ...fenceParams(fence),
      ]);
      if (!row!.allowed) throw staleEpoch(order.id, fence!);
      if (row!.inserted) return order;
      // Placed before (the step ran again after a restart), or closed first by a cancel.
      const [stored] = await run<OrderRow>(pool, plans.getOrder, [order.id]);
      if (stored!.status === 'cancelled' || stored!.status === 'failed') {
        throw new OrderError('order_cancelled', `order ${order.id} was closed before it was placed`);
      }
      return toOrder(stored!);
    },
    async close(orderId, status, fallback) {
      const items = fallback.request.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unit_price_cents: 0 }));
      const fence = currentFence();
      const [row] = await run<{ allowed: boolean }>(pool, plans.closeOrder, [
        orderId,
        fallback.user_id,
        status,
        JSON.stringify(items),
        JSON.stringify(fallback.request.shipping),
        fallback.created_at,
        new Date().toISOString(),
        ...fenceParams(fence),
      ]);
      if (!row!.allowed) throw staleEpoch(orderId, fence!);
    },
  };
}

interface ChargeRow {
  charge_id: string;
  order_id: string;
  status: ChargeRecord['status'];
  amount_cents: number;
  refunded_cents: number;
  decline_code: string | null;
}

const toCharge = (row: ChargeRow): ChargeRecord => ({
  payment_id: row.charge_id,
  order_id: row.order_id,
  status: row.status,
  amount_cents: row.amount_cents,
  refunded_cents: row.refunded_cents,
  decline_code: row.decline_code,
});

function createPaymentLedger(pool: Pool): PaymentLedger {
  return {
    async findCharge(orderId) {
      const [row] = await run<ChargeRow>(pool, plans.findCharge, [orderId]);
      return row ? toCharge(row) : null;
    },
    async recordCharge(charge) {
      const fence = currentFence();
      const [row] = await run<{ fenced: boolean; charge_id: string | null }>(pool, plans.insertChargeFenced, [
        charge.payment_id,
        charge.order_id,
        charge.idempotency_key,
        charge.status,
        charge.amount_cents,
        charge.refunded_cents,
        charge.decline_code,
        new Date().toISOString(),
        ...fenceParams(fence),
      ]);
      if (row!.fenced) throw staleEpoch(charge.order_id, fence!);
      if (row!.charge_id !== null) {
        const { idempotency_key: _key, ...record } = charge;
        return record;
      }
      const [stored] = await run<ChargeRow>(pool, plans.findCharge, [charge.order_id]);
      return toCharge(stored!); // the order already had one: that one stands
    },
    async refundOrder(orderId, idempotencyKey) {
      const fence = currentFence();
      return inTransaction(pool, async (tx) => {
        const now = new Date().toISOString();
        if (fence) {
          const [check] = await run<{ allowed: boolean }>(tx, plans.checkFence, [...fenceParams(fence), orderId]);
          if (!check!.allowed) throw staleEpoch(orderId, fence);
        }
        let [charge] = await run<ChargeRow>(tx, plans.lockCharge, [orderId]);
        if (!charge) {
          // Nothing captured yet: void the order so a capture still in flight is refused. If
          // that capture commits first, the insert finds it and the charge is refunded below.
          await run(tx, plans.insertCharge, [newId('ch'), orderId, `${orderId}:void`, 'voided', 0, 0, null, now]);
          [charge] = await run<ChargeRow>(tx, plans.lockCharge, [orderId]);
        }
        if (charge!.status === 'captured') {
          // A free order captured nothing: there is no money to give back, only the charge to close.
          if (charge!.amount_cents > 0) await run(tx, plans.insertRefund, [newId('re'), charge!.charge_id, orderId, idempotencyKey, charge!.amount_cents, now]);
          [charge] = await run<ChargeRow>(tx, plans.markRefunded, [charge!.charge_id, now]);
        }
        return toCharge(charge!);
      });
    },
  };
}

function createShipmentStore(pool: Pool): ShipmentStore {
  const find = async (orderId: string) => (await run<Shipment>(pool, plans.findShipment, [orderId]))[0] ?? null;
  return {
    find,
    async insert(shipment) {
      const fence = currentFence();
      const [row] = await run<{ allowed: boolean; inserted: boolean }>(pool, plans.insertShipment, [
        shipment.shipment_id,
        shipment.order_id,
        shipment.idempotency_key,
        shipment.carrier,
        shipment.tracking_number,
        shipment.country,
        new Date().toISOString(),
        ...fenceParams(fence),
      ]);
      if (!row!.allowed) throw staleEpoch(shipment.order_id, fence!);
      if (row!.inserted) {
        const { idempotency_key: _key, ...stored } = shipment;
        return stored;
      }
      return (await find(shipment.order_id))!;
    },
  };
}

function createNotificationStore(pool: Pool): NotificationStore {
  return {
    async insert(n) {
      const fence = currentFence();
      const [row] = await run<{ allowed: boolean; inserted: boolean }>(pool, plans.insertNotification, [
        n.notification_id,
        n.idempotency_key,
        n.order_id,
        n.kind,
        n.recipient,
        JSON.stringify(n.payload),
        n.created_at,
        ...fenceParams(fence),
      ]);
      if (!row!.allowed) throw staleEpoch(n.order_id, fence!);
      if (row!.inserted) {
        const { notification_id, order_id, kind, recipient, created_at } = n;
        return { notification_id, order_id, kind, recipient, created_at };
      }
      return (await run<Notification>(pool, plans.notificationByKey, [n.idempotency_key]))[0]!;
    },
    async listForOrder(orderId) {
      return run<Notification>(pool, plans.notificationsForOrder, [orderId]);
    },
  };
}

function createIdempotencyStore(pool: Pool): IdempotencyStore {
  const get = async (userId: string, key: string) => (await run<IdempotencyEntry>(pool, plans.getKey, [userId, key]))[0] ?? null;
  return {
    async claim(entry) {
      const [claimed] = await run<IdempotencyEntry>(pool, plans.claimKey, [
        entry.user_id,
        entry.key,
        entry.request_hash,
        entry.order_id,
        entry.request,
        entry.response_status,
        entry.response_body,
        entry.created_at,
        entry.expires_at,
      ]);
      if (claimed) return { claimed: true, entry: claimed };
      // A live entry holds the key (committed: the claim above waited for any in flight).
      return { claimed: false, entry: (await get(entry.user_id, entry.key))! };
    },
    async complete(userId, key, status, body) {
      await run(pool, plans.completeKey, [status, body, userId, key]);
    },
    get,
    async purgeExpired(now) {
      const [row] = await run<{ n: number }>(pool, plans.purgeKeys, [now.toISOString()]);
      return row!.n;
    },
  };
}

type AuditRow = Omit<AuditEntry, 'details'> & { details: string | null };

function createAuditStore(pool: Pool): AuditStore {
  const toEntry = (row: AuditRow): AuditEntry => ({ ...row, details: row.details === null ? null : (JSON.parse(row.details) as Record<string, unknown>) });
  return {
    async record(e) {
      await run(pool, plans.recordAudit, [
        e.id,
        e.at,
        e.actor,
        e.role,
        e.issuer,
        e.action,
        e.target,
        e.address,
        e.request_id,
        e.status,
        e.code,
        e.details === null ? null : JSON.stringify(e.details),
      ]);
    },
    async list(query) {
      const filters = { action: query.action !== undefined, actor: query.actor !== undefined };
      const values: unknown[] = [query.before ?? '~'];
      if (query.action !== undefined) values.push(query.action);
      if (query.actor !== undefined) values.push(query.actor);
      values.push(query.limit);
      return (await run<AuditRow>(pool, plans.auditList(filters), values)).map(toEntry);
    },
  };
}
