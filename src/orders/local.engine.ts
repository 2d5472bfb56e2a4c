import { createActor, type Actor, type InspectionEvent, type Observer, type Snapshot, type SnapshotFrom, type Subscription } from 'xstate';
import { OrderError } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import type { RetryPolicy } from '../domain/order.js';
import type { Logger } from '../logger.js';
import type { OrderInput, OrderMachine } from '../machines/order.machine.js';
import { isSettled, pipelineStatus, stateName } from '../machines/order.status.js';
import type { Fence } from '../store/fence.js';
import type { OrderStateStore, OrderStateWrite, StoredOrder } from '../store/store.ports.js';
import type { CommitInfo, NewOrder, OrderChange, OrderChangeListener, OrderEngine, OrderQuery } from './order.engine.js';
import { toOrderView, viewAsOf, type OrderView } from './order.view.js';

export interface LocalEngineOptions {
  /** The order machine with its real actors provided. */
  machine: OrderMachine;
  states: OrderStateStore;
  /** Who this engine is, as stored with every order it owns (default: generated). */
  owner?: string;
  logger: Logger;
  orderTimeoutMs: number;
  /** New orders are refused with `overloaded` while this many are live (recovery is never refused). */
  maxLive?: number;
  retry: RetryPolicy;
  /** Receives every actor's inspection events, once the states they led to are committed. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

/**
 * Orders this engine does not run but another instance does (several instances on one
 * database): events go to their owner, waits follow the store. See src/orders/cluster.member.ts.
 */
export interface RemoteOrders {
  /** CANCEL for an order owned elsewhere: resolves with the view once its owner applied it; `invalid_transition` if it could not. */
  cancel(orderId: string): Promise<OrderView>;
  /** Waits for an order run elsewhere to settle, or for `timeoutMs`. */
  waitUntilSettled(orderId: string, timeoutMs: number): Promise<{ settled: boolean; view: OrderView }>;
  /** False once this instance's lease may have run out (by its own clock): it must not write any more. */
  leaseHeld(): boolean;
  /** Asks the database (renewing): true if the lease still holds; false if it was lost (every order is then dropped). */
  confirmLease(): Promise<boolean>;
}

type OrderActor = Actor<OrderMachine>;

/** A `waitUntilSettled` caller: told the settled view, or that the order left this engine. */
interface Waiter {
  settled(view: OrderView): void;
  /** Dropped here (taken over, or the lease lost): wait on wherever it runs now, for the time left. */
  moved(): void;
}
type OrderSnapshot = SnapshotFrom<OrderMachine>;

/** An order this engine runs. */
interface LiveOrder {
  order_id: string;
  actor: OrderActor;
  subscription: Subscription | null;
  epoch: number;
  /** The last committed change's sequence number and view (null before the first commit). */
  seq: number;
  committed: OrderView | null;
  /** The latest snapshot not yet handed to a commit; its write is built once, when collected. */
  pending: OrderSnapshot | null;
  /** The write built early (when its actor is about to stop: stopped children would persist as stopped). */
  captured: OrderStateWrite | null;
  /** Dropped without a write because the lease was lost. */
  abandoned?: boolean;
}

/**
 * The order engine of this process: it owns the live order actors, commits the latest
 * state of every order that changed in a turn as one unit of work, tells subscribers after
 * the commit, and drops each actor once it is final or parked (the store, not memory, then
 * answers for it). Every state it writes is fenced by its owner id and the order's epoch; a
 * write refused as stale means another owner took the order over, and the actor is dropped.
 */
export class LocalOrderEngine implements OrderEngine {
  private readonly live = new Map<string, LiveOrder>();
  private readonly listeners = new Set<OrderChangeListener>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly owner: string;
  private draining = false;
  /** Orders with a state waiting for the next commit. */
  private readonly dirty = new Set<LiveOrder>();
  /** The commit that will take the dirty states, and the one under way (one at a time). */
  private next: Promise<void> | null = null;
  private inflight: Promise<void> | null = null;
  private readonly inspect: Observer<InspectionEvent> | undefined;
  private inspection: InspectionEvent[] = [];
  /** Each live actor's system, for the steps to find their fence by (see `fenceOf`). */
  private readonly bySystem = new WeakMap<object, LiveOrder>();
  private remote: RemoteOrders | undefined;
  /** The engine's own listeners (waking waiters, telling other instances), not counted as subscribers. */
  private readonly internalListeners = new Set<OrderChangeListener>();

