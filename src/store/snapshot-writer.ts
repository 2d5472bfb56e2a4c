import type { GroupCommit } from './group-commit.js';
import type { SnapshotRecord, SnapshotStore } from './ports.js';

/**
 * Collects actor snapshots and writes them in the group commit of the turn they were
 * taken in (the latest snapshot of each order wins), just before it commits. `queue()`
 * resolves once that commit is done, which is when the HTTP layer may answer: a client
 * never sees a state that is not durable.
 */
export class SnapshotWriter {
  /** Per order, how to build its latest record: built (serialised) once, when written. */
  private pending = new Map<string, () => SnapshotRecord>();

  constructor(
    private readonly store: SnapshotStore,
    private readonly commits: GroupCommit,
  ) {
    commits.addBeforeCommit(() => this.write());
  }

  queue(orderId: string, build: () => SnapshotRecord): Promise<void> {
    this.pending.set(orderId, build);
    return this.commits.schedule();
  }

  /** Whether the order has a record queued for the coming commit. */
  isPending(orderId: string): boolean {
    return this.pending.has(orderId);
  }

  /** Builds every queued record now (before its actor is stopped); they are written as usual. */
  capture(): void {
    for (const [orderId, build] of this.pending) {
      const record = build();
      this.pending.set(orderId, () => record);
    }
  }

  /** Forgets the order's queued record: its last written one stays the durable state. */
  discard(orderId: string): void {
    this.pending.delete(orderId);
  }

  /** Resolves when everything queued so far is written. */
  flush(): Promise<void> {
    return this.commits.flush();
  }

  private write(): void {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()].map((build) => build());
    this.pending.clear();
    // Synchronous for SQLite: a failure throws here and fails the commit.
    void this.store.saveMany(batch);
  }
}
