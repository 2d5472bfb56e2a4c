import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { createHttpServer } from '../../src/http/server.js';
import { freePort, run } from '../support/process.js';
import { startTestService, type TestService } from '../support/service.js';
import { checkedFetch } from '../support/openapi.js';

/*
 * The per-address limit before authentication, over real sockets: each instance is the real service
 * served by createHttpServer on 127.0.0.1 (in the test process, so that several instances do not
 * cost several process starts), with the machine's Redis on 127.0.0.1:6379 for the shared store.
 * 0.2 requests/s with a burst of 3: three requests pass, the fourth is refused, and nothing refills
 * for 5 s, so slow machines cannot make the counts drift.
 */

const SHARED_REDIS = 'redis://127.0.0.1:6379';

interface Instance {
  url: string;
  svc: TestService;
  logs: () => string;
  stop(): Promise<void>;
}
const instances: Instance[] = [];
afterAll(async () => {
  await Promise.all(instances.map((i) => i.stop()));
});

async function start(env: Record<string, string> = {}): Promise<Instance> {
  let logs = '';
  const svc = await startTestService({ RATE_LIMIT_IP_PER_SEC: '0.2', RATE_LIMIT_IP_BURST: '3', INVENTORY_THREADS: '1', ...env }, {
    logger: createLogger('info', { write: (line: string) => void (logs += line) }),
  });
  const server: Server = createHttpServer(svc.app, svc.config.http);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let stopped = false;
  const instance: Instance = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    svc,
    logs: () => logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await svc.stop();
    },
  };
  instances.push(instance);
  return instance;
}

/** A request without a token: it is refused by authentication, unless the address limit refuses it first. */
async function anonymous(server: Instance, forwardedFor?: string) {
  const res = await checkedFetch(`${server.url}/api/v1/inventory`, { headers: forwardedFor ? { 'X-Forwarded-For': forwardedFor } : {} });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

/** Resolves once a Redis on `port` answers PING. */
async function waitForRedis(port: number): Promise<void> {
  const ping = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('error', () => resolve(false));
      socket.once('data', (d) => {
        socket.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      socket.once('connect', () => socket.write('PING\r\n'));
    });
  for (let i = 0; !(await ping()); i++) {
    if (i > 100) throw new Error(`no Redis answered on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const statuses = async (server: Instance, n: number, forwardedFor?: string) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await anonymous(server, forwardedFor)).status);
  return out;
};

describe('the per-address rate limit', () => {
  it('refuses a flood from one address with 429 before any token is checked, keeping the RateLimit headers and Retry-After', async () => {
    const server = await start();
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await anonymous(server));
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 429]);
    expect(answers.map((a) => a.headers.get('ratelimit-remaining'))).toEqual(['2', '1', '0', '0']);
    const refused = answers[3]!;
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(refused.body).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(refused.headers.get('ratelimit-limit')).toBe('3');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(5);
    // Without TRUST_PROXY, X-Forwarded-For is the client's word and changes nothing.
    expect(await statuses(server, 2, '203.0.113.50')).toEqual([429, 429]);
    // /healthz is not limited (load balancers probe it).
    expect((await checkedFetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('believes X-Forwarded-For only from a TRUST_PROXY address, reads it right to left, and counts IPv6 clients by /64', async () => {
    const server = await start({ TRUST_PROXY: '127.0.0.1' });
    expect(await statuses(server, 4, '203.0.113.7')).toEqual([401, 401, 401, 429]);
    expect(await statuses(server, 1, '203.0.113.8')).toEqual([401]);
    // The client may write anything at the left end; the address our proxy appended is what counts.
    expect(await statuses(server, 1, '198.51.100.1, 203.0.113.7')).toEqual([429]);
    // One subscriber's /64 is one client, whichever of its addresses it uses.
    expect(await statuses(server, 3, '2001:db8:1:2::1')).toEqual([401, 401, 401]);
    expect(await statuses(server, 1, '2001:db8:1:2:ffff:ffff:ffff:ffff')).toEqual([429]);
    expect(await statuses(server, 1, '2001:db8:1:3::1')).toEqual([401]);
  });

  it('holds across instances with REDIS_URL, and only with it', async () => {
    const prefix = `ordersaga-test-${randomBytes(6).toString('hex')}:`;
    const shared = { REDIS_URL: SHARED_REDIS, REDIS_KEY_PREFIX: prefix };
    const [a, b] = await Promise.all([start(shared), start(shared)]);
    const [c, d] = await Promise.all([start(), start()]);
    try {
      expect([(await anonymous(a)).status, (await anonymous(b)).status, (await anonymous(a)).status]).toEqual([401, 401, 401]);
      const fourth = await anonymous(b);
      expect(fourth.status).toBe(429);
      expect(fourth.headers.get('ratelimit-remaining')).toBe('0');
      // The counters are in Redis, under the prefix.
      const redis = new Redis(SHARED_REDIS);
      try {
        expect((await redis.keys(`${prefix}rl:ip-*`)).length).toBeGreaterThan(0);
      } finally {
        redis.disconnect();
      }
      // In memory, each instance counts on its own.
      expect([(await anonymous(c)).status, (await anonymous(d)).status, (await anonymous(c)).status, (await anonymous(d)).status]).toEqual([401, 401, 401, 401]);
    } finally {
      await Promise.all([a, b, c, d].map((i) => i.stop()));
    }
  });

  it('keeps answering when Redis goes away, counting in memory meanwhile', async () => {
    const port = await freePort();
    const redisServer: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    try {
      await waitForRedis(port);
      const server = await start({ REDIS_URL: `redis://127.0.0.1:${port}` });
      expect(await statuses(server, 1)).toEqual([401]);
      redisServer.kill('SIGKILL');
      await new Promise((r) => redisServer.once('exit', r));
      const started = Date.now();
      // A fresh count in this instance's memory: three pass, the fourth is refused. No 500, no wait for Redis.
      expect(await statuses(server, 4)).toEqual([401, 401, 401, 429]);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(server.logs()).toContain('Redis for rate limits is unreachable');
      await server.stop();
    } finally {
      if (redisServer.exitCode === null) redisServer.kill('SIGKILL');
    }
  });

  it('refuses to start when REDIS_URL cannot be reached, naming it', async () => {
    const port = await freePort();
    const { code, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      DB_PATH: join(tmpdir(), `ordersaga-no-redis-${port}`, 'o.db'),
      JWT_SECRET: 'x'.repeat(40),
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`REDIS_URL: cannot connect to redis://127.0.0.1:${port}`);
  });
});
