import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { OrderError } from '../../domain/errors.js';
import { MIGRATIONS, type Migration } from './sqlite.migrations.js';

export type Db = Database.Database;

export interface OpenOptions {
  /** How long a connection waits for another's write lock before SQLITE_BUSY. */
  busyTimeoutMs?: number;
}

/**
 * Opens the SQLite file with the settings every connection (main thread and inventory
 * workers) must share: WAL so readers never wait for the writer, and
 * synchronous=NORMAL, which in WAL mode keeps every committed transaction across a
 * process crash (it can lose the last ones on power loss; see README "Guarantees").
 */
export function openDatabase(path: string, options: OpenOptions = {}): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  db.pragma('foreign_keys = ON');
  return db;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock; the same call may succeed a moment later. */
export function isBusy(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

/** Lock contention as the order steps see it: `storage_busy`, which they retry. */
export function busyError(err: unknown): OrderError {
  return new OrderError('storage_busy', 'the database was busy; try again', { cause: err });
}

/**
 * Runs `fn`, retrying while another connection holds the write lock (SQLITE_BUSY), with
 * pauses of `pauseMs` up to `timeoutMs`. Used with `busy_timeout = 0` on the hot paths:
 * SQLite's own busy handler sleeps 1, 2, 5, 10, 15… ms between tries, which under load
 * turns sub-millisecond lock hand-offs into tail latency.
 */
export function retryWhileBusy<T>(fn: () => T, timeoutMs = 5000, pauseMs = 0.05): T {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || performance.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, pauseMs);
    }
  }
}

/** Applies the migrations this file has not seen yet; returns the versions applied. */
export function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
  const isApplied = db.prepare<[number], number>('SELECT 1 FROM schema_migrations WHERE version = ?').pluck();
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const done: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    // Checked under the write lock: order loops starting together open one new file at once,
    // and a version read as missing before the lock may be applied by the time it is taken.
    const ran = db
      .transaction(() => {
        if (isApplied.get(m.version)) return false;
        db.exec(m.sql);
        record.run(m.version, m.name, new Date().toISOString());
        return true;
      })
      .immediate();
    if (ran) done.push(m.version);
  }
  return done;
}
