import { Redis } from 'ioredis';
import { RateLimiterCluster, RateLimiterClusterMaster, RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from '../logger.js';

/**
 * Where rate-limit counters live. `counter()` gives a fixed-window counter of `points` per
 * `durationS` per key (rate-limiter-flexible's limiters); `rate-limit.middleware.ts` combines two of
 * them into a burst and a sustained rate.
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis' | 'postgres' | 'cluster';
  counter(name: string, points: number, durationS: number): RateLimiterAbstract;
  close(): Promise<void>;
}

export interface RateLimitStorageConfig {
  /** Counters shared by every instance through this Redis; unset: in this process's memory. */
  redisUrl: string | undefined;
  /** Prefix of every Redis key (`<prefix>rl:<name>:<key>`), so several services can share one Redis. */
  keyPrefix: string;
  /** The service's PostgreSQL (`DATABASE_URL`): without Redis, the counters live there, shared by every instance. */
  databaseUrl?: string | undefined;
  /**
   * This process is one of several order loops (src/loops/): without Redis or PostgreSQL, the
   * counters live in the loops' primary process, so the limits hold for the service as a whole.
   */
  cluster?: boolean;
}

/** Counters in this process: limits hold per instance. */
export function memoryRateLimitStore(): RateLimitStore {
  return {
    kind: 'memory',
    counter: (name, points, duration) => new RateLimiterMemory({ keyPrefix: name, points, duration }),
    close: async () => {},
  };
}

/**
 * The one place that chooses the store: Redis when `REDIS_URL` is set; otherwise the service's
 * PostgreSQL when it runs on one (so that several instances share the limits either way); else
 * memory, for the one instance the embedded SQLite store allows.
 */
export async function createRateLimitStore(config: RateLimitStorageConfig, logger: Logger): Promise<RateLimitStore> {
  if (config.redisUrl) return redisRateLimitStore(config.redisUrl, config.keyPrefix, logger);
  if (config.databaseUrl) return postgresRateLimitStore(config.databaseUrl, logger);
  if (config.cluster) return clusterRateLimitStore();
  return memoryRateLimitStore();
}

/** Whether the loops' primary must keep the counters (`startClusterRateLimits`): neither Redis nor PostgreSQL does. */
export function countersInPrimary(config: RateLimitStorageConfig): boolean {
  return !config.redisUrl && !config.databaseUrl;
}

/**
 * In the loops' primary: the one set of counters every loop's `clusterRateLimitStore` asks over
 * IPC (rate-limiter-flexible's RateLimiterClusterMaster; one per process, made before any fork).
 */
export function startClusterRateLimits(): void {
  new RateLimiterClusterMaster();
}

/** How long a loop waits for the primary's answer; past it the request passes (see rate-limit.middleware.ts). */
const CLUSTER_TIMEOUT_MS = 1_000;

/**
 * Counters in the loops' primary process, asked over node:cluster IPC: shared by the loops of
 * this service (one machine). Several services still need Redis or PostgreSQL.
 */
export function clusterRateLimitStore(): RateLimitStore {
  return {
    kind: 'cluster',
    counter: (name, points, duration) => new RateLimiterCluster({ keyPrefix: name, points, duration, timeoutMs: CLUSTER_TIMEOUT_MS }),
    close: async () => {},
  };
}

/** The table of rate-limit counters in the service's PostgreSQL (rate-limiter-flexible creates it if missing). */
export const RATE_LIMIT_TABLE = 'rate_limit_counters';

/**
 * Counters in the service's PostgreSQL, shared by every instance, on a small pool of their own.
 * While the database is unreachable each instance counts in memory (the insurance limiter),
 * and a slow database never holds a request for more than a moment.
 */
export async function postgresRateLimitStore(url: string, logger: Logger): Promise<RateLimitStore> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 3, connectionTimeoutMillis: 2_000, statement_timeout: 1_000, keepAlive: true });
  pool.on('error', (err) => logger.warn({ err }, 'a PostgreSQL connection for rate limits failed'));
  const ready: Array<Promise<void>> = [];
  // Create the table before the first request: a counter whose table appears mid-way would start
  // again from zero there, after counting the first requests in memory (limits briefly doubled).
  const tableReady = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 3_000);
    new RateLimiterPostgres({ storeClient: pool, storeType: 'pool', tableName: RATE_LIMIT_TABLE, keyPrefix: 'probe', points: 1, duration: 1 }, (err?: Error) => {
      clearTimeout(timer);
      if (err) logger.warn({ err }, 'could not create the rate-limit table in PostgreSQL; counting in memory until it exists');
      resolve(!err);
    });
  });
  return {
    kind: 'postgres',
    counter(name, points, duration) {
      let created!: (err?: Error) => void;
      ready.push(
        new Promise<void>((resolve) => {
          created = (err) => {
            // Not fatal: until the table exists, requests are counted by the insurance limiter.
            if (err) logger.warn({ err }, 'could not create the rate-limit table in PostgreSQL');
            resolve();
          };
        }),
      );
      return new RateLimiterPostgres(
        {
          storeClient: pool,
          storeType: 'pool',
          tableName: RATE_LIMIT_TABLE,
          keyPrefix: name,
          points,
          duration,
          clearExpiredByTimeout: true,
          tableCreated: tableReady,
          insuranceLimiter: new RateLimiterMemory({ keyPrefix: name, points, duration }),
          inMemoryBlockOnConsumed: points + 1,
        },
        (err?: Error) => created(err),
      );
    },
    async close() {
      // Creating the table may still be under way: let it finish before the pool goes.
      await Promise.allSettled(ready);
      await pool.end();
    },
  };
}

/**
 * Counters in Redis, shared by every instance. Connects at start (a Redis that cannot be reached
 * fails the start). Afterwards, while Redis is unreachable, each instance counts in its own memory
 * (rate-limiter-flexible's insurance limiter) instead of waiting for or failing on Redis; commands
 * are never queued while the connection is down.
 */
export async function redisRateLimitStore(url: string, keyPrefix: string, logger: Logger): Promise<RateLimitStore> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 500,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  const shown = redactedUrl(url);
  let lastError: Error | undefined;
  let down = false;
  let ready = false;
  const lost = (err?: Error) => {
    if (ready && !down) logger.warn({ err, redis: shown }, 'Redis for rate limits is unreachable; counting in memory per instance until it is back');
    down = true;
  };
  redis.on('error', (err: Error) => {
    lastError = err;
    lost(err);
  });
  redis.on('close', () => lost());
  redis.on('ready', () => {
    if (ready && down) logger.info({ redis: shown }, 'Redis for rate limits is back');
    ready = true;
    down = false;
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`REDIS_URL: cannot connect to ${shown}: ${(lastError ?? (err as Error)).message}`);
  }
  return {
    kind: 'redis',
    counter: (name, points, duration) =>
      new RateLimiterRedis({
        storeClient: redis,
        keyPrefix: `${keyPrefix}rl:${name}`,
        points,
        duration,
        rejectIfRedisNotReady: true,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix: name, points, duration }),
        // A key over its limit is refused from memory until its window ends: a flood costs Redis nothing.
        inMemoryBlockOnConsumed: points + 1,
      }),
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

function redactedUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
