import pg from 'pg';
import { OrderError } from '../../domain/errors.js';
import { MIGRATIONS, type Migration } from './postgres.migrations.js';
import { plans } from './postgres.plans.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Either a pool (each statement on its own, autocommit) or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

export interface PostgresOptions {
  /** `postgres://user@host:port/database`; query parameters as libpq's (e.g. `options`). */
  url: string;
  /** Connections in this pool. */
  max: number;
  /** How long a statement waits for another transaction's row lock before `storage_busy`. */
  lockTimeoutMs?: number;
  applicationName?: string;
  /** Told about errors on idle connections (a restarted server, a cut connection). */
  onIdleError?: (err: Error) => void;
}

const TIMESTAMPTZ = 1184;
const INT8 = 20;
const parseTimestamp = pg.types.getTypeParser(TIMESTAMPTZ);

/**
 * Per pool, not global (`pg.types` would change every pg user in the process): times come
 * back as the ISO strings the ports use, and bigints as numbers (amounts, counts and
 * sequence numbers stay far below 2^53).
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === TIMESTAMPTZ) return (value: string) => (parseTimestamp(value) as Date).toISOString();
    if (oid === INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

export function openPool(options: PostgresOptions): Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    types,
    application_name: options.applicationName ?? 'ordersaga',
    lock_timeout: options.lockTimeoutMs ?? 5000,
    // A transaction left open by a bug must not hold row locks forever.
    idle_in_transaction_session_timeout: 60_000,
    // Waiting for a free connection is bounded too: an exhausted pool is `storage_busy`.
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  });
  // Without a listener an idle connection's error (server restart) would crash the process.
  pool.on('error', (err) => options.onIdleError?.(err));
  return pool;
}

/**
 * SQLSTATEs after which the same call may succeed a moment later: serialization failure,
 * deadlock, lock timeout, query cancelled, too many connections / out of resources, the
 * server shutting down or the connection lost. The order steps see them as `storage_busy`.
 */
export function isBusy(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') return true;
  if (code.startsWith('53') || code.startsWith('08') || code.startsWith('57P')) return true;
  // The driver's own: refused or cut connections, and a pool with no free connection in time.
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT') return true;
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect/i.test(message);
}

/** Lock contention as the order steps see it: `storage_busy`, which they retry. */
export function busyError(err: unknown): OrderError {
  return new OrderError('storage_busy', 'the database was busy; try again', { cause: err });
}

/** A driver error as the ports promise it: contention becomes `storage_busy`, the rest passes through. */
export function mapError(err: unknown): unknown {
  return isBusy(err) ? busyError(err) : err;
}

/** Runs `fn` in one transaction on one connection of the pool; rolls back if it throws. */
export async function inTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw mapError(err);
  }
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw mapError(err);
  } finally {
    // A connection that could not even roll back is thrown away, not handed to the next caller.
    client.release(broken);
  }
}

/** One statement on its own (autocommit: it is its own transaction), with errors mapped. */
export async function run<R extends pg.QueryResultRow>(db: Queryable, plan: { name: string; text: string }, values: unknown[]): Promise<R[]> {
  try {
    // An empty name is an unnamed statement (parsed and planned each time).
    return (await db.query<R>(plan.name ? { name: plan.name, text: plan.text, values } : { text: plan.text, values })).rows;
  } catch (err) {
    throw mapError(err);
  }
}

/**
 * Applies the migrations this database (or schema: the first of `search_path`) has not
 * seen yet, all in one transaction under a transaction-level advisory lock, so that several
 * instances starting at once apply each migration exactly once: the first takes the lock
 * and migrates, the others wait for its commit and then find nothing left to do. If one
 * migration fails, none is applied. Returns the versions applied.
 */
export async function migrate(pool: Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    // Migrations may take longer than a row-lock wait; the advisory lock is waited for as long as it takes.
    await client.query("SET LOCAL lock_timeout = '60s'");
    await client.query(plans.migrationLock);
    await client.query(plans.createMigrationsTable);
    const applied = new Set((await client.query<{ version: number }>(plans.appliedMigrations)).rows.map((r) => r.version));
    const done: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql); // no parameters: the simple protocol, several statements at once
      await client.query(plans.recordMigration, [m.version, m.name]);
      done.push(m.version);
    }
    return done;
  });
}
