import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { createService, type Service, type ServiceOverrides } from '../../src/main.js';
import type { ProductInput } from '../../src/store/store.ports.js';

export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long!';

/** Tests read JSON bodies loosely and assert on them. */
export type TestResponse = Omit<Response, 'json'> & { json(): Promise<any> };

export interface TestService extends Service {
  dir: string;
  token(sub: string, role?: 'user' | 'admin'): Promise<string>;
  /** `app.request()` with a bearer token and a JSON body. */
  call(method: string, path: string, options?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<TestResponse>;
  stop(): Promise<void>;
}

/** The real service (real SQLite file in a temp dir, real worker pool), tuned for tests through env-style config. */
export async function startTestService(
  env: Record<string, string> = {},
  options: { products?: ProductInput[]; overrides?: ServiceOverrides; logger?: Logger } = {},
): Promise<TestService> {
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-test-'));
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
    ...env,
  });
  const service = await createService(config, options.logger ?? createLogger(config.logLevel), options.overrides);
  for (const p of options.products ?? []) await service.stores.catalog.upsertProduct(p);

  const token = (sub: string, role: 'user' | 'admin' = 'user') =>
    mintToken({ secret: TEST_SECRET, sub, role, issuer: config.jwt.issuer, audience: config.jwt.audience });

  return {
    ...service,
    dir,
    token,
    async call(method, path, { token: bearer, body, headers = {} } = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      if (bearer) (init.headers as Record<string, string>).Authorization = `Bearer ${bearer}`;
      if (body !== undefined) {
        (init.headers as Record<string, string>)['Content-Type'] ??= 'application/json';
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
      }
      return (await service.app.request(path, init)) as TestResponse;
    },
    async stop() {
      await service.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
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

/** Per-SKU stock and per-order money, straight from the database. */
export function ledger(svc: Service) {
  const products = svc.db.prepare('SELECT sku, available, reserved, sold, added FROM products ORDER BY sku').all() as Array<{
    sku: string;
    available: number;
    reserved: number;
    sold: number;
    added: number;
  }>;
  const money = (orderId: string) => {
    const charge = svc.db.prepare(`SELECT status, amount_cents FROM payment_charges WHERE order_id = ?`).get(orderId) as
      | { status: string; amount_cents: number }
      | undefined;
    const refunded = (svc.db.prepare('SELECT COALESCE(SUM(amount_cents), 0) AS s FROM payment_refunds WHERE order_id = ?').get(orderId) as { s: number }).s;
    const captured = charge && (charge.status === 'captured' || charge.status === 'refunded') ? charge.amount_cents : 0;
    return { captured, refunded, net: captured - refunded };
  };
  return { products, money };
}
