import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { parseResponse, rawExchange, type RawResponse } from '../support/raw-http.js';
import { startServerProcess, type ServerProcess } from '../support/process.js';

/*
 * What Node's HTTP parser or @hono/node-server refuses before any route runs, sent over raw TCP
 * sockets to a real server process: every refusal that can still be answered is a complete
 * HTTP/1.1 answer with an application/problem+json body and a stable code, never a bare status line.
 */

const SECRET = 'malformed-http-test-secret-of-32-bytes-or-more';
const dir = mkdtempSync(join(tmpdir(), 'ordersaga-malformed-'));
let server: ServerProcess;
let port: number;
let token: string;

beforeAll(async () => {
  server = await startServerProcess({ DB_PATH: join(dir, 'm.db'), JWT_SECRET: SECRET, LOG_LEVEL: 'warn', MAX_HEADER_BYTES: '4096' });
  port = Number(new URL(server.url).port);
  token = await mintToken({ secret: SECRET, sub: 'mia', role: 'user' });
});
afterAll(async () => {
  server.child.kill('SIGTERM');
  await server.exited;
  rmSync(dir, { recursive: true, force: true });
});

function expectProblem(res: RawResponse, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['connection']).toBe('close');
  const body = JSON.parse(res.body);
  expect(body).toMatchObject({ status, code, type: `urn:ordersaga:problem:${code.replaceAll('_', '-')}`, title: expect.any(String), detail: expect.any(String) });
  expect(res.body).not.toMatch(/at .+\.(ts|js):\d+/);
  expect(res.closedByServer).toBe(true);
  return body;
}

const order = JSON.stringify({
  items: [{ sku: 'SKU-MUG', quantity: 1 }],
  payment: { token: 'tok_visa' },
  shipping: { name: 'Mia', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
});

describe('requests Node refuses while parsing', () => {
  it('answers 400 malformed_request for control bytes in a header', async () => {
    const res = await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\x01b\r\n\r\n']);
    expect(expectProblem(res, 400, 'malformed_request').detail).toContain('character');
  });

  it('answers 400 malformed_request for conflicting Content-Length and Transfer-Encoding, and for two Content-Lengths', async () => {
    const smuggle = `POST /api/v1/pipeline/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`;
    expectProblem(await rawExchange(port, [smuggle]), 400, 'malformed_request');
    const twice = 'POST /api/v1/pipeline/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde';
    expectProblem(await rawExchange(port, [twice]), 400, 'malformed_request');
  });

  it('answers 400 malformed_request for bad chunk framing, also once the route has started reading the body', async () => {
    const head = `POST /api/v1/pipeline/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const res = await rawExchange(port, [head, `${order.length.toString(16)}\r\n${order.slice(0, 20)}`, { pauseMs: 100 }, `${order.slice(20)}\r\nzz\r\n`]);
    expect(expectProblem(res, 400, 'malformed_request').detail).toContain('chunked');
  });

  it('answers 431 headers_too_large for a header block over MAX_HEADER_BYTES', async () => {
    const res = await rawExchange(port, [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`]);
    expect(expectProblem(res, 431, 'headers_too_large').detail).toContain('4096 bytes');
  });

  it('answers 400 invalid_request_target for a target with characters HTTP does not allow', async () => {
    expectProblem(await rawExchange(port, ['GET /he\x7Fllo HTTP/1.1\r\nHost: x\r\n\r\n']), 400, 'invalid_request_target');
  });
});

describe('requests refused before a route runs', () => {
  it('answers 400 missing_host without a Host header', async () => {
    expectProblem(await rawExchange(port, ['GET /healthz HTTP/1.1\r\n\r\n']), 400, 'missing_host');
    expectProblem(await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost:\r\n\r\n']), 400, 'missing_host');
  });

  it('answers 400 malformed_request for a Host that is not a host', async () => {
    expectProblem(await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n']), 400, 'malformed_request');
  });

  it('answers 400 invalid_request_target for a target that is not a path', async () => {
    for (const line of ['GET healthz HTTP/1.1', 'OPTIONS * HTTP/1.1', 'GET /\\\\evil.example/ HTTP/1.1', 'CONNECT evil.example:443 HTTP/1.1']) {
      const res = await rawExchange(port, [`${line}\r\nHost: x\r\n\r\n`]);
      expectProblem(res, 400, 'invalid_request_target');
    }
  });

  it('answers 417 expectation_failed for an Expect other than 100-continue', async () => {
    expectProblem(await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\n\r\n']), 417, 'expectation_failed');
  });

  it('serves an absolute-form target (RFC 9112 requires accepting it) by its path', async () => {
    const res = await rawExchange(port, ['GET http://other.example/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
  });
});

describe('Expect: 100-continue', () => {
  const head = (auth: string) =>
    `POST /api/v1/pipeline/orders HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: ${order.length}\r\nExpect: 100-continue\r\n\r\n`;

  it('refuses an unauthenticated request without asking for its body', async () => {
    const res = await rawExchange(port, [head('')], 1_000);
    expect(res.text).not.toContain('100 Continue');
    expectProblem(res, 401, 'unauthorized');
  });

  it('asks for the body once the route reads it, before the body is sent, and places the order', async () => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d) => (text += d));
    socket.write(head(`Authorization: Bearer ${token}\r\n`));
    const deadline = Date.now() + 3_000;
    while (!text.includes('\r\n\r\n')) {
      if (Date.now() > deadline) throw new Error(`no interim answer: ${JSON.stringify(text)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    socket.write(order);
    while (!/\r\n\r\n[\s\S]*\}$/.test(text.slice(25))) {
      if (Date.now() > deadline + 5_000) throw new Error(`no final answer: ${JSON.stringify(text)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    socket.destroy();
    const res = parseResponse(text);
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body)).toMatchObject({ status: 'completed' });
  });
});
