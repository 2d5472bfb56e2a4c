import { OrderError } from '../domain/errors.js';
import type { Logger } from '../logger.js';
import { isSettled } from '../machines/order.status.js';
import type { ClusterStore } from '../store/store.ports.js';
import type { LocalOrderEngine, RemoteOrders } from './local.engine.js';
import type { OrderChange } from './order.engine.js';
import type { OrderView } from './order.view.js';

export interface ClusterMemberOptions {
  engine: LocalOrderEngine;
  cluster: ClusterStore;
  logger: Logger;
  leaseMs: number;
  /** How long a cancel sent to another instance's order waits for its owner's answer. */
  syncWaitMs: number;
  /** Orders claimed per statement by the reaper. */
  claimBatch?: number;
  /** The inbox and change backstops' period (default 1 s). */
  pollMs?: number;
}

/**
 * This instance as one of several on one database (PostgreSQL, or one SQLite file shared by
 * a service's order loops, where the `ClusterBus` stands in for NOTIFY):
 * - **Lease.** Registered at start, renewed every `leaseMs / 3` by the database's clock. A
 *   renewal that finds the lease already over (the process froze or was cut off past it)
 *   stops every actor at once and claims back only what nobody took meanwhile. Before
 *   each commit the engine also checks that the last renewal sent is younger than the
 *   lease (monotonic clock): belt and braces, since the epoch fence is what makes a
 *   stale write harmless.
 * - **Reaper.** Every `leaseMs / 3` (with jitter), and at once when another instance
 *   hands over, claims orders whose owner holds no live lease, in batches, with SKIP
 *   LOCKED, and runs them on from their snapshots.
 * - **Inbox.** A cancel for an order owned elsewhere is stored, its owner woken (NOTIFY),
 *   and the answer its owner records is what this instance replies; owners also poll.
 * - **Changes.** After each commit the other instances are told which orders changed;
 *   they fetch those views for their own subscribers and waiters.
 */
export class ClusterMember implements RemoteOrders {
  private readonly engine: LocalOrderEngine;
  private readonly cluster: ClusterStore;
  private readonly logger: Logger;
  private readonly me: string;
  private timers: NodeJS.Timeout[] = [];
  private listener: { close(): Promise<void> } | null = null;
  private stopped = false;
  /** When the last renewal that succeeded was sent (monotonic ms). */
  private renewedAt = -Infinity;
  private renewing: Promise<boolean> | null = null;
  /** One reaper round at a time; a wake-up during one runs another after it. */
  private readonly reap = coalesced(() => this.reapOnce(), () => this.stopped);
  /** The same for applying the inbox. */
  private readonly applyInbox = coalesced(() => this.applyInboxOnce(), () => this.stopped);
  /** Orders someone here waits on while another instance runs them: woken by their changes. */
  private readonly watched = new Map<string, Set<() => void>>();
  private others = 0;
  private unsubscribe: (() => void) | null = null;
  private outgoing: Array<{ order_id: string; seq: number }> = [];

  constructor(private readonly options: ClusterMemberOptions) {
    this.engine = options.engine;
    this.cluster = options.cluster;
    this.logger = options.logger;
    this.me = options.engine.ownerId;
  }

  /** Whether this instance may still write: its last renewal was sent less than a lease ago. */
  leaseHeld(): boolean {
    return performance.now() - this.renewedAt < this.options.leaseMs;
  }

  /** Registers, listens, and starts the lease, reaper and inbox loops. Call before resuming orders. */
  async start(): Promise<void> {
    const sent = performance.now();
    await this.cluster.register(this.me, this.options.leaseMs);
    this.renewedAt = sent;
    this.others = await this.cluster.othersLive(this.me);
    this.listener = await this.cluster.listen((channel, payload) => this.onNotify(channel, payload));
    // So that the others start telling this one about their changes now, not at their next reaper round.
    await this.cluster.announce(this.me);
    this.unsubscribe = this.engine.subscribe(
      (changes, info) => {
        if (!info.remote && this.others > 0) this.announce(changes);
      },
      { internal: true },
    );
    const third = Math.max(50, Math.floor(this.options.leaseMs / 3));
    this.every(third, async () => void (await this.renew()));
    // Reapers of several instances spread out rather than fire together.
    this.every(third, () => this.reap(), 0.25);
    this.every(this.options.pollMs ?? 1000, () => this.applyInbox());
    this.every(3_600_000, async () => {
      const gone = await this.cluster.purge();
      if (gone.events + gone.instances > 0) this.logger.info(gone, 'forgot answered events and instances gone for a day');
    });
  }

