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
import type { OrderQuery } from '../orders/order.engine.js';
import type { OrderView } from '../orders/order.view.js';

/*
 * The storage the order logic needs, shaped by that logic rather than by a database.
 * `sqlite/` implements every port; another store implements the same ports and passes the
 * same contract tests (test/store/). Failures a step should see are `OrderError`s with a
 * code (`storage_busy` when the store is contended), never a driver's error.
 */

// --- order states: what the engine commits and reads --------------------------------

/**
 * One committed state of an order. `owner` and `epoch` fence it: only the owner holding the
 * current epoch may write the order's state, and every change of owner bumps the epoch.
 */
export interface OrderStateWrite {
  order_id: string;
  user_id: string;
  status: PipelineStatus;
  /** The step the order is at, e.g. `paying`. */
  state: string;
  /** The change sequence number: 1 for the first state, one more for each commit. */
  seq: number;
  owner: string;
  epoch: number;
  view: OrderView;
  /** The machine's persisted snapshot as JSON; opaque to the store. */
  snapshot: string;
  created_at: string;
  updated_at: string;
}

/** A stored order as the engine restores it. */
export interface StoredOrder {
  order_id: string;
  user_id: string;
  status: PipelineStatus;
  seq: number;
  owner: string;
  epoch: number;
  view: OrderView;
  snapshot: string;
}

/** One committed change of an order, as its history keeps it. */
export interface OrderChangeRecord {
  order_id: string;
  seq: number;
  /** When it was committed (the state's `updated_at`). */
  at: string;
  view: OrderView;
}

export interface CommitResult {
  /** Orders whose state was refused because another owner holds a newer epoch (`stale_epoch`). */
  fenced: ReadonlySet<string>;
}

export interface OrderStateStore {
  /**
   * One unit of work, committed at the end of the current event-loop turn: the states
   * `collect()` returns then, and every domain write made through this store's connection
   * since the previous unit, in one transaction. Each state is written only if its
   * `(owner, epoch)` still holds the order; the others are refused and reported. Resolves
   * once the unit is durable; rejects if it could not be committed.
   */
  commitTurn(collect: () => readonly OrderStateWrite[]): Promise<CommitResult>;
  getView(orderId: string): Promise<OrderView | null>;
  listViews(query: OrderQuery): Promise<OrderView[]>;
  /** The order's committed changes with `seq` above `afterSeq`, oldest first, at most `limit`. */
  listChanges(orderId: string, afterSeq: number, limit: number): Promise<OrderChangeRecord[]>;
  /**
   * Takes over every unfinished (processing) order for `owner`, bumping each one's epoch:
   * from now on only `owner` may write them.
   */
  claimUnfinished(owner: string): Promise<StoredOrder[]>;
  /** Takes over the order for `owner` if it is parked in `compensation_failed`; null otherwise. */
  claimParked(orderId: string, owner: string): Promise<StoredOrder | null>;
  /** Orders stored before views were (up to `limit`): their snapshots, to compute views from. */
  listMissingViews(limit: number): Promise<Array<Pick<StoredOrder, 'order_id' | 'status' | 'snapshot'> & { state: string; updated_at: string }>>;
  saveViews(views: readonly OrderView[]): Promise<void>;
}

// --- several instances (or order loops) on one database ------------------------------

/** An order claimed from another owner, with the owner it was taken from. */
export interface ClaimedOrder extends StoredOrder {
  prev_owner: string;
}

/** An event stored for an order's owner (see `ClusterStore.postEvent`). */
export interface InboxEvent {
  id: number;
  order_id: string;
  kind: 'cancel';
}

/**
 * What instances sharing one database need from it: leases by the database's clock,
 * claims of a dead owner's orders, an inbox of events for an order's owner, and
 * notifications that wake (never replace) polling.
 */
export interface ClusterStore {
  /** Registers (or re-registers) the instance with a lease of `leaseMs` from the database's now. */
  register(instanceId: string, leaseMs: number): Promise<void>;
  /** Extends the lease; false if it had already run out (then the instance's orders may be someone else's). */
  renew(instanceId: string, leaseMs: number): Promise<boolean>;
  /** Ends the lease at once (shutdown), so the others may claim its orders now, and wakes them. */
  handOver(instanceId: string): Promise<void>;
  /** Claims up to `limit` unfinished orders whose owner holds no live lease, bumping each epoch. Nothing if `instanceId`'s own lease has run out. */
  claimOrphaned(instanceId: string, limit: number): Promise<ClaimedOrder[]>;
  /** Wakes the other instances (they count the live instances again and claim what is orphaned). */
  announce(instanceId: string): Promise<void>;
  /** How many other instances hold a live lease. */
  othersLive(instanceId: string): Promise<number>;
  /** Stores an event for the order's owner, then wakes it; returns the event's id. */
  postEvent(orderId: string, kind: InboxEvent['kind']): Promise<number>;
  /** Unapplied events for orders `owner` owns, oldest first. */
  pendingEvents(owner: string): Promise<InboxEvent[]>;
  /** Records an event as applied, with the answer the receiving instance gives (once). */
  settleEvent(id: number, status: number, body: string): Promise<void>;
  getEvent(id: number): Promise<{ applied: boolean; status: number | null; body: string | null } | null>;
  /** Tells the other instances which orders changed (`order:seq` pairs), in notifications of at most 8000 bytes. */
  notifyChanges(instanceId: string, changes: ReadonlyArray<{ order_id: string; seq: number }>): Promise<void>;
  /** The committed changes at these (order, seq) pairs. */
  changesAt(pairs: ReadonlyArray<{ order_id: string; seq: number }>): Promise<OrderChangeRecord[]>;
  /** Forgets events answered and instances gone for more than a day; returns how many of each. */
  purge(): Promise<{ events: number; instances: number }>;
  /** Listens on a connection of its own (reconnecting); the handler gets each notification's channel and payload. */
  listen(onNotify: (channel: ClusterChannel, payload: string) => void): Promise<{ close(): Promise<void> }>;
}

