import { createActor, type Actor, type InspectionEvent, type Observer, type Snapshot } from 'xstate';
import { OrderError } from '../domain/errors.js';
import type { OrderRequest, RetryPolicy } from '../domain/order.js';
import type { Logger } from '../logger.js';
import type { OrderContext, OrderInput, OrderMachine } from '../machines/order.machine.js';
import { isSettled, pipelineStatus, stateName } from '../machines/order.status.js';
import type { SnapshotRecord, SnapshotStore } from '../store/ports.js';
import type { GroupCommit } from '../store/group-commit.js';
import { SnapshotWriter } from '../store/snapshot-writer.js';

export interface OrderRuntimeOptions {
  /** The order machine with its real actors provided. */
  machine: OrderMachine;
  snapshots: SnapshotStore;
  /** The main connection's group commit, shared with the stores' writes. */
  commits: GroupCommit;
  logger: Logger;
  orderTimeoutMs: number;
  /** New orders are refused with `overloaded` while this many are live (recovery is never refused). */
  maxLive?: number;
  retry: RetryPolicy;
  /** Receives every actor's inspection events (the Stately inspector, or a test). */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

export interface NewOrder {
  order_id: string;
  user_id: string;
  request: OrderRequest;
}

type OrderActor = Actor<OrderMachine>;

/** A settled order as its waiters get it: the durable record and the live context it was built from. */
interface SettledOrder {
  record: SnapshotRecord;
  context: OrderContext;
}

/**
 * Owns the live order actors: starts them, persists their latest state at every commit (the
 * group-committing SnapshotWriter), answers whoever waits for an order to settle, and
 * drops each actor from memory once it is final or parked. The store, not this map,
 * is the source of truth for status lookups.
 */
export class OrderRuntime {
  private readonly live = new Map<string, OrderActor>();
  private draining = false;
  private readonly waiters = new Map<string, Set<(settled: SettledOrder) => void>>();
  private readonly writer: SnapshotWriter;

  constructor(private readonly options: OrderRuntimeOptions) {
    this.writer = new SnapshotWriter(options.snapshots, options.commits);
  }

  get liveCount(): number {
    return this.live.size;
  }

  /** False once shutdown has begun: no new orders, no new state changes from clients. */
  get accepting(): boolean {
    return !this.draining;
  }

  /** Starts a new order; resolves once its first snapshot is durable. */
  async submit(order: NewOrder): Promise<SnapshotRecord> {
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
    const actor = createActor(this.options.machine, { id: order.order_id, input, inspect: this.options.inspect });
    this.track(order.order_id, actor);
    actor.start();
    await this.writer.flush();
    return this.latest(order.order_id);
  }

  /**
   * The order's latest durable record, or null. A state change not yet committed is waited
   * for (it commits at the end of this turn), never shown: a client that saw `paying` and
   * then saw the process die must find the order at least at `paying` after the restart.
   */
  async get(orderId: string): Promise<SnapshotRecord | null> {
    if (this.writer.isPending(orderId)) await this.writer.flush();
    return this.options.snapshots.get(orderId);
  }

  /**
   * Resolves with the settled record, or with the current one when `timeoutMs` passes first.
   * `context` is the settled order's context when it was live, sparing a parse of the record.
   */
  async waitForSettled(orderId: string, timeoutMs: number): Promise<{ settled: boolean; record: SnapshotRecord; context?: OrderContext }> {
    if (!this.live.has(orderId)) {
      const record = await this.get(orderId);
      if (!record) throw new OrderError('not_found', `order ${orderId} not found`);
      return { settled: isSettled(record.status), record };
    }
    return new Promise((resolve) => {
      const waiters = this.waiters.get(orderId) ?? new Set();
      this.waiters.set(orderId, waiters);
      const onSettled = ({ record, context }: SettledOrder) => {
        clearTimeout(timer);
        resolve({ settled: true, record, context });
      };
      const timer = setTimeout(() => {
        waiters.delete(onSettled);
        void this.get(orderId).then((record) => resolve({ settled: false, record: record! }));
      }, timeoutMs);
      waiters.add(onSettled);
    });
  }

  /** Sends CANCEL; fails with `invalid_transition` once the order has shipped or settled. */
  async cancel(orderId: string): Promise<SnapshotRecord> {
    const actor = this.live.get(orderId);
    if (!actor || !actor.getSnapshot().can({ type: 'CANCEL' })) {
      throw new OrderError('invalid_transition', `order ${orderId} can no longer be cancelled`);
    }
    actor.send({ type: 'CANCEL' });
    await this.writer.flush();
    return this.latest(orderId);
  }

