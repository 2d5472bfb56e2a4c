import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, TEST_STORE, type TestService } from '../support/service.js';

/*
 * GET /readyz with real parts failing one at a time: the store refusing writes (SQLite: its write
 * lock held by another connection; PostgreSQL: the database made read-only), the engine draining,
 * the inventory pool closed. /healthz stays 200 through all of it (liveness only).
 */

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(() => svc.stop());

const readyz = async (service: TestService) => {
  const res = await service.call('GET', '/readyz');
  return { status: res.status, body: await res.json() };
};
const healthy = async (service: TestService) => (await service.call('GET', '/healthz')).status;

describe('GET /readyz', () => {
  it('answers 200 with every check ok when the store takes writes, the pool runs and the engine accepts', async () => {
    expect(await readyz(svc)).toEqual({ status: 200, body: { status: 'ready', checks: { store: 'ok', pool: 'ok', engine: 'ok' } } });
  });

  it.runIf(TEST_STORE === 'sqlite')('answers 503 not_ready naming the store while another connection holds the write lock, and 200 once it lets go', async () => {
    const blocker = new Database(svc.config.dbPath);
    try {
      blocker.exec('BEGIN IMMEDIATE');
      const { status, body } = await readyz(svc);
      expect(status).toBe(503);
      expect(body).toMatchObject({ code: 'not_ready', status: 503, checks: { store: expect.stringMatching(/locked|busy/i), pool: 'ok', engine: 'ok' } });
      expect(body.detail).toMatch(/^Not ready: store: /);
      expect(await healthy(svc)).toBe(200);
      blocker.exec('ROLLBACK');
      expect((await readyz(svc)).status).toBe(200);
    } finally {
      blocker.close();
    }
  });

  it.runIf(TEST_STORE === 'postgres')('answers 503 not_ready naming the store while the database is read-only, and 200 once it is not', async () => {
    const url = new URL(svc.config.database.url!);
    const database = url.pathname.slice(1);
    const admin = new pg.Client({ connectionString: svc.config.database.url });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE "${database}" SET default_transaction_read_only = on`);
      const { status, body } = await readyz(svc);
      expect(status).toBe(503);
      expect(body).toMatchObject({ code: 'not_ready', checks: { store: 'the database is read-only', pool: 'ok', engine: 'ok' } });
      expect(await healthy(svc)).toBe(200);
    } finally {
      await admin.query(`ALTER DATABASE "${database}" RESET default_transaction_read_only`);
      await admin.end();
    }
    expect((await readyz(svc)).status).toBe(200);
  });
});

describe('GET /readyz while the service stops', () => {
  let stopping: TestService;
  beforeAll(async () => {
    stopping = await startTestService();
  });
  afterAll(() => stopping.stop());

  it('names the engine once it drains, then the pool once it is closed; /healthz stays 200', async () => {
    await stopping.drain(0);
    expect(await readyz(stopping)).toMatchObject({ status: 503, body: { code: 'not_ready', checks: { store: 'ok', pool: 'ok', engine: 'draining' } } });
    await stopping.pool.close();
    expect(await readyz(stopping)).toMatchObject({ status: 503, body: { code: 'not_ready', checks: { store: 'ok', pool: 'the inventory pool is closed', engine: 'draining' } } });
    expect(await healthy(stopping)).toBe(200);
  });
});
