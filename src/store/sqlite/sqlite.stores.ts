import type Database from 'better-sqlite3';
import { OrderError } from '../../domain/errors.js';
import { newId } from '../../domain/ids.js';
import type { Notification, Order, OrderLine, ShippingAddress, Shipment } from '../../domain/order.js';
import type { Logger } from '../../logger.js';
import { unwrapStockResult } from '../../workers/inventory.wire.js';
import { currentFence, staleEpoch } from '../fence.js';
import type {
  AuditEntry,
  AuditStore,
  CatalogStore,
  ChargeRecord,
  ClusterBus,
  ClusterStore,
  IdempotencyEntry,
  IdempotencyStore,
  Inventory,
  NotificationStore,
  OrderRecordStore,
  PaymentLedger,
  Product,
  ProductInput,
  ShipmentStore,
  Stores,
} from '../store.ports.js';
import { GroupCommit } from './group-commit.js';
import { migrate, openDatabase, type Db } from './sqlite.database.js';
import { createSqliteCluster } from './sqlite.cluster.js';
import { createFenceCheck } from './sqlite.fence.js';
import { createSqliteInventory } from './sqlite.inventory.js';
import { createSqliteOrderStates } from './sqlite.order-states.js';

/** The embedded store: one SQLite file, its main-thread connection and group commit. */
export interface SqliteStore {
  stores: Stores;
  /** Several processes (order loops) on this file: only when opened with a bus. */
  cluster?: ClusterStore;
  /** The main thread's connection (tests read it; nothing else should write through it). */
  db: Db;
  path: string;
  close(): void;
}

/**
 * Opens (creating if needed) and migrates the SQLite file, and builds every store on it.
 * With a `bus` (the processes sharing the file reach each other through it) also the
 * cluster store: leases, claims and the inbox on this file.
 */
export function openSqliteStore(path: string, logger: Logger, options: { bus?: ClusterBus } = {}): SqliteStore {
  const db = openDatabase(path);
  migrate(db);
  const commits = new GroupCommit(db, logger);
  const stores = createSqliteStores(db, commits);
  const cluster = options.bus ? createSqliteCluster(db, commits, options.bus) : undefined;
  return { stores, ...(cluster ? { cluster } : {}), db, path, close: () => db.close() };
}

/**
 * The fence of the step this write is made for (see src/store/fence.ts), checked inside
 * the write's transaction: throws `staleEpoch` when another owner or epoch holds the order.
 * Unfenced (one process, no cluster), it costs one AsyncLocalStorage read.
 */
function createFenceGuard(db: Db): (orderId: string) => void {
  const holds = createFenceCheck(db);
  return (orderId) => {
    const fence = currentFence();
    if (fence && !holds(orderId, fence)) throw staleEpoch(orderId, fence);
  };
}

/**
 * Every store the main thread uses, on one connection with prepared statements. All their
 * writes go through the connection's group commit: durable once `flush()` resolves.
 */
export function createSqliteStores(db: Db, commits: GroupCommit): Stores {
  return {
    states: createSqliteOrderStates(db, commits),
    catalog: createCatalogStore(db, commits),
    orders: createOrderRecordStore(db, commits),
    payments: createPaymentLedger(db, commits),
    shipments: createShipmentStore(db, commits),
    notifications: createNotificationStore(db, commits),
    idempotency: createIdempotencyStore(db, commits),
    audit: createAuditStore(db, commits),
    stock: createStockSale(db, commits),
    flush: () => commits.flush(),
  };
}

const PRODUCT_COLUMNS = 'sku, name, price_cents, available, reserved, sold, added';

