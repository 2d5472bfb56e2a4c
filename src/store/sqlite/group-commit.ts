import type { Logger } from '../../logger.js';
import { busyError, isBusy, retryWhileBusy, type Db } from './sqlite.database.js';

/**
 * Group commit for the main thread's connection. Every write made during one event-loop
 * turn goes into one transaction, committed at the end of the turn: step effects (order
 * rows, charges, shipments, notifications) and, through `atCommit`, the order states the
 * engine hands over then. One lock acquisition and one WAL commit per turn instead of one
 * per statement.
 *
 * Durability: a write is durable once `flush()` resolves. A step's effect and the state
 * that records it commit together or are lost together; lost ones are redone on restart,
 * since every step is idempotent.
 *
 * If a commit fails the process state has run ahead of the database: we exit, and crash
 * recovery resumes every order from its last committed state.
 */
export class GroupCommit {
  private inTransaction = false;
  private scheduled: Promise<void> | null = null;
  private hooks: Array<() => void> = [];
  private readonly begin: () => void;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly onFatal: (err: unknown) => void = () => process.exit(1),
  ) {
    // Wait for the write lock in short pauses, not in SQLite's 1, 2, 5, 10… ms sleeps; the
    // connection's busy timeout stays the budget, and the backstop for everything else.
    const backstop = db.pragma('busy_timeout', { simple: true }) as number;
    const noWait = db.prepare('PRAGMA busy_timeout = 0');
    const restore = db.prepare(`PRAGMA busy_timeout = ${backstop}`);
    const beginImmediate = db.prepare('BEGIN IMMEDIATE');
    this.begin = () => {
      noWait.get();
      try {
        retryWhileBusy(() => beginImmediate.run(), backstop);
      } catch (err) {
        throw isBusy(err) ? busyError(err) : err;
      } finally {
        restore.get();
      }
    };
  }

  /** Runs `write` inside this turn's transaction (opening it if needed). */
  write<T>(write: () => T): T {
    this.schedule();
    if (!this.inTransaction) {
      this.begin();
      this.inTransaction = true;
    }
    return write();
  }

  /**
   * Runs `write` in a transaction of its own, committed before this returns, so the write
   * lock is held for `write` alone rather than to the end of the turn: for the writes other
   * processes on the file wait for (leases, claims, the inbox). When this turn's transaction
   * is already open, `write` joins it instead (a connection has one transaction) and this
   * resolves once that has committed. Either way: durable when it resolves.
   */
  async writeNow<T>(write: () => T): Promise<T> {
    if (this.inTransaction) {
      const result = write();
      await this.flush();
      return result;
    }
    this.begin();
    try {
      const result = write();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  /** Runs `hook` inside this turn's transaction just before it commits; resolves once it has committed. */
  atCommit(hook: () => void): Promise<void> {
    this.hooks.push(hook);
    return this.schedule();
  }

  /** Resolves when everything written so far is committed. */
  flush(): Promise<void> {
    return this.scheduled ?? Promise.resolve();
  }

  private schedule(): Promise<void> {
    this.scheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.commit());
    return this.scheduled;
  }

  private commit(): void {
    const hooks = this.hooks;
    this.hooks = [];
    try {
      // Hooks write through write(): `scheduled` is still set, so they join this commit.
      for (const hook of hooks) hook();
      if (this.inTransaction) this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      this.logger.fatal({ err }, 'committing to SQLite failed; exiting so that recovery resumes from the last commit');
      this.onFatal(err);
      throw err;
    } finally {
      this.inTransaction = false;
      this.scheduled = null;
    }
  }
}
