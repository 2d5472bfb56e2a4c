import { isIP } from 'node:net';
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

/** Asymmetric JWS algorithms jose verifies; HMAC and `none` can never be allowed for an identity provider's keys. */
export const ASYMMETRIC_JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);

/** `https://…`, or `http://` only for a loopback host (a local test or sidecar provider): keys must not travel in the clear. */
function isSafeJwksUrl(v: string): boolean {
  try {
    const u = new URL(v);
    if (u.protocol === 'https:') return true;
    return u.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}

/** An origin as a browser sends it: scheme, host and optional port, nothing more. */
function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === v;
  } catch {
    return false;
  }
}

/** An IP address or a CIDR block (`10.0.0.0/8`, `::1`, `fd00::/8`). */
function isAddressOrCidr(v: string): boolean {
  const [address, prefix, ...rest] = v.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  const bits = Number(prefix);
  return /^\d+$/.test(prefix) && bits <= (family === 4 ? 32 : 128);
}

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
  JWT_JWKS_URL: optionalText.refine((v) => v === undefined || isSafeJwksUrl(v), 'must be an https:// URL (http:// only for localhost)'),
  JWT_JWKS_FILE: optionalText,
  JWT_ALGORITHMS: optionalText.refine(
    (v) => v === undefined || (list(v).length > 0 && list(v).every((a) => (ASYMMETRIC_JWT_ALGORITHMS as readonly string[]).includes(a))),
    `must be a comma-separated list of ${ASYMMETRIC_JWT_ALGORITHMS.join(', ')}`,
  ),
  JWT_CLOCK_TOLERANCE_S: int(0, 600).default(30),
  JWT_ROLE_CLAIM: z.string().trim().min(1).max(256).default('role'),
  JWT_JWKS_COOLDOWN_MS: int(0, 3_600_000).default(30_000),
  JWT_JWKS_MAX_AGE_MS: int(1_000, 86_400_000).default(600_000),
  SYNC_WAIT_MS: int(0, 300_000).default(10_000),
  PAYMENT_SLOW_MS: int(0, 300_000).default(3_000),
  ORDER_TIMEOUT_MS: int(100, 86_400_000).default(30_000),
  RETRY_MAX_ATTEMPTS: int(1, 20).default(3),
  RETRY_BASE_MS: int(1, 60_000).default(100),
  INVENTORY_THREADS: int(1, 64).default(2),
  // One loop unless set: on this project's 2-core machines two loops completed fewer orders than
  // one on both stores (docs/performance.md, "Order loops, 2026-12-02").
  WORKERS: int(1, 64).default(1),
  RATE_LIMIT_PER_SEC: z.coerce.number().positive().max(1_000_000).default(50),
  RATE_LIMIT_BURST: int(1, 1_000_000).default(100),
  RATE_LIMIT_IP_PER_SEC: z.coerce.number().positive().max(1_000_000).default(100),
  RATE_LIMIT_IP_BURST: int(1, 1_000_000).default(200),
  REDIS_URL: optionalText.refine((v) => {
    if (v === undefined) return true;
    try {
      const u = new URL(v);
      return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z.string().min(1).max(100).default('ordersaga:'),
  TRUST_PROXY: optionalText.refine(
    (v) => v === undefined || list(v).every(isAddressOrCidr),
    'must be a comma-separated list of proxy addresses or CIDR blocks, e.g. 10.0.0.0/8,::1',
  ),
  HEADERS_TIMEOUT_MS: int(100, 600_000).default(10_000),
  REQUEST_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  KEEP_ALIVE_TIMEOUT_MS: int(100, 600_000).default(5_000),
  MAX_HEADER_BYTES: int(1_024, 1_048_576).default(16_384),
  MAX_CONNECTIONS: int(1, 1_000_000).default(1_000),
  CORS_ORIGINS: optionalText.refine(
    (v) => v === undefined || list(v).every(isOrigin),
    'must be a comma-separated list of origins such as https://shop.example.com (scheme and host, no path, no "*")',
  ),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SEED_DEMO: bool.default(true),
  SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  MAX_LIVE_ORDERS: int(1, 1_000_000).default(10_000),
  IDEMPOTENCY_TTL_HOURS: int(24, 24 * 365).default(24),
  SSE_HEARTBEAT_MS: int(10, 300_000).default(15_000),
  SSE_MAX_STREAMS: int(1, 1_000_000).default(500),
  SSE_MAX_STREAMS_PER_USER: int(1, 1_000_000).default(10),
  INSPECT: bool.default(false),
  METRICS_TOKEN: optionalText.refine((v) => v === undefined || /^[\x21-\x7E]{16,512}$/.test(v), '16 to 512 printable characters without spaces'),
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
  jwt: {
    secret: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
    /** An identity provider's JWKS endpoint, or a local JWKS file: at most one of these, and then no `secret`. */
    jwksUrl: string | undefined;
    jwksFile: string | undefined;
    /** The allow-list for JWKS tokens (HS256 tokens are always HS256). */
    algorithms: string[];
    clockToleranceS: number;
    roleClaim: string;
    /** Remote JWKS: no refetch for an unknown `kid` sooner than this after the last fetch. */
    jwksCooldownMs: number;
    /** Remote JWKS: keys older than this are fetched again before use. */
    jwksMaxAgeMs: number;
  };
  syncWaitMs: number;
  paymentSlowMs: number;
  orderTimeoutMs: number;
  retry: { max_attempts: number; base_ms: number; max_delay_ms: number };
  inventoryThreads: number;
  /** Order loops (processes sharing the port, see src/loops/); 1: one process, as before loops. */
  workers: number;
  /** Per user after authentication (`perSecond`, `burst`) and per client address before it. */
  rateLimit: {
    perSecond: number;
    burst: number;
    perAddress: { perSecond: number; burst: number };
    /** Where the counters live: memory (one instance), or Redis shared by every instance. */
    storage: { redisUrl: string | undefined; keyPrefix: string; databaseUrl: string | undefined; cluster?: boolean };
  };
  /** Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed; empty: the socket's address is the client. */
  trustProxy: string[];
  /** Node HTTP server limits (src/http/server.ts). */
  http: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number; maxHeaderBytes: number; maxConnections: number };
  /** Origins allowed to call the API from a browser; empty: CORS off. */
  corsOrigins: string[];
  logLevel: string;
  seedDemo: boolean;
  shutdownGraceMs: number;
  /** Orders running at once; past it new orders get 503 `overloaded` (memory and latency stay bounded). */
  maxLiveOrders: number;
  idempotencyTtlHours: number;
  /** Event streams: a comment this often keeps proxies from closing an idle one; open at once, in all and per user. */
  sse: { heartbeatMs: number; maxStreams: number; maxStreamsPerUser: number };
  /** Stream every order actor to the Stately inspector (a relay at `url`, see `npm run inspector`). */
  inspect: { enabled: boolean; url: string };
  /** Set: /metrics requires `Authorization: Bearer <token>`; unset, it is open. */
  metricsToken: string | undefined;
}

/** Reads the environment once. Throws one error listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const problems: string[] = [];
  const tokenSources = (['JWT_SECRET', 'JWT_JWKS_URL', 'JWT_JWKS_FILE'] as const).filter((name) => e[name] !== undefined);
  if (tokenSources.length > 1) {
    problems.push(`  ${tokenSources.join(', ')}: set only one; tokens are verified either with JWT_SECRET (HS256) or with one identity provider's keys`);
  }
  if (e.NODE_ENV === 'production' && tokenSources.length === 0) {
    problems.push('  JWT_SECRET: required when NODE_ENV=production (at least 32 bytes), unless JWT_JWKS_URL or JWT_JWKS_FILE is set');
  }
  if (e.JWT_ALGORITHMS !== undefined && e.JWT_JWKS_URL === undefined && e.JWT_JWKS_FILE === undefined) {
    problems.push('  JWT_ALGORITHMS: applies only with JWT_JWKS_URL or JWT_JWKS_FILE (JWT_SECRET tokens are always HS256)');
  }
  if (e.HEADERS_TIMEOUT_MS > e.REQUEST_TIMEOUT_MS) {
    problems.push(`  HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS (${e.HEADERS_TIMEOUT_MS} > ${e.REQUEST_TIMEOUT_MS})`);
  }
  if (problems.length > 0) throw new Error(`Invalid configuration:\n${problems.join('\n')}`);
  return {
    env: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    dbPath: e.DB_PATH,
    database: { url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE },
    instanceId: e.INSTANCE_ID ?? newId('ins'),
    leaseMs: e.LEASE_MS,
    jwt: {
      secret: e.JWT_SECRET,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      jwksUrl: e.JWT_JWKS_URL,
      jwksFile: e.JWT_JWKS_FILE,
      algorithms: e.JWT_ALGORITHMS ? list(e.JWT_ALGORITHMS) : ['RS256', 'ES256', 'EdDSA'],
      clockToleranceS: e.JWT_CLOCK_TOLERANCE_S,
      roleClaim: e.JWT_ROLE_CLAIM,
      jwksCooldownMs: e.JWT_JWKS_COOLDOWN_MS,
      jwksMaxAgeMs: e.JWT_JWKS_MAX_AGE_MS,
    },
    syncWaitMs: e.SYNC_WAIT_MS,
    paymentSlowMs: e.PAYMENT_SLOW_MS,
    orderTimeoutMs: e.ORDER_TIMEOUT_MS,
    retry: { max_attempts: e.RETRY_MAX_ATTEMPTS, base_ms: e.RETRY_BASE_MS, max_delay_ms: 30_000 },
    inventoryThreads: e.INVENTORY_THREADS,
    workers: e.WORKERS,
    rateLimit: {
      perSecond: e.RATE_LIMIT_PER_SEC,
      burst: e.RATE_LIMIT_BURST,
      perAddress: { perSecond: e.RATE_LIMIT_IP_PER_SEC, burst: e.RATE_LIMIT_IP_BURST },
      storage: { redisUrl: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX, databaseUrl: e.DATABASE_URL },
    },
    trustProxy: list(e.TRUST_PROXY),
    http: {
      headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS,
      maxHeaderBytes: e.MAX_HEADER_BYTES,
      maxConnections: e.MAX_CONNECTIONS,
    },
    corsOrigins: list(e.CORS_ORIGINS),
    logLevel: e.LOG_LEVEL,
    seedDemo: e.SEED_DEMO,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    maxLiveOrders: e.MAX_LIVE_ORDERS,
    idempotencyTtlHours: e.IDEMPOTENCY_TTL_HOURS,
    sse: { heartbeatMs: e.SSE_HEARTBEAT_MS, maxStreams: e.SSE_MAX_STREAMS, maxStreamsPerUser: e.SSE_MAX_STREAMS_PER_USER },
    inspect: { enabled: e.INSPECT, url: e.INSPECT_URL },
    metricsToken: e.METRICS_TOKEN,
  };
}