  /** Takes this instance out: no more renewals, claims or inbox work. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.unsubscribe?.();
    await this.reap.idle();
    await this.applyInbox.idle();
    await this.listener?.close();
    this.listener = null;
  }

  /** Shutdown, after the engine has committed and stopped its orders: the others may claim them now. */
  async handOver(): Promise<void> {
    await this.stop();
    await this.cluster.handOver(this.me);
    this.logger.info({ instance: this.me }, 'handed unfinished orders over to the other instances');
  }

  // --- RemoteOrders: what the engine asks about orders it does not run ------------------

  async cancel(orderId: string): Promise<OrderView> {
    const id = await this.cluster.postEvent(orderId, 'cancel');
    void this.applyInbox(); // this instance may be the owner (an order it is just taking over)
    const deadline = performance.now() + this.options.syncWaitMs;
    for (let pause = 10; ; pause = Math.min(pause * 2, 100)) {
      const event = await this.cluster.getEvent(id);
      if (event?.applied) {
        if (event.status === 202) return JSON.parse(event.body!) as OrderView;
        throw new OrderError('invalid_transition', event.body ?? `order ${orderId} can no longer be cancelled`);
      }
      if (performance.now() > deadline) break;
      await sleep(pause);
    }
    // Stored, and its owner (or whoever takes the order over) will apply it: answer with what is committed now.
    const view = await this.engine.get(orderId);
    if (!view) throw new OrderError('not_found', `order ${orderId} not found`);
    return view;
  }

