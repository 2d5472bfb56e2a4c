import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { createService, type Service, type ServiceOverrides } from '../../src/main.js';
import type { ProductInput } from '../../src/store/store.ports.js';
import { closeReaders } from './ledger.js';
import { checkResponse } from './openapi.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';

export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long!';

/** Tests read JSON bodies loosely and assert on them. */
export type TestResponse = Omit<Response, 'json'> & { json(): Promise<any> };

export interface TestService extends Service {
  dir: string;
  token(sub: string, role?: 'user' | 'admin'): Promise<string>;
  /** `app.request()` with a bearer token and a JSON body; the answer is checked against /openapi.json. */
  call(method: string, path: string, options?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<TestResponse>;
  stop(): Promise<void>;
}

export type TestStore = 'sqlite' | 'postgres';

/**
 * The store the tests of this run use: TEST_STORE=postgres (set by the `postgres` vitest
 * project) puts every service of startTestService on PostgreSQL, in a database of its own.
 */
export const TEST_STORE: TestStore = process.env.TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

/**
 * The real service (real store, real worker pool), tuned for tests through env-style
 * config: a SQLite file in a temp dir, or with TEST_STORE=postgres a fresh PostgreSQL database,
 * dropped by `stop()`.
 */
export async function startTestService(
  env: Record<string, string> = {},
  options: { products?: ProductInput[]; overrides?: ServiceOverrides; logger?: Logger; store?: TestStore } = {},
): Promise<TestService> {
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-test-'));
  const store = options.store ?? TEST_STORE;
  let database: TestDatabase | undefined;
  if (store === 'postgres' && env.DATABASE_URL === undefined) database = await createTestDatabase('svc');
  const config = loadConfig({
    DB_PATH: join(dir, 'ordersaga.db'),
    JWT_SECRET: TEST_SECRET,
    SEED_DEMO: 'false',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_PER_SEC: '100000',
    RATE_LIMIT_BURST: '100000',
    RATE_LIMIT_IP_PER_SEC: '100000',
    RATE_LIMIT_IP_BURST: '100000',
    RETRY_BASE_MS: '5',
    PAYMENT_SLOW_MS: '400',
    INVENTORY_THREADS: '2',
    ...(database ? { DATABASE_URL: database.url, DATABASE_POOL_SIZE: '4' } : {}),
    ...env,
  });
  let service: Service;
  try {
    service = await createService(config, options.logger ?? createLogger(config.logLevel), options.overrides);
  } catch (err) {
    await database?.drop();
    throw err;
  }
  for (const p of options.products ?? []) await service.stores.catalog.upsertProduct(p);

  const token = (sub: string, role: 'user' | 'admin' = 'user') =>
    mintToken({ secret: TEST_SECRET, sub, role, issuer: config.jwt.issuer, audience: config.jwt.audience });

  // Copied with its accessors: reading `db` on PostgreSQL throws, so it must not be read here.
  const base = Object.defineProperties({}, Object.getOwnPropertyDescriptors(service)) as Service;
  return Object.assign(base, {
    dir,
    token,
    async call(method, path, { token: bearer, body, headers = {} } = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      if (bearer) (init.headers as Record<string, string>).Authorization = `Bearer ${bearer}`;
      if (body !== undefined) {
        (init.headers as Record<string, string>)['Content-Type'] ??= 'application/json';
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
      }
      const res = await service.app.request(path, init);
      await checkResponse(res, method, path);
      return res as TestResponse;
    },
    async stop() {
      await closeReaders(base);
      await service.close();
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  } satisfies Omit<TestService, keyof Service>);
}

/**
 * The store of a test's server processes: a SQLite file under `dir`, or (TEST_STORE=postgres) a
 * database of its own, pushed onto `databases` for the test file to drop afterwards.
 */
export async function processStoreEnv(dir: string, name: string, databases: TestDatabase[]): Promise<{ DB_PATH: string; DATABASE_URL?: string }> {
  const env = { DB_PATH: join(dir, `${name}.db`) };
  if (TEST_STORE !== 'postgres') return env;
  const db = await createTestDatabase(name);
  databases.push(db);
  return { ...env, DATABASE_URL: db.url };
}

export function orderBody(overrides: { items?: Array<{ sku: string; quantity: number }>; token?: string; country?: string; user_id?: string } = {}) {
  return {
    items: overrides.items ?? [{ sku: 'SKU-A', quantity: 1 }],
    payment: { token: overrides.token ?? 'tok_visa' },
    shipping: { name: 'Alice Example', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: overrides.country ?? 'DE' },
    ...(overrides.user_id ? { user_id: overrides.user_id } : {}),
  };
}

/** Polls the status endpoint until the order is at `state` (e.g. `paying`); fails if it never gets there. */
export async function waitForState(svc: TestService, orderId: string, token: string, state: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = await (await svc.call('GET', `/api/v1/pipeline/orders/${orderId}/status`, { token })).json();
    if (body.state === state) return;
    if (body.status !== 'processing' || Date.now() > deadline) throw new Error(`order ${orderId} never reached ${state} (at ${body.state})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Polls the status endpoint until the order is no longer processing. */
export async function waitForFinal(svc: TestService, orderId: string, token: string, timeoutMs = 20_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await svc.call('GET', `/api/v1/pipeline/orders/${orderId}/status`, { token });
    const body = await res.json();
    if (body.status !== 'processing') return body;
    if (Date.now() > deadline) throw new Error(`order ${orderId} still processing at ${body.state}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