function createCatalogStore(db: Db, commits: GroupCommit): CatalogStore {
  const getOne = db.prepare<[string], Product>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE sku = ?`);
  const listAll = db.prepare<[], Product>(`SELECT ${PRODUCT_COLUMNS} FROM products ORDER BY sku`);
  const insert = db.prepare(
    `INSERT INTO products (sku, name, price_cents, available, added, created_at, updated_at)
     VALUES (@sku, @name, @price_cents, @available, @available, @now, @now)`,
  );
  // Setting `available` adds the difference to `added`, so the stock invariant holds.
  const update = db.prepare(
    `UPDATE products SET name = @name, price_cents = @price_cents,
       added = added + (@available - available), available = @available, updated_at = @now
     WHERE sku = @sku`,
  );
  const upsert = db.transaction((input: ProductInput) => {
    const now = new Date().toISOString();
    const created = getOne.get(input.sku) === undefined;
    (created ? insert : update).run({ ...input, now });
    return { product: getOne.get(input.sku)!, created };
  });

  return {
    async findProducts(skus) {
      const found = new Map<string, Product>();
      for (const sku of skus) {
        const p = getOne.get(sku);
        if (p) found.set(sku, p);
      }
      return found;
    },
    async getProduct(sku) {
      return getOne.get(sku) ?? null;
    },
    async listProducts() {
      return listAll.all();
    },
    async upsertProduct(input) {
      const result = commits.write(() => upsert(input));
      await commits.flush(); // answered as stored: the workers read stock from their own connections
      return result;
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

function createOrderRecordStore(db: Db, commits: GroupCommit): OrderRecordStore {
  const get = db.prepare<[string], OrderRow>('SELECT id, user_id, status, items, total_cents, currency, created_at FROM orders WHERE id = ?');
  const insert = db.prepare(
    `INSERT INTO orders (id, user_id, status, items, total_cents, currency, shipping, created_at, updated_at)
     VALUES (@id, @user_id, @status, @items, @total_cents, @currency, @shipping, @created_at, @updated_at)
     ON CONFLICT (id) DO NOTHING`,
  );
  const setStatus = db.prepare(`UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?`);
  const fenced = createFenceGuard(db);
  const toOrder = (row: OrderRow): Order => ({
    id: row.id,
    user_id: row.user_id,
    items: JSON.parse(row.items) as OrderLine[],
    total_cents: row.total_cents,
    currency: row.currency,
    created_at: row.created_at,
  });
  const close = db.transaction((orderId: string, status: 'cancelled' | 'failed', fallback: Parameters<OrderRecordStore['close']>[2]) => {
    const now = new Date().toISOString();
    insert.run({
      id: orderId,
      user_id: fallback.user_id,
      status,
      items: JSON.stringify(fallback.request.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unit_price_cents: 0 }))),
      total_cents: 0,
      currency: 'USD',
      shipping: JSON.stringify(fallback.request.shipping),
      created_at: fallback.created_at,
      updated_at: now,
    });
    setStatus.run(status, now, orderId, 'placed');
  });

  return {
    async place(order: Order, shipping: ShippingAddress) {
      const now = new Date().toISOString();
      const inserted = commits.write(() => {
        fenced(order.id);
        return insert.run({
          ...order,
          status: 'placed',
          items: JSON.stringify(order.items),
          shipping: JSON.stringify(shipping),
          updated_at: now,
        });
      });
      if (inserted.changes === 1) return order;
      // Placed before (the step ran again after a restart), or closed first by a cancel.
      const stored = get.get(order.id)!;
      if (stored.status === 'cancelled' || stored.status === 'failed') {
        throw new OrderError('order_cancelled', `order ${order.id} was closed before it was placed`);
      }
      return toOrder(stored);
    },
    async close(orderId, status, fallback) {
      commits.write(() => {
        fenced(orderId);
        close(orderId, status, fallback);
      });
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

function createPaymentLedger(db: Db, commits: GroupCommit): PaymentLedger {
  const byOrder = db.prepare<[string], ChargeRow>(
    'SELECT charge_id, order_id, status, amount_cents, refunded_cents, decline_code FROM payment_charges WHERE order_id = ?',
  );
  const insertCharge = db.prepare(
    `INSERT INTO payment_charges (charge_id, order_id, idempotency_key, status, amount_cents, refunded_cents, decline_code, created_at, updated_at)
     VALUES (@charge_id, @order_id, @idempotency_key, @status, @amount_cents, @refunded_cents, @decline_code, @now, @now)
     ON CONFLICT DO NOTHING`,
  );
  const insertRefund = db.prepare(
    `INSERT INTO payment_refunds (refund_id, charge_id, order_id, idempotency_key, amount_cents, created_at)
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  const markRefunded = db.prepare(`UPDATE payment_charges SET status = 'refunded', refunded_cents = amount_cents, updated_at = ? WHERE charge_id = ?`);
  const fenced = createFenceGuard(db);
  const toRecord = (row: ChargeRow): ChargeRecord => ({
    payment_id: row.charge_id,
    order_id: row.order_id,
    status: row.status,
    amount_cents: row.amount_cents,
    refunded_cents: row.refunded_cents,
    decline_code: row.decline_code,
  });
  const refund = db.transaction((orderId: string, key: string): ChargeRecord => {
    const now = new Date().toISOString();
    const charge = byOrder.get(orderId);
    if (!charge) {
      // Nothing captured yet: void the order so a capture still in flight is refused.
      insertCharge.run({
        charge_id: newId('ch'),
        order_id: orderId,
        idempotency_key: `${orderId}:void`,
        status: 'voided',
        amount_cents: 0,
        refunded_cents: 0,
        decline_code: null,
        now,
      });
      return toRecord(byOrder.get(orderId)!);
    }
    if (charge.status === 'captured') {
      // A free order captured nothing: there is no money to give back, only the charge to close.
      if (charge.amount_cents > 0) insertRefund.run(newId('re'), charge.charge_id, orderId, key, charge.amount_cents, now);
      markRefunded.run(now, charge.charge_id);
    }
    return toRecord(byOrder.get(orderId)!);
  });

  return {
    async findCharge(orderId) {
      const row = byOrder.get(orderId);
      return row ? toRecord(row) : null;
    },
    async recordCharge(charge) {
      const inserted = commits.write(() => {
        fenced(charge.order_id);
        return insertCharge.run({
          charge_id: charge.payment_id,
          order_id: charge.order_id,
          idempotency_key: charge.idempotency_key,
          status: charge.status,
          amount_cents: charge.amount_cents,
          refunded_cents: charge.refunded_cents,
          decline_code: charge.decline_code,
          now: new Date().toISOString(),
        });
      });
      if (inserted.changes === 1) {
        const { idempotency_key: _key, ...record } = charge;
        return record;
      }
      return toRecord(byOrder.get(charge.order_id)!); // the order already had one: that one stands
    },
    async refundOrder(orderId, idempotencyKey) {
      return commits.write(() => {
        fenced(orderId);
        return refund(orderId, idempotencyKey);
      });
    },
  };
}