  constructor(private readonly options: LocalEngineOptions) {
    this.owner = options.owner ?? newId('own');
    const target = options.inspect;
    if (target) {
      const forward = typeof target === 'function' ? target : (e: InspectionEvent) => target.next?.(e);
      // The inspector sees what the store has: events are held until the commit after them.
      this.inspect = {
        next: (event) => {
          if (this.inspection.push(event) === 1) setImmediate(() => void this.releaseInspection(forward));
        },
      };
    }
    this.subscribe((changes) => this.wakeWaiters(changes), { internal: true });
  }

  /** This engine's owner id, as stored with every order it runs. */
  get ownerId(): string {
    return this.owner;
  }

  /** Orders owned by other instances: where cancels and waits for them go. */
  attachRemote(remote: RemoteOrders): void {
    this.remote = remote;
  }

  isLive(orderId: string): boolean {
    return this.live.has(orderId);
  }

  /** Whether anyone besides the engine's own machinery listens to changes (then other instances' changes are worth fetching). */
  get hasSubscribers(): boolean {
    return this.listeners.size > this.internalListeners.size;
  }

  /**
   * The fence for a step of the actor whose system this is: this owner and the epoch the
   * actor was restored or started under. A write the store refuses under it drops the actor.
   */
  fenceOf(system: unknown): Fence | undefined {
    const entry = typeof system === 'object' && system !== null ? this.bySystem.get(system) : undefined;
    if (!entry) return undefined;
    return { owner: this.owner, epoch: entry.epoch, refused: () => this.dropFenced(entry) };
  }

  /**
   * Takes over orders claimed from the store (at start, or from an instance whose lease
   * ended) and runs them on from their snapshots. Returns how many were started.
   */
  adopt(stored: readonly StoredOrder[]): number {
    let started = 0;
    for (const order of stored) {
      const current = this.live.get(order.order_id);
      // Claimed again at a newer epoch while a stale actor of ours still ran: that one is stale now.
      if (current && current.epoch >= order.epoch) continue;
      if (current) this.dropFenced(current);
      this.restore(order).actor.start();
      started++;
    }
    return started;
  }

  /**
   * The lease was lost (this process froze or was cut off past it): every actor stops at
   * once, nothing more is written; whatever this instance still owns is claimed again later.
   */
  abandonAll(): number {
    const n = this.live.size;
    for (const entry of [...this.live.values()]) {
      this.dirty.delete(entry);
      entry.pending = null;
      entry.abandoned = true;
      this.forget(entry);
    }
    this.live.clear();
    for (const orderId of [...this.waiters.keys()]) this.movedAway(orderId);
    return n;
  }

  /** Changes committed by other instances, told to this engine's subscribers (after their commit, as local ones). */
  publishRemote(changes: readonly OrderChange[]): void {
    if (changes.length === 0) return;
    this.tell(changes, { states: changes.length, fenced: 0, duration_ms: 0, remote: true });
  }

  get accepting(): boolean {
    return !this.draining;
  }

  stats(): { live: number } {
    return { live: this.live.size };
  }

  async submit(order: NewOrder): Promise<OrderView> {
    if (this.draining) throw new OrderError('shutting_down', 'The service is shutting down; retry shortly.');
    if (this.live.size >= (this.options.maxLive ?? Infinity)) {
      throw new OrderError('overloaded', `${this.live.size} orders are in progress, the most this instance takes at once; retry in a moment.`);
    }
    const createdAt = new Date();
    const input: OrderInput = {
      ...order,
      created_at: createdAt.toISOString(),
      deadline_at: new Date(createdAt.getTime() + this.options.orderTimeoutMs).toISOString(),
      retry: this.options.retry,
    };
    const actor = createActor(this.options.machine, { id: order.order_id, input, ...this.inspectOption() });
    const entry = this.track(order.order_id, actor, { epoch: 1, seq: 0 });
    actor.start();
    return this.committedView(entry);
  }

