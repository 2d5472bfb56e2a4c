import type { OrderRequest, PipelineStatus } from '../domain/order.js';
import type { OrderView } from './order.view.js';

/*
 * The seam between the service (HTTP, metrics, streams) and its orders (machine, actors,
 * store). Plain data only, no XState types: an engine may run in this event loop or
 * behind a thread or process boundary, and callers cannot tell.
 *
 * Every view an engine hands out is committed: a state a caller has seen survives a
 * crash.
 */

export interface NewOrder {
  order_id: string;
  user_id: string;
  request: OrderRequest;
}

export interface OrderQuery {
  user_id?: string;
  status?: PipelineStatus;
  /** Only orders created before this order id (ids sort by creation time). */
  before?: string;
  limit: number;
}

/** One committed change of an order: its new view, its change sequence number (1, 2, …) and when it was committed. */
export interface OrderChange {
  order_id: string;
  seq: number;
  /** ISO time of the commit (the view's `updated_at`). */
  at: string;
  view: OrderView;
}

/** What a commit carried, for whoever measures the engine. */
export interface CommitInfo {
  /** Order states committed (the changes) and refused as stale. */
  states: number;
  fenced: number;
  /** From the start of the commit to its being durable. */
  duration_ms: number;
  /** Committed by another instance on the same database (told here after its notification); not this engine's work. */
  remote?: boolean;
}

export type OrderChangeListener = (changes: readonly OrderChange[], commit: CommitInfo) => void;

export interface OrderEngine {
  /** False once draining has begun: no new orders, no new changes from clients. */
  readonly accepting: boolean;

  /**
   * Starts a new order under `order.order_id` and resolves with its first committed view.
   * Fails with `overloaded` past the live-order limit and `shutting_down` while draining.
   */
  submit(order: NewOrder): Promise<OrderView>;

  /** The order's latest committed view, or null. A change not yet committed is waited for, never shown. */
  get(orderId: string): Promise<OrderView | null>;

  /** Committed views, newest first. */
  list(query: OrderQuery): Promise<OrderView[]>;

  /**
   * Resolves with the view once the order is final or parked (`settled: true`), or with its
   * latest committed view when `timeoutMs` passes first. Fails with `not_found`.
   */
  waitUntilSettled(orderId: string, timeoutMs: number): Promise<{ settled: boolean; view: OrderView }>;

  /** The order's committed changes after `afterSeq` (0: from the first), oldest first, at most `limit`. */
  history(orderId: string, afterSeq: number, limit: number): Promise<OrderChange[]>;

  /** Sends CANCEL; `invalid_transition` once the order has shipped or settled. Resolves with the committed result. */
  cancel(orderId: string): Promise<OrderView>;

  /** An admin's retry of an order parked in `compensation_failed`; `invalid_transition` for any other. */
  retry(orderId: string): Promise<OrderView>;

  /**
   * Calls `listener` after each commit with the orders it changed, in commit order. Nothing
   * is told before it is durable. Returns the unsubscribe function.
   */
  subscribe(listener: OrderChangeListener): () => void;

  /** Crash recovery: takes over every unfinished order and runs it on. Returns how many. */
  resumeUnfinished(): Promise<number>;

  /**
   * Graceful shutdown: refuses new work, lets live orders settle for up to `graceMs`, then
   * stops the rest with their state committed (they resume at the next start).
   */
  drain(graceMs: number): Promise<{ settled: number; stopped: number }>;

  /** How much this engine is running now. */
  stats(): { live: number };
}