  async waitUntilSettled(orderId: string, timeoutMs: number): Promise<{ settled: boolean; view: OrderView }> {
    const deadline = performance.now() + timeoutMs;
    let wake: (() => void) | null = null;
    const wakers = this.watched.get(orderId) ?? new Set<() => void>();
    this.watched.set(orderId, wakers);
    const onChange = () => wake?.();
    wakers.add(onChange);
    try {
      for (;;) {
        const view = await this.engine.get(orderId);
        if (!view) throw new OrderError('not_found', `order ${orderId} not found`);
        if (isSettled(view.status)) return { settled: true, view };
        const left = deadline - performance.now();
        if (left <= 0) return { settled: false, view };
        // Woken by the change notification; polled as the backstop.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 250));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    } finally {
      wakers.delete(onChange);
      if (wakers.size === 0) this.watched.delete(orderId);
    }
  }

  // --- the loops ---------------------------------------------------------------------

  private every(ms: number, fn: () => Promise<void>, jitter = 0): void {
    const schedule = () => {
      if (this.stopped) return;
      const delay = ms * (1 + (Math.random() * 2 - 1) * jitter);
      const t = setTimeout(() => {
        this.timers = this.timers.filter((x) => x !== t);
        void fn()
          .catch((err: unknown) => this.logger.warn({ err }, 'cluster loop failed; trying again'))
          .finally(schedule);
      }, delay);
      t.unref(); // the server keeps the process alive, not these loops
      this.timers.push(t);
    };
    schedule();
  }

  confirmLease(): Promise<boolean> {
    return this.renew();
  }

  /** One renewal at a time (the timer's, or a commit's that found the last one too old). */
  private renew(): Promise<boolean> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = null));
    return this.renewing;
  }

  private async renewOnce(): Promise<boolean> {
    if (this.stopped) return this.leaseHeld();
    const sent = performance.now();
    if (await this.cluster.renew(this.me, this.options.leaseMs)) {
      this.renewedAt = sent;
      return true;
    }
    // The lease ran out before this renewal: others may have taken our orders (and bumped
    // their epochs). Stop them all here, start a new lease, and claim back what is still ours.
    const dropped = this.engine.abandonAll();
    this.logger.warn({ instance: this.me, dropped }, 'lease lost (renewed too late); dropped every order and rejoining');
    const again = performance.now();
    await this.cluster.register(this.me, this.options.leaseMs);
    this.renewedAt = again;
    await this.engine.resumeUnfinished();
    return false;
  }

  private async reapOnce(): Promise<void> {
    if (this.stopped || !this.engine.accepting || !this.leaseHeld()) return;
    this.others = await this.cluster.othersLive(this.me);
    const batch = this.options.claimBatch ?? 200;
    const started = performance.now();
    const from = new Map<string, number>();
    let total = 0;
    for (;;) {
      const claimed = await this.cluster.claimOrphaned(this.me, batch);
      // Claimed just as this instance began to shut down: not started here; the handover passes them on.
      if (this.stopped || !this.engine.accepting) break;
      total += this.engine.adopt(claimed);
      for (const c of claimed) from.set(c.prev_owner, (from.get(c.prev_owner) ?? 0) + 1);
      if (claimed.length < batch) break;
    }
    if (total > 0) {
      this.logger.info(
        { instance: this.me, orders: total, from: Object.fromEntries(from), claim_ms: Math.round(performance.now() - started) },
        'took over orders from instances whose lease ended',
      );
      void this.applyInbox(); // events that waited for these orders' new owner
    }
  }

  private async applyInboxOnce(): Promise<void> {
    if (this.stopped) return;
    for (const event of await this.cluster.pendingEvents(this.me)) {
      if (event.kind !== 'cancel') continue;
      if (this.engine.isLive(event.order_id)) {
        try {
          const view = await this.engine.cancel(event.order_id);
          await this.cluster.settleEvent(event.id, 202, JSON.stringify(view));
        } catch (err) {
          if (err instanceof OrderError && err.code === 'invalid_transition') await this.cluster.settleEvent(event.id, 409, err.message);
          else throw err;
        }
        continue;
      }
      const view = await this.engine.get(event.order_id);
      // Ours but not running yet (being taken over this moment): next round.
      if (view && !isSettled(view.status)) continue;
      await this.cluster.settleEvent(event.id, 409, `order ${event.order_id} is ${view?.status ?? 'gone'} and can no longer be cancelled`);
    }
  }

  // --- notifications -----------------------------------------------------------------

  private onNotify(channel: 'inbox' | 'changes' | 'handover', payload: string): void {
    if (this.stopped) return;
    if (channel === 'inbox') {
      if (payload === this.me) void this.applyInbox().catch((err: unknown) => this.logger.warn({ err }, 'applying the inbox failed'));
    } else if (channel === 'handover') {
      if (payload !== this.me) void this.reap().catch((err: unknown) => this.logger.warn({ err }, 'claiming handed-over orders failed'));
    } else {
      void this.onChanges(payload).catch((err: unknown) => this.logger.warn({ err }, 'following another instance’s changes failed'));
    }
  }

  /** Batches this turn's committed changes into one notification (or a few, chunked). */
  private announce(changes: readonly OrderChange[]): void {
    if (this.outgoing.length === 0) {
      setImmediate(() => {
        const batch = this.outgoing;
        this.outgoing = [];
        void this.cluster.notifyChanges(this.me, batch).catch((err: unknown) => this.logger.warn({ err }, 'notifying changes failed'));
      });
    }
    for (const c of changes) this.outgoing.push({ order_id: c.order_id, seq: c.seq });
  }

  private async onChanges(payload: string): Promise<void> {
    const [from, ...items] = payload.split(' ');
    if (from === this.me) return;
    const all = this.engine.hasSubscribers;
    const pairs: Array<{ order_id: string; seq: number }> = [];
    for (const item of items) {
      const at = item.lastIndexOf(':');
      const order_id = item.slice(0, at);
      if (!all && !this.watched.has(order_id)) continue;
      pairs.push({ order_id, seq: Number(item.slice(at + 1)) });
    }
    if (pairs.length === 0) return;
    if (all) {
      const changes = await this.cluster.changesAt(pairs);
      this.engine.publishRemote(changes.map(({ order_id, seq, at, view }) => ({ order_id, seq, at, view })));
    }
    for (const { order_id } of pairs) for (const wake of this.watched.get(order_id) ?? []) wake();
  }
}

/**
 * `once` run one call at a time: a call while it runs asks for one more run after it (and gets
 * the current run's promise), so wake-ups that arrive together cost one round each, never a pile.
 */
function coalesced(once: () => Promise<void>, stopped: () => boolean): (() => Promise<void>) & { idle(): Promise<void> } {
  let running: Promise<void> | null = null;
  let again = false;
  const run = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await once();
      } while (again && !stopped());
    })().finally(() => (running = null));
    return running;
  };
  return Object.assign(run, { idle: async () => void (await running?.catch(() => undefined)) });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
