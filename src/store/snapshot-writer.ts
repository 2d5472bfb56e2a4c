import type { Logger } from '../logger.js';
import type { SnapshotRecord, SnapshotStore } from './ports.js';

/**
 * Group commit for actor snapshots. Every state change is queued here and all changes
 * queued during one event-loop turn are written in a single transaction (the latest
 * snapshot of each order wins). `queue()` resolves once that transaction committed, which
 * is when the HTTP layer may answer: a client never sees a state that is not durable.
 */
export class SnapshotWriter {
  private pending = new Map<string, SnapshotRecord>();
  private scheduled: Promise<void> | null = null;

  constructor(
    private readonly store: SnapshotStore,
    private readonly logger: Logger,
  ) {}

  queue(record: SnapshotRecord): Promise<void> {
    this.pending.set(record.order_id, record);
    return this.schedule();
  }

  /** The newest record queued but not yet written, if any. */
  peek(orderId: string): SnapshotRecord | undefined {
    return this.pending.get(orderId);
  }

  /** Resolves when everything queued so far is written. */
  flush(): Promise<void> {
    return this.pending.size > 0 ? this.schedule() : (this.scheduled ?? Promise.resolve());
  }

  private schedule(): Promise<void> {
    this.scheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.write());
    return this.scheduled;
  }

  private async write(): Promise<void> {
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.scheduled = null;
    try {
      await this.store.saveMany(batch);
    } catch (err) {
      // Keep the batch (unless a newer snapshot arrived meanwhile) and let the caller know.
      for (const r of batch) if (!this.pending.has(r.order_id)) this.pending.set(r.order_id, r);
      this.logger.error({ err, records: batch.length }, 'persisting order snapshots failed; retrying');
      setTimeout(() => void this.schedule().catch(() => undefined), 100).unref();
      throw err;
    }
  }
}
