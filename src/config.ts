import { z } from 'zod';
import { newId } from './domain/ids.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const schema = z.object({
  NODE_ENV: z.string().default('development'),
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  DB_PATH: z.string().min(1).default('./data/ordersaga.db'),
  DATABASE_URL: optionalText.refine((v) => {
    if (v === undefined) return true;
    try {
      const u = new URL(v);
      return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be a postgres:// or postgresql:// URL, e.g. postgres://user@127.0.0.1:5432/ordersaga'),
  DATABASE_POOL_SIZE: int(1, 1000).default(10),
  INSTANCE_ID: optionalText.refine((v) => v === undefined || /^[\x21-\x7E]{1,100}$/.test(v), 'must be 1 to 100 printable ASCII characters, no spaces'),
  LEASE_MS: int(1000, 3_600_000).default(10_000),
  JWT_SECRET: optionalText.refine((v) => v === undefined || Buffer.byteLength(v) >= 32, 'must be at least 32 bytes'),
  JWT_ISSUER: optionalText,
  JWT_AUDIENCE: optionalText,
  SYNC_WAIT_MS: int(0, 300_000).default(10_000),
  PAYMENT_SLOW_MS: int(0, 300_000).default(3_000),
  ORDER_TIMEOUT_MS: int(100, 86_400_000).default(30_000),
  RETRY_MAX_ATTEMPTS: int(1, 20).default(3),
  RETRY_BASE_MS: int(1, 60_000).default(100),
  INVENTORY_THREADS: int(1, 64).default(2),
  RATE_LIMIT_PER_SEC: z.coerce.number().positive().max(1_000_000).default(50),
  RATE_LIMIT_BURST: int(1, 1_000_000).default(100),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SEED_DEMO: bool.default(true),
  SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  MAX_LIVE_ORDERS: int(1, 1_000_000).default(10_000),
  IDEMPOTENCY_TTL_HOURS: int(24, 24 * 365).default(24),
  INSPECT: bool.default(false),
  INSPECT_URL: z
    .string()
    .default('ws://127.0.0.1:8080')
    .refine((v) => {
      try {
        const u = new URL(v);
        return (u.protocol === 'ws:' || u.protocol === 'wss:') && u.hostname !== '';
      } catch {
        return false;
      }
    }, 'must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8080'),
});

export interface Config {
  env: string;
  port: number;
  host: string;
  dbPath: string;
  /** PostgreSQL for every store when `url` is set; unset, the SQLite file at `dbPath`. */
  database: { url: string | undefined; poolSize: number };
  /** This instance's name, stored as the owner of the orders it runs (default: generated, unique per start). */
  instanceId: string;
  /** How long an instance's claim on its orders lasts without renewal (used by several instances on PostgreSQL). */
  leaseMs: number;
  jwt: { secret: string | undefined; issuer: string | undefined; audience: string | undefined };
  syncWaitMs: number;
  paymentSlowMs: number;
  orderTimeoutMs: number;
  retry: { max_attempts: number; base_ms: number; max_delay_ms: number };
  inventoryThreads: number;
  rateLimit: { perSecond: number; burst: number };
  logLevel: string;
  seedDemo: boolean;
  shutdownGraceMs: number;
  /** Orders running at once; past it new orders get 503 `overloaded` (memory and latency stay bounded). */
  maxLiveOrders: number;
  idempotencyTtlHours: number;
  /** Stream every order actor to the Stately inspector (a relay at `url`, see `npm run inspector`). */
  inspect: { enabled: boolean; url: string };
}

/** Reads the environment once. Throws one error listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production' && !e.JWT_SECRET) {
    throw new Error('Invalid configuration:\n  JWT_SECRET: required when NODE_ENV=production (at least 32 bytes)');
  }
  return {
    env: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    dbPath: e.DB_PATH,
    database: { url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE },
    instanceId: e.INSTANCE_ID ?? newId('ins'),
    leaseMs: e.LEASE_MS,
    jwt: { secret: e.JWT_SECRET, issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE },
    syncWaitMs: e.SYNC_WAIT_MS,
    paymentSlowMs: e.PAYMENT_SLOW_MS,
    orderTimeoutMs: e.ORDER_TIMEOUT_MS,
    retry: { max_attempts: e.RETRY_MAX_ATTEMPTS, base_ms: e.RETRY_BASE_MS, max_delay_ms: 30_000 },
    inventoryThreads: e.INVENTORY_THREADS,
    rateLimit: { perSecond: e.RATE_LIMIT_PER_SEC, burst: e.RATE_LIMIT_BURST },
    logLevel: e.LOG_LEVEL,
    seedDemo: e.SEED_DEMO,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    maxLiveOrders: e.MAX_LIVE_ORDERS,
    idempotencyTtlHours: e.IDEMPOTENCY_TTL_HOURS,
    inspect: { enabled: e.INSPECT, url: e.INSPECT_URL },
  };
}