function createShipmentStore(db: Db, commits: GroupCommit): ShipmentStore {
  const find = db.prepare<[string], Shipment>('SELECT shipment_id, order_id, carrier, tracking_number, country FROM shipments WHERE order_id = ?');
  const insert = db.prepare(
    `INSERT INTO shipments (shipment_id, order_id, idempotency_key, carrier, tracking_number, country, created_at)
     VALUES (@shipment_id, @order_id, @idempotency_key, @carrier, @tracking_number, @country, @now) ON CONFLICT DO NOTHING`,
  );
  const fenced = createFenceGuard(db);
  return {
    async find(orderId) {
      return find.get(orderId) ?? null;
    },
    async insert(shipment) {
      const inserted = commits.write(() => {
        fenced(shipment.order_id);
        return insert.run({ ...shipment, now: new Date().toISOString() });
      });
      if (inserted.changes === 1) {
        const { idempotency_key: _key, ...stored } = shipment;
        return stored;
      }
      return find.get(shipment.order_id)!;
    },
  };
}

function createNotificationStore(db: Db, commits: GroupCommit): NotificationStore {
  const insert = db.prepare(
    `INSERT INTO notifications (notification_id, idempotency_key, order_id, kind, recipient, payload, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`,
  );
  const columns = 'notification_id, order_id, kind, recipient, created_at';
  const byKey = db.prepare<[string], Notification>(`SELECT ${columns} FROM notifications WHERE idempotency_key = ?`);
  const byOrder = db.prepare<[string], Notification>(`SELECT ${columns} FROM notifications WHERE order_id = ? ORDER BY created_at, notification_id`);
  const fenced = createFenceGuard(db);
  return {
    async insert(n) {
      const inserted = commits.write(() => {
        fenced(n.order_id);
        return insert.run(n.notification_id, n.idempotency_key, n.order_id, n.kind, n.recipient, JSON.stringify(n.payload), n.created_at);
      });
      if (inserted.changes === 1) {
        const { notification_id, order_id, kind, recipient, created_at } = n;
        return { notification_id, order_id, kind, recipient, created_at };
      }
      return byKey.get(n.idempotency_key)!;
    },
    async listForOrder(orderId) {
      return byOrder.all(orderId);
    },
  };
}

