import type { StepErrorCode } from '../domain/errors.js';
import type {
  Notification,
  NotificationKind,
  Order,
  OrderItemRequest,
  OrderRequest,
  Payment,
  PipelineStatus,
  Reservation,
  ShippingAddress,
  Shipment,
} from '../domain/order.js';

/*
 * The storage the order logic needs, shaped by that logic rather than by SQL. SQLite
 * implements every port today (sqlite-store.ts, inventory.sqlite.ts); another database
 * implements the same ports. Methods are async so a networked store fits unchanged.
 */

export interface Product {
  sku: string;
  name: string;
  price_cents: number;
  available: number;
  reserved: number;
  sold: number;
  /** Stock ever added: always available + reserved + sold. */
  added: number;
}

export interface ProductInput {
  sku: string;
  name: string;
  price_cents: number;
  available: number;
}

export interface CatalogStore {
  findProducts(skus: readonly string[]): Promise<Map<string, Product>>;
  getProduct(sku: string): Promise<Product | null>;
  listProducts(): Promise<Product[]>;
  /** Creates or updates a product; setting `available` adds (or removes) stock, keeping the invariant. */
  upsertProduct(input: ProductInput): Promise<{ product: Product; created: boolean }>;
}

export interface OrderRecordStore {
  /** Stores the placed order once; a second call returns the stored one. Fails with `order_cancelled` if closed first. */
  place(order: Order, shipping: ShippingAddress): Promise<Order>;
  /** Closes the order as cancelled or failed, storing it from the request if it was never placed. */
  close(orderId: string, status: 'cancelled' | 'failed', fallback: { user_id: string; request: OrderRequest; created_at: string }): Promise<void>;
}

export interface SnapshotRecord {
  order_id: string;
  user_id: string;
  status: PipelineStatus;
  /** The machine state, e.g. `paying`. */
  state: string;
  /** `actor.getPersistedSnapshot()`, as JSON. */
  snapshot: string;
  created_at: string;
  updated_at: string;
}

export interface SnapshotQuery {
  user_id?: string;
  status?: PipelineStatus;
  /** Only orders created before this order id (ids sort by creation time). */
  before?: string;
  limit: number;
}

export interface SnapshotStore {
  /** Persists several snapshots in one transaction: all or none. */
  saveMany(records: readonly SnapshotRecord[]): Promise<void>;
  get(orderId: string): Promise<SnapshotRecord | null>;
  list(query: SnapshotQuery): Promise<SnapshotRecord[]>;
  /** Orders that are neither final nor parked: the ones to resume after a restart. */
  listUnfinished(): Promise<SnapshotRecord[]>;
}

/** What the inventory workers answer: plain data, since error classes do not cross threads. */
export type StockResult =
  | { ok: true; reservation: Reservation | null }
  | { ok: false; code: StepErrorCode; message: string; sku?: string; requested?: number; available?: number };

/** What the worker pool does: the stock checks and reservations, contended between orders. */
export type StockOp = { op: 'reserve'; order_id: string; items: OrderItemRequest[] } | { op: 'release'; order_id: string };

/**
 * Inventory as the order steps see it; failures are `OrderError`s with the store's code.
 * Reserve and release run on the worker pool. Commit, which turns a shipped order's
 * reservation into sold stock, runs in the main thread's group commit: shipment, sold
 * stock, the order's `shipped` status and the snapshot recording them commit together.
 */
export interface Inventory {
  reserve(orderId: string, items: readonly OrderItemRequest[]): Promise<Reservation>;
  release(orderId: string): Promise<Reservation | null>;
  commit(orderId: string): Promise<Reservation>;
}

/** The inventory operations, each one transaction and idempotent per order. */
export interface InventoryStore {
  reserve(orderId: string, items: readonly OrderItemRequest[]): StockResult;
  /** Releases the order's reservation, or leaves a tombstone so a late reserve cannot happen. */
  release(orderId: string): StockResult;
  /** Turns the reservation into sold stock and marks the order shipped. */
  commit(orderId: string): StockResult;
  /** Several reserves and releases in one transaction, each all-or-nothing on its own; results in order. */
  batch(ops: readonly StockOp[]): StockResult[];
}

export interface ChargeRecord extends Payment {
  decline_code: string | null;
}

/** The simulated payment gateway's ledger of charges and refunds. */
export interface PaymentLedger {
  findCharge(orderId: string): Promise<ChargeRecord | null>;
  /** Inserts the charge unless the order already has one; returns whichever is stored. */
  recordCharge(charge: ChargeRecord & { idempotency_key: string }): Promise<ChargeRecord>;
  /** Refunds the order's charge in full once; voids the order when it has no charge yet. */
  refundOrder(orderId: string, idempotencyKey: string): Promise<ChargeRecord>;
}

/** The main thread's part of the inventory (see `Inventory`). */
export interface StockLedger {
  /** Turns the order's reservation into sold stock and marks the order shipped; idempotent. */
  commit(orderId: string): Promise<Reservation>;
}

export interface ShipmentStore {
  find(orderId: string): Promise<Shipment | null>;
  insert(shipment: Shipment & { idempotency_key: string }): Promise<Shipment>;
}

export interface NotificationStore {
  /** Inserts once per idempotency key; returns the stored notification. */
  insert(n: Notification & { idempotency_key: string; payload: unknown }): Promise<Notification>;
  listForOrder(orderId: string): Promise<Notification[]>;
}

export interface IdempotencyEntry {
  user_id: string;
  key: string;
  /** Hash of the endpoint and the validated body: the same key with another request is refused. */
  request_hash: string;
  order_id: string;
  /** The validated request, so an order lost between claim and start can still be started. */
  request: string;
  response_status: number | null;
  response_body: string | null;
  created_at: string;
  expires_at: string;
}

export interface IdempotencyStore {
  /** Records the key unless a live entry exists; returns the stored entry either way. */
  claim(entry: IdempotencyEntry): Promise<{ claimed: boolean; entry: IdempotencyEntry }>;
  /** Stores the first answer given for the key. */
  complete(userId: string, key: string, status: number, body: string): Promise<void>;
  get(userId: string, key: string): Promise<IdempotencyEntry | null>;
  /** Forgets entries past their expiry; returns how many. */
  purgeExpired(now: Date): Promise<number>;
}

export type { NotificationKind };