  /**
   * Crash recovery: restores every order whose snapshot is neither final nor parked and
   * lets it run on. Steps that were in flight run again (they are idempotent); waits and
   * deadlines re-arm from the due times in context.
   */
  async resumeUnfinished(): Promise<number> {
    const records = await this.options.snapshots.listUnfinished();
    for (const record of records) {
      if (this.live.has(record.order_id)) continue;
      this.restore(record).start();
    }
    if (records.length > 0) this.options.logger.info({ orders: records.length }, 'resumed unfinished orders');
    return records.length;
  }

  /** An admin's retry of an order parked in compensation_failed: compensation resumes where it failed. */
  async retry(orderId: string): Promise<SnapshotRecord> {
    if (this.draining) throw new OrderError('shutting_down', 'The service is shutting down; retry shortly.');
    const record = await this.get(orderId);
    if (!record) throw new OrderError('not_found', `order ${orderId} not found`);
    const parked = this.live.get(orderId);
    if (record.status !== 'compensation_failed' || (parked && !parked.getSnapshot().can({ type: 'RETRY' }))) {
      throw new OrderError('invalid_transition', `order ${orderId} is ${record.status}; only compensation_failed orders can be retried`);
    }
    const actor = parked ?? this.restore(record);
    if (!parked) actor.start();
    actor.send({ type: 'RETRY' });
    await this.writer.flush();
    return this.latest(orderId);
  }

  /**
   * Graceful shutdown: refuse new work, give live orders up to `graceMs` to settle, then
   * stop the rest. Their snapshots are durable; the next start resumes them.
   */
  async drain(graceMs: number): Promise<{ settled: number; stopped: number }> {
    this.draining = true;
    const before = this.live.size;
    const deadline = Date.now() + graceMs;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(20, graceMs)));
    const stopped = this.live.size;
    await this.stopAll();
    return { settled: before - stopped, stopped };
  }

  /** Waits until every state change so far is durable. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Stops every live actor (their state is already persisted) and writes what is pending. */
  async stopAll(): Promise<void> {
    await this.writer.flush();
    // Snapshots queued since are built now: a stopped actor's children would persist as stopped.
    this.writer.capture();
    for (const actor of this.live.values()) actor.stop();
    this.live.clear();
    await this.writer.flush();
  }

  private restore(record: SnapshotRecord): OrderActor {
    const snapshot = JSON.parse(record.snapshot) as Snapshot<unknown> & { context: OrderInput };
    // `input` is only typed as required: a restored actor takes its context from the snapshot.
    const actor = createActor(this.options.machine, { id: record.order_id, snapshot, input: snapshot.context, inspect: this.options.inspect });
    this.track(record.order_id, actor);
    return actor;
  }

  private track(orderId: string, actor: OrderActor): void {
    this.live.set(orderId, actor);
    const { machine, logger } = this.options;
    actor.subscribe({
      next: (snapshot) => {
        const status = pipelineStatus(snapshot as { status: string; value: string });
        // Built once, when written (or when a waiter needs it): several transitions in one
        // turn cost one persisted snapshot and one JSON.stringify. The machine persists this
        // immutable snapshot (not the actor's current one), so it never reads "stopped".
        let record: SnapshotRecord | undefined;
        const build = (): SnapshotRecord =>
          (record ??= {
            order_id: orderId,
            user_id: snapshot.context.user_id,
            status,
            state: stateName(snapshot.value as string),
            snapshot: JSON.stringify(machine.getPersistedSnapshot(snapshot)),
            created_at: snapshot.context.created_at,
            updated_at: new Date().toISOString(),
          });
        const written = this.writer.queue(orderId, build);
        if (!isSettled(status)) return;
        // Settle once the settled state is durable, unless the order moved on meanwhile
        // (a parked order restored for an admin retry is settled for a moment).
        const settle = () => {
          if (pipelineStatus(actor.getSnapshot() as { status: string; value: string }) !== status) return;
          if (this.live.get(orderId) !== actor) return;
          this.live.delete(orderId);
          const settled = build();
          if (actor.getSnapshot().status === 'active') actor.stop();
          const failure = snapshot.context.failure;
          logger.info({ order_id: orderId, stage: failure?.stage ?? settled.state, status, code: failure?.code }, `order ${status}`);
          this.settle(orderId, { record: settled, context: snapshot.context });
        };
        written.then(settle, settle);
      },
      error: (err) => {
        // A bug in the machine, not a step failure: keep the last durable snapshot so a restart resumes it.
        this.live.delete(orderId);
        this.writer.discard(orderId);
        logger.error({ err, order_id: orderId, stage: 'runtime' }, 'order actor crashed');
      },
    });
  }

  private settle(orderId: string, settled: SettledOrder): void {
    const waiters = this.waiters.get(orderId);
    this.waiters.delete(orderId);
    for (const resolve of waiters ?? []) resolve(settled);
  }

  private async latest(orderId: string): Promise<SnapshotRecord> {
    const record = await this.get(orderId);
    if (!record) throw new OrderError('internal_error', `order ${orderId} has no snapshot`);
    return record;
  }
}