  async get(orderId: string): Promise<OrderView | null> {
    const entry = this.live.get(orderId);
    if (entry) {
      if (entry.pending) await this.next;
      if (entry.committed) return viewAsOf(entry.committed);
    }
    const view = await this.options.states.getView(orderId);
    return view && viewAsOf(view);
  }

  async list(query: OrderQuery): Promise<OrderView[]> {
    const now = Date.now();
    return (await this.options.states.listViews(query)).map((view) => viewAsOf(view, now));
  }

  async history(orderId: string, afterSeq: number, limit: number): Promise<OrderChange[]> {
    const changes = await this.options.states.listChanges(orderId, afterSeq, limit);
    return changes.map(({ order_id, seq, at, view }) => ({ order_id, seq, at, view }));
  }

  async waitUntilSettled(orderId: string, timeoutMs: number): Promise<{ settled: boolean; view: OrderView }> {
    const entry = this.live.get(orderId);
    if (!entry) {
      const view = await this.get(orderId);
      if (!view) throw new OrderError('not_found', `order ${orderId} not found`);
      // Run by another instance: follow it there.
      if (!isSettled(view.status) && this.remote && timeoutMs > 0) return this.remote.waitUntilSettled(orderId, timeoutMs);
      return { settled: isSettled(view.status), view };
    }
    if (entry.pending) await this.next;
    if (entry.committed && isSettled(entry.committed.status)) return { settled: true, view: entry.committed };
    return new Promise((resolve) => {
      const deadline = performance.now() + timeoutMs;
      const waiters = this.waiters.get(orderId) ?? new Set<Waiter>();
      this.waiters.set(orderId, waiters);
      const leave = () => {
        clearTimeout(timer);
        waiters.delete(waiter);
        if (waiters.size === 0 && this.waiters.get(orderId) === waiters) this.waiters.delete(orderId);
      };
      const fromStore = () =>
        this.get(orderId).then(
          (view) => resolve({ settled: isSettled(view!.status), view: view! }),
          () => resolve({ settled: false, view: entry.committed! }),
        );
      const waiter: Waiter = {
        settled: (view) => {
          leave();
          resolve({ settled: isSettled(view.status), view });
        },
        moved: () => {
          leave();
          const left = deadline - performance.now();
          if (this.remote && left > 0) {
            this.remote.waitUntilSettled(orderId, left).then(resolve, () => void fromStore());
          } else {
            void fromStore();
          }
        },
      };
      const timer = setTimeout(() => {
        leave();
        void fromStore();
      }, timeoutMs);
      waiters.add(waiter);
    });
  }

  async cancel(orderId: string): Promise<OrderView> {
    const entry = this.live.get(orderId);
    if (!entry && this.remote) return this.remote.cancel(orderId);
    if (!entry || !entry.actor.getSnapshot().can({ type: 'CANCEL' })) {
      throw new OrderError('invalid_transition', `order ${orderId} can no longer be cancelled`);
    }
    entry.actor.send({ type: 'CANCEL' });
    return this.committedView(entry);
  }

  async retry(orderId: string): Promise<OrderView> {
    if (this.draining) throw new OrderError('shutting_down', 'The service is shutting down; retry shortly.');
    let entry = this.live.get(orderId);
    if (!entry) {
      const stored = await this.options.states.claimParked(orderId, this.owner);
      if (stored) {
        entry = this.restore(stored);
        entry.actor.start();
      }
    }
    if (!entry || !entry.actor.getSnapshot().can({ type: 'RETRY' })) {
      const view = await this.get(orderId);
      if (!view) throw new OrderError('not_found', `order ${orderId} not found`);
      throw new OrderError('invalid_transition', `order ${orderId} is ${view.status}; only compensation_failed orders can be retried`);
    }
    entry.actor.send({ type: 'RETRY' });
    return this.committedView(entry);
  }

  /** `internal`: part of the engine's machinery (see `hasSubscribers`). */
  subscribe(listener: OrderChangeListener, options: { internal?: boolean } = {}): () => void {
    this.listeners.add(listener);
    if (options.internal) this.internalListeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      this.internalListeners.delete(listener);
    };
  }

  async resumeUnfinished(): Promise<number> {
    const stored = await this.options.states.claimUnfinished(this.owner);
    const resumed = this.adopt(stored);
    if (resumed > 0) this.options.logger.info({ orders: resumed }, 'resumed unfinished orders');
    return resumed;
  }

