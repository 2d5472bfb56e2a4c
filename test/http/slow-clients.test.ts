import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { rawExchange, trickle } from '../support/raw-http.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';

/*
 * Time and connection limits against slow clients, over raw sockets to a real server process:
 * HEADERS_TIMEOUT_MS=1000, REQUEST_TIMEOUT_MS=2000, KEEP_ALIVE_TIMEOUT_MS=1000, so Node checks
 * them every 100 ms (a tenth of the shorter limit).
 */

const SECRET = 'slow-clients-test-secret-of-32-bytes-or-more';
const dir = mkdtempSync(join(tmpdir(), 'ordersaga-slow-'));
let server: ServerProcess;
let port: number;
let token: string;

beforeAll(async () => {
  server = await startServerProcess({
    DB_PATH: join(dir, 's.db'),
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'warn',
    HEADERS_TIMEOUT_MS: '1000',
    REQUEST_TIMEOUT_MS: '2000',
    KEEP_ALIVE_TIMEOUT_MS: '1000',
    MAX_LIVE_ORDERS: '1',
    PAYMENT_SLOW_MS: '2500',
  });
  port = Number(new URL(server.url).port);
  token = await mintToken({ secret: SECRET, sub: 'sam', role: 'user' });
});
afterAll(async () => {
  server.child.kill('SIGTERM');
  await server.exited;
  rmSync(dir, { recursive: true, force: true });
});

const order = (payment = 'tok_visa') =>
  JSON.stringify({
    items: [{ sku: 'SKU-MUG', quantity: 1 }],
    payment: { token: payment },
    shipping: { name: 'Sam', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
  });

describe('slow clients', () => {
  it('cuts off a client that trickles its headers with 408 request_timeout soon after HEADERS_TIMEOUT_MS', async () => {
    const res = await rawExchange(port, trickle(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(200)}\r\n\r\n`, 20), 1_000);
    expect(res.status).toBe(408);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(res.body)).toMatchObject({ status: 408, code: 'request_timeout' });
    expect(res.closedByServer).toBe(true);
    expect(res.closedAfterMs).toBeGreaterThanOrEqual(950);
    // Node's default check every 30 s would allow up to 31 s; slack here is for a loaded machine.
    expect(res.closedAfterMs).toBeLessThan(2_500);
  });

  it('cuts off a client that connects and sends nothing', async () => {
    const res = await rawExchange(port, [], 3_000);
    expect(res.status).toBe(408);
    expect(res.closedAfterMs).toBeLessThan(2_500);
  });

  it('cuts off a client that trickles its body soon after REQUEST_TIMEOUT_MS, holding no order slot meanwhile', async () => {
    const body = order();
    const head = `POST /api/v1/pipeline/orders/async HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const slow = rawExchange(port, [head, ...trickle(body, 50)], 1_000);
    // While it trickles, the one order slot (MAX_LIVE_ORDERS=1) is free for others.
    await new Promise((r) => setTimeout(r, 300));
    const api = client(server.url, token);
    const placed = await api('POST', '/api/v1/pipeline/orders', JSON.parse(order()));
    expect(placed.status).toBe(201);

    const res = await slow;
    expect(res.status).toBe(408);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'request_timeout' });
    expect(res.closedAfterMs).toBeGreaterThanOrEqual(1_950);
    expect(res.closedAfterMs).toBeLessThan(3_500);
    const mine = await api('GET', '/api/v1/pipeline/orders');
    expect(mine.body.items).toHaveLength(1);
  });

  it('does not cut off a request that arrived in time but takes longer than REQUEST_TIMEOUT_MS to answer', async () => {
    const started = Date.now();
    const placed = await client(server.url, token)('POST', '/api/v1/pipeline/orders', JSON.parse(order('tok_slow')));
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
    expect(placed).toMatchObject({ status: 201, body: { status: 'completed' } });
  });

  it('closes an idle keep-alive connection after KEEP_ALIVE_TIMEOUT_MS (plus the second Node 20 adds)', async () => {
    const res = await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], 5_000);
    expect(res.status).toBe(200);
    expect(res.headers['keep-alive']).toBe('timeout=1');
    expect(res.closedByServer).toBe(true);
    // Node 20.20 waits keepAliveTimeout + 1 s (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER) before closing.
    expect(res.closedAfterMs).toBeGreaterThanOrEqual(1_900);
    expect(res.closedAfterMs).toBeLessThan(3_500);
  });
});

describe('MAX_CONNECTIONS', () => {
  it('closes connections past the limit at once, and takes new ones when others close', async () => {
    const limited = await startServerProcess({ DB_PATH: join(dir, 'c.db'), JWT_SECRET: SECRET, LOG_LEVEL: 'warn', MAX_CONNECTIONS: '2', KEEP_ALIVE_TIMEOUT_MS: '200' });
    const limitedPort = Number(new URL(limited.url).port);
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(limitedPort, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      });
    // Let the keep-alive connection of startServerProcess's readiness check close (200 ms idle).
    await new Promise((r) => setTimeout(r, 600));
    try {
      const held = [await open(), await open()];
      await new Promise((r) => setTimeout(r, 100));
      const third = await rawExchange(limitedPort, ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], 2_000);
      expect(third.text).toBe('');
      expect(third.closedByServer).toBe(true);
      expect(third.closedAfterMs).toBeLessThan(1_000);

      held[0]!.destroy();
      await new Promise((r) => setTimeout(r, 200));
      const fourth = await rawExchange(limitedPort, ['GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], 2_000);
      expect(fourth.status).toBe(200);
      held[1]!.destroy();
    } finally {
      limited.child.kill('SIGTERM');
      await limited.exited;
    }
  });
});