/** A notification's channel: an event for an owner, committed changes, a handover or a new member. */
export type ClusterChannel = 'inbox' | 'changes' | 'handover';

/**
 * How members sharing one SQLite file wake each other, where PostgreSQL has LISTEN/NOTIFY:
 * the order loops' primary process relays what one loop publishes to the others. Best
 * effort, like NOTIFY: the durable rows and the pollers are the truth, a message only wakes.
 */
export interface ClusterBus {
  /** Sends to every other member (never back to this one). */
  publish(channel: ClusterChannel, payload: string): void;
  /** Receives what the others publish; returns the unsubscribe function. */
  subscribe(handler: (channel: ClusterChannel, payload: string) => void): () => void;
}

// --- the catalog ---------------------------------------------------------------------

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
  /** Creates or updates a product; setting `available` adds (or removes) stock, keeping the invariant. Durable when it resolves. */
  upsertProduct(input: ProductInput): Promise<{ product: Product; created: boolean }>;
}

// --- the steps' effects, each idempotent per order ------------------------------------

export interface OrderRecordStore {
  /** Stores the placed order once; a second call returns the stored one. Fails with `order_cancelled` if closed first. */
  place(order: Order, shipping: ShippingAddress): Promise<Order>;
  /** Closes the order as cancelled or failed, storing it from the request if it was never placed. */
  close(orderId: string, status: 'cancelled' | 'failed', fallback: { user_id: string; request: OrderRequest; created_at: string }): Promise<void>;
}

/**
 * Stock as the order steps see it. Reserve and release run on the worker pool (contended
 * between orders). Selling a shipped order's reservation runs in the main thread's unit of
 * work, so shipment, sold stock, the order's `shipped` status and the state recording them
 * commit together.
 */
export interface Inventory {
  /** All lines or none; fails with `insufficient_stock` / `unknown_sku`, or `reservation_released` after a release. */
  reserve(orderId: string, items: readonly OrderItemRequest[]): Promise<Reservation>;
  /** Releases the order's reservation, or leaves a tombstone so a late reserve does nothing. */
  release(orderId: string): Promise<Reservation | null>;
  /** Turns the reservation into sold stock and marks the order shipped; idempotent. */
  sell(orderId: string): Promise<Reservation>;
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

export interface ShipmentStore {
  find(orderId: string): Promise<Shipment | null>;
  insert(shipment: Shipment & { idempotency_key: string }): Promise<Shipment>;
}

export interface NotificationStore {
  /** Inserts once per idempotency key; returns the stored notification. */
  insert(n: Notification & { idempotency_key: string; payload: unknown }): Promise<Notification>;
  listForOrder(orderId: string): Promise<Notification[]>;
}

// --- the HTTP layer's own records ----------------------------------------------------

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
  /** Stores the first answer given for the key; durable when it resolves. */
  complete(userId: string, key: string, status: number, body: string): Promise<void>;
  get(userId: string, key: string): Promise<IdempotencyEntry | null>;
  /** Forgets entries past their expiry; returns how many. */
  purgeExpired(now: Date): Promise<number>;
}

/** Who did what to whom, from where, and how it ended: admin actions, newest first. */
export interface AuditEntry {
  /** `aud_` + a ULID: sorts by the time it was recorded, and is the list cursor. */
  id: string;
  /** When the answer was known (ISO, server time). */
  at: string;
  /** The acting user (the token's `sub`) and role. */
  actor: string;
  role: string;
  /** The token's `iss`, when it has one. */
  issuer: string | null;
  /** e.g. `inventory.set`, `order.retry`, `order.place_for_user`. */
  action: string;
  /** What it was done to: a SKU, an order id, the user ordered for. */
  target: string;
  /** The client address, when known. */
  address: string | null;
  /** The request's id (`X-Request-Id`), to find its line in the request log. */
  request_id: string | null;
  /** The HTTP status answered, and the problem code when it was refused or failed. */
  status: number;
  code: string | null;
  /** The request fields that matter (never a token or a card). */
  details: Record<string, unknown> | null;
}

export interface AuditQuery {
  /** Entries older than this id (from a previous page). */
  before?: string;
  limit: number;
  action?: string;
  actor?: string;
}

export interface AuditStore {
  record(entry: AuditEntry): Promise<void>;
  /** Newest first (by id, so entries recorded in the same millisecond keep one order). */
  list(query: AuditQuery): Promise<AuditEntry[]>;
}

// --- everything one store provides ---------------------------------------------------

export interface Stores {
  states: OrderStateStore;
  catalog: CatalogStore;
  orders: OrderRecordStore;
  payments: PaymentLedger;
  shipments: ShipmentStore;
  notifications: NotificationStore;
  idempotency: IdempotencyStore;
  audit: AuditStore;
  /** The main thread's part of `Inventory`: selling shipped stock. */
  stock: Pick<Inventory, 'sell'>;
  /** Resolves once every write made so far is durable. */
  flush(): Promise<void>;
}

export type { NotificationKind };
