import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHttpServer } from '../../src/http/server.js';
import { RATE_LIMIT_TABLE } from '../../src/http/rate-limit.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { startTestService, type TestService } from '../support/service.js';
import { checkedFetch } from '../support/openapi.js';

/*
 * On PostgreSQL without Redis, the per-address limit holds for the service as a whole: two
 * instances on one database share their counters there (postgres project only).
 */
const open: Array<{ server: Server; svc: TestService }> = [];
let database: TestDatabase | undefined;
afterAll(async () => {
  for (const { server, svc } of open) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await svc.stop();
  }
  await database?.drop();
});

async function instance(url: string): Promise<string> {
  const svc = await startTestService(
    { DATABASE_URL: url, RATE_LIMIT_IP_PER_SEC: '0.2', RATE_LIMIT_IP_BURST: '3', INVENTORY_THREADS: '1' },
    { store: 'postgres' },
  );
  const server = createHttpServer(svc.app, svc.config.http);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push({ server, svc });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('the per-address rate limit on PostgreSQL', () => {
  it('holds across instances sharing one database, with the counters in that database', async () => {
    database = await createTestDatabase('rate-limit');
    const [a, b] = [await instance(database.url), await instance(database.url)];
    const anonymous = (url: string) => checkedFetch(`${url}/api/v1/inventory`).then((r) => ({ status: r.status, remaining: r.headers.get('ratelimit-remaining') }));
    expect([(await anonymous(a)).status, (await anonymous(b)).status, (await anonymous(a)).status]).toEqual([401, 401, 401]);
    expect(await anonymous(b)).toEqual({ status: 429, remaining: '0' });
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    try {
      const { rows } = await db.query(`SELECT key, points FROM ${RATE_LIMIT_TABLE}`);
      expect(rows.some((r: { key: string; points: number }) => r.key.startsWith('ip-') && r.points >= 3)).toBe(true);
    } finally {
      await db.end();
    }
  });
});
