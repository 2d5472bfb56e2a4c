import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { openCommittedReader } from '../support/ledger.js';
import type { TestDatabase } from '../support/postgres.js';
import { orderBody, processStoreEnv, TEST_SECRET } from '../support/service.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-term-'));
const running: ServerProcess[] = [];
const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await Promise.all(running.map((s) => s.exited));
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** This file's server processes' store (see processStoreEnv). */
const storeEnv = (name: string) => processStoreEnv(dir, name, databases);

const base = { JWT_SECRET: TEST_SECRET, SEED_DEMO: 'false', LOG_LEVEL: 'info', RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000', RATE_LIMIT_IP_PER_SEC: '100000', RATE_LIMIT_IP_BURST: '100000' };

async function startWithStock(env: Record<string, string>) {
  const server = await startServerProcess({ ...base, ...env });
  running.push(server);
  const api = client(server.url, await mintToken({ secret: TEST_SECRET, sub: 'ops', role: 'admin' }));
  return { server, api };
}

const statuses = async (env: { DB_PATH: string; DATABASE_URL?: string }) => {
  const db = openCommittedReader({ dbPath: env.DB_PATH, url: env.DATABASE_URL });
  try {
    return (await db.all<{ status: string }>('SELECT status FROM order_snapshots ORDER BY order_id')).map((r) => r.status);
  } finally {
    await db.close();
  }
};

describe('graceful shutdown on SIGTERM', () => {
  it('refuses new orders with 503 + Retry-After, still answers reads, persists unfinished orders and exits 0; the next start finishes them', async () => {
    const env = { ...(await storeEnv('short_grace')), PAYMENT_SLOW_MS: '4000', SHUTDOWN_GRACE_MS: '1000' };
    const { server, api } = await startWithStock(env);
    await api('PUT', '/api/v1/inventory/SKU-A', { name: 'A', price_cents: 100, available: 100 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await api('POST', '/api/v1/pipeline/orders/async', orderBody({ token: 'tok_slow' }))).body.order_id);

    server.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    const refused = await api('POST', '/api/v1/pipeline/orders/async', orderBody());
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(refused.body.code).toBe('shutting_down');
    expect((await api('GET', `/api/v1/pipeline/orders/${ids[0]}/status`)).body.status).toBe('processing');

    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(server.output()).toMatch(/"stopped":3/);
    expect(await statuses(env)).toEqual(['processing', 'processing', 'processing']);

    const next = await startWithStock({ ...env, PAYMENT_SLOW_MS: '10' });
    for (let i = 0; i < 200 && (await statuses(env)).some((s) => s === 'processing'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(await statuses(env)).toEqual(['completed', 'completed', 'completed']);
    expect((await next.api('GET', '/api/v1/inventory/SKU-A')).body).toMatchObject({ available: 97, reserved: 0, sold: 3 });
    next.server.child.kill('SIGTERM');
    expect((await next.server.exited).code).toBe(0);
  }, 60_000);

  it('lets in-flight orders finish within the grace period before exiting', async () => {
    const env = { ...(await storeEnv('long_grace')), PAYMENT_SLOW_MS: '400', SHUTDOWN_GRACE_MS: '10000' };
    const { server, api } = await startWithStock(env);
    await api('PUT', '/api/v1/inventory/SKU-A', { name: 'A', price_cents: 100, available: 100 });
    for (let i = 0; i < 3; i++) await api('POST', '/api/v1/pipeline/orders/async', orderBody({ token: 'tok_slow' }));
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(await statuses(env)).toEqual(['completed', 'completed', 'completed']);
  }, 30_000);
});
