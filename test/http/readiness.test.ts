import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';

/*
 * GET /readyz with real parts failing one at a time: the SQLite file's write lock held by
 * another connection, the engine draining, the inventory pool closed. /healthz stays 200 through
 * all of it (liveness only).
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

  it('answers 503 not_ready naming the store while another connection holds the write lock, and 200 once it lets go', async () => {
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