function createIdempotencyStore(db: Db, commits: GroupCommit): IdempotencyStore {
  const columns = 'user_id, key, request_hash, order_id, request, response_status, response_body, created_at, expires_at';
  const get = db.prepare<[string, string], IdempotencyEntry>(`SELECT ${columns} FROM idempotency_keys WHERE user_id = ? AND key = ?`);
  const dropExpired = db.prepare('DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND expires_at <= ?');
  const insert = db.prepare(
    `INSERT INTO idempotency_keys (${columns})
     VALUES (@user_id, @key, @request_hash, @order_id, @request, @response_status, @response_body, @created_at, @expires_at)
     ON CONFLICT (user_id, key) DO NOTHING`,
  );
  const complete = db.prepare('UPDATE idempotency_keys SET response_status = ?, response_body = ? WHERE user_id = ? AND key = ? AND response_status IS NULL');
  const purge = db.prepare('DELETE FROM idempotency_keys WHERE expires_at <= ?');
  const claim = db.transaction((entry: IdempotencyEntry) => {
    dropExpired.run(entry.user_id, entry.key, entry.created_at);
    const claimed = insert.run(entry).changes === 1;
    return { claimed, entry: get.get(entry.user_id, entry.key)! };
  });
  return {
    async claim(entry) {
      return commits.write(() => claim(entry));
    },
    async complete(userId, key, status, body) {
      commits.write(() => complete.run(status, body, userId, key));
      await commits.flush(); // the answer is replayable before it is sent
    },
    async get(userId, key) {
      return get.get(userId, key) ?? null;
    },
    async purgeExpired(now) {
      return commits.write(() => purge.run(now.toISOString()).changes);
    },
  };
}

function createAuditStore(db: Db, commits: GroupCommit): AuditStore {
  const columns = 'id, at, actor, role, issuer, action, target, address, request_id, status, code, details';
  const insert = db.prepare(
    `INSERT INTO audit_log (${columns}) VALUES (@id, @at, @actor, @role, @issuer, @action, @target, @address, @request_id, @status, @code, @details)`,
  );
  // One statement per combination of filters, so each walks its index; `~` sorts after every id (the first page).
  const lists = new Map<string, Database.Statement<unknown[], AuditRow>>();
  const listing = (action: boolean, actor: boolean) => {
    const key = `${action}/${actor}`;
    let statement = lists.get(key);
    if (!statement) {
      const where = ['id < ?', ...(action ? ['action = ?'] : []), ...(actor ? ['actor = ?'] : [])].join(' AND ');
      statement = db.prepare<unknown[], AuditRow>(`SELECT ${columns} FROM audit_log WHERE ${where} ORDER BY id DESC LIMIT ?`);
      lists.set(key, statement);
    }
    return statement;
  };
  const toEntry = (row: AuditRow): AuditEntry => ({ ...row, details: row.details === null ? null : (JSON.parse(row.details) as Record<string, unknown>) });
  return {
    async record(entry) {
      commits.write(() => insert.run({ ...entry, details: entry.details === null ? null : JSON.stringify(entry.details) }));
      await commits.flush();
    },
    async list(query) {
      const params: unknown[] = [query.before ?? '~'];
      if (query.action !== undefined) params.push(query.action);
      if (query.actor !== undefined) params.push(query.actor);
      params.push(query.limit);
      return listing(query.action !== undefined, query.actor !== undefined).all(...params).map(toEntry);
    },
  };
}

type AuditRow = Omit<AuditEntry, 'details'> & { details: string | null };

/** Selling a shipped order's reserved stock, in the same commit as its shipment (see `Inventory`). */
function createStockSale(db: Db, commits: GroupCommit): Pick<Inventory, 'sell'> {
  const inventory = createSqliteInventory(db);
  return {
    async sell(orderId) {
      const fence = currentFence();
      const result = commits.write(() => inventory.sell(orderId, fence));
      if (!result.ok && result.fenced) throw staleEpoch(orderId, fence!);
      return unwrapStockResult(result)!;
    },
  };
}