  async drain(graceMs: number): Promise<{ settled: number; stopped: number }> {
    this.draining = true;
    const before = this.live.size;
    const deadline = Date.now() + graceMs;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(20, graceMs)));
    const stopped = this.live.size;
    await this.stopAll();
    return { settled: before - stopped, stopped };
  }

  /** Stops every live actor with its latest state committed. */
  private async stopAll(): Promise<void> {
    await this.next;
    for (const entry of this.live.values()) {
      if (entry.pending) entry.captured = this.buildWrite(entry, entry.pending);
      this.forget(entry);
    }
    await this.next;
    this.live.clear();
  }

  private restore(stored: StoredOrder): LiveOrder {
    const snapshot = JSON.parse(stored.snapshot) as Snapshot<unknown> & { context: OrderInput };
    // `input` is only typed as required: a restored actor takes its context from the snapshot.
    const actor = createActor(this.options.machine, { id: stored.order_id, snapshot, input: snapshot.context, ...this.inspectOption() });
    const entry = this.track(stored.order_id, actor, { epoch: stored.epoch, seq: stored.seq });
    entry.committed = stored.view;
    return entry;
  }

  private track(orderId: string, actor: OrderActor, fence: { epoch: number; seq: number }): LiveOrder {
    const entry: LiveOrder = { order_id: orderId, actor, subscription: null, ...fence, committed: null, pending: null, captured: null };
    this.live.set(orderId, entry);
    this.bySystem.set(actor.system, entry);
    entry.subscription = actor.subscribe({
      next: (snapshot) => this.queue(entry, snapshot),
      error: (err) => {
        // A bug in the machine, not a step failure: keep the last committed state so a restart resumes it.
        this.dirty.delete(entry);
        this.forget(entry);
        this.live.delete(orderId);
        this.options.logger.error({ err, order_id: orderId, stage: 'engine' }, 'order actor crashed');
      },
    });
    return entry;
  }

  /** Stops an actor without recording the stop as a state. */
  private forget(entry: LiveOrder): void {
    entry.subscription?.unsubscribe();
    entry.subscription = null;
    if (entry.actor.getSnapshot().status === 'active') entry.actor.stop();
  }

  private queue(entry: LiveOrder, snapshot: OrderSnapshot): void {
    entry.pending = snapshot;
    entry.captured = null;
    this.dirty.add(entry);
    this.next ??= this.commitNext();
  }

  /** The view of the commit that takes the order's latest state (the stored one if it was fenced off). */
  private async committedView(entry: LiveOrder): Promise<OrderView> {
    await this.next;
    if (entry.committed) return entry.committed;
    const view = await this.options.states.getView(entry.order_id);
    if (!view && entry.abandoned) {
      // Never committed, so never taken: the client may simply send it again.
      throw new OrderError('overloaded', 'This instance stalled past its lease and let its orders go; retry.');
    }
    if (!view) throw new OrderError('internal_error', `order ${entry.order_id} has no committed state`);
    return view;
  }

  /** One commit at a time, so an order's changes commit in the order they happened. */
  private async commitNext(): Promise<void> {
    if (this.inflight) await this.inflight.catch(() => undefined);
    // Not renewed lately by our own clock (an event loop stalled by load, a pause): before
    // writing, ask the database whether the lease still holds. Lost: every order is dropped.
    if (this.remote && !this.remote.leaseHeld()) await this.remote.confirmLease().catch(() => false);
    let batch: Array<{ entry: LiveOrder; write: OrderStateWrite }> = [];
    let started = 0;
    const commit = this.options.states.commitTurn(() => {
      started = performance.now();
      this.next = null;
      if (this.remote && !this.remote.leaseHeld()) {
        // Past our lease (frozen, cut off): the orders may be another's by now. Write nothing.
        const dropped = this.abandonAll();
        this.options.logger.warn({ dropped }, 'lease not renewed in time; dropped every order without writing');
        return [];
      }
      batch = [...this.dirty].map((entry) => ({ entry, write: this.collect(entry) }));
      this.dirty.clear();
      return batch.map((b) => b.write);
    });
    this.inflight = commit.then(
      ({ fenced }) => this.committed(batch, fenced, performance.now() - started),
      (err: unknown) => {
        // The store has already given up on this process (SQLite exits); never answer from it.
        this.options.logger.error({ err, orders: batch.length }, 'committing order states failed');
      },
    );
    await this.inflight;
  }

  private collect(entry: LiveOrder): OrderStateWrite {
    const write = entry.captured ?? this.buildWrite(entry, entry.pending!);
    entry.pending = null;
    entry.captured = null;
    return write;
  }

  private buildWrite(entry: LiveOrder, snapshot: OrderSnapshot): OrderStateWrite {
    const status = pipelineStatus(snapshot as { status: string; value: string });
    const state = stateName(snapshot.value as string);
    const updatedAt = new Date().toISOString();
    const { context } = snapshot;
    return {
      order_id: entry.order_id,
      user_id: context.user_id,
      status,
      state,
      seq: entry.seq + 1,
      owner: this.owner,
      epoch: entry.epoch,
      view: toOrderView(context, { status, state, updated_at: updatedAt }),
      // The immutable snapshot of that moment, not the actor's current one.
      snapshot: JSON.stringify(this.options.machine.getPersistedSnapshot(snapshot)),
      created_at: context.created_at,
      updated_at: updatedAt,
    };
  }

  private committed(batch: ReadonlyArray<{ entry: LiveOrder; write: OrderStateWrite }>, fenced: ReadonlySet<string>, durationMs: number): void {
    const changes: OrderChange[] = [];
    for (const { entry, write } of batch) {
      if (fenced.has(write.order_id)) {
        this.dropFenced(entry);
        continue;
      }
      entry.seq = write.seq;
      entry.committed = write.view;
      changes.push({ order_id: write.order_id, seq: write.seq, at: write.updated_at, view: write.view });
      // Settled, and not moved on since (a parked order restored for an admin retry is settled for a moment).
      if (isSettled(write.status) && !entry.pending && this.live.get(entry.order_id) === entry) {
        this.live.delete(entry.order_id);
        this.forget(entry);
        const failure = write.view.failure;
        this.options.logger.info({ order_id: write.order_id, stage: failure?.stage ?? write.state, status: write.status, code: failure?.code }, `order ${write.status}`);
      }
    }
    if (batch.length === 0) return;
    this.tell(changes, { states: changes.length, fenced: batch.length - changes.length, duration_ms: durationMs });
  }

  private tell(changes: readonly OrderChange[], info: CommitInfo): void {
    for (const listener of this.listeners) {
      try {
        listener(changes, info);
      } catch (err) {
        this.options.logger.error({ err }, 'an order change listener failed');
      }
    }
  }

  /** Another owner holds a newer epoch: this one must stop running the order at once. */
  private dropFenced(entry: LiveOrder): void {
    if (this.live.get(entry.order_id) !== entry && !entry.subscription) return; // dropped already
    this.dirty.delete(entry);
    entry.pending = null;
    this.forget(entry);
    if (this.live.get(entry.order_id) === entry) this.live.delete(entry.order_id);
    this.options.logger.warn({ order_id: entry.order_id, epoch: entry.epoch, code: 'stale_epoch' }, 'order taken over by another owner; dropped here');
    this.movedAway(entry.order_id);
  }

  /** Waiters of an order this engine no longer runs follow it to its new owner (or read the store). */
  private movedAway(orderId: string): void {
    const waiters = this.waiters.get(orderId);
    if (!waiters) return;
    this.waiters.delete(orderId);
    for (const waiter of [...waiters]) waiter.moved();
  }

  private wakeWaiters(changes: readonly OrderChange[]): void {
    for (const { order_id, view } of changes) {
      if (!isSettled(view.status)) continue;
      const waiters = this.waiters.get(order_id);
      if (!waiters) continue;
      this.waiters.delete(order_id);
      for (const waiter of [...waiters]) waiter.settled(view);
    }
  }

  private inspectOption(): { inspect?: Observer<InspectionEvent> } {
    return this.inspect ? { inspect: this.inspect } : {};
  }

  /** Forwards the events of this turn once the commit taking their states is done. */
  private async releaseInspection(forward: (event: InspectionEvent) => void): Promise<void> {
    const events = this.inspection;
    this.inspection = [];
    await this.next;
    for (const event of events) forward(event);
  }
}
