import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mintToken } from '../src/auth/tokens.js';
import { run, startServerProcess } from './support/process.js';

/** A POST whose body goes out in chunks (Transfer-Encoding: chunked, no Content-Length). */
function postChunked(url: string, token: string, chunks: string[]): Promise<{ status: number; type: string; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: JSON.parse(text) }));
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-main-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('starting the service', () => {
  it('refuses to start in production without JWT_SECRET, with a clear message', async () => {
    const { code, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { NODE_ENV: 'production', JWT_SECRET: '', DB_PATH: join(dir, 'p.db') });
    expect(code).toBe(1);
    expect(stderr).toContain('JWT_SECRET: required when NODE_ENV=production');
  });

  it('refuses a bad setting and names it', async () => {
    const { code, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { SYNC_WAIT_MS: 'soon', DB_PATH: join(dir, 'b.db') });
    expect(code).toBe(1);
    expect(stderr).toMatch(/Invalid configuration:\n\s+SYNC_WAIT_MS/);
  });

  it('refuses two ways of verifying tokens, and a JWKS file it cannot read, naming the variable', async () => {
    const both = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { JWT_SECRET: 'x'.repeat(40), JWT_JWKS_URL: 'https://idp.example/jwks', DB_PATH: join(dir, 'j.db') });
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('JWT_SECRET, JWT_JWKS_URL: set only one');
    const missing = await run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { JWT_SECRET: '', JWT_JWKS_FILE: join(dir, 'absent.json'), DB_PATH: join(dir, 'f.db') });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`ordersaga: JWT_JWKS_FILE: cannot read ${join(dir, 'absent.json')}`);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
  });

  it('serves /healthz, logs JSON, and stops cleanly on SIGTERM', async () => {
    const server = await startServerProcess({ DB_PATH: join(dir, 's.db'), JWT_SECRET: 'x'.repeat(40) });
    const res = await fetch(`${server.url}/healthz`, { headers: { 'X-Request-Id': 'boot-check' } });
    expect(await res.json()).toEqual({ status: 'ok' });
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    const requestLine = server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .find((l) => l.request_id === 'boot-check');
    expect(requestLine).toMatchObject({ msg: 'request', status: 200, path: '/healthz' });
    expect(server.output()).not.toContain('user token');
  });

  it('reads request bodies straight from the socket, chunked ones too, and refuses one over 64 KiB with 413 while reading it', async () => {
    const secret = 'y'.repeat(40);
    const server = await startServerProcess({ DB_PATH: join(dir, 'c.db'), JWT_SECRET: secret });
    try {
      const token = await mintToken({ secret, sub: 'carol', role: 'user' });
      const order = JSON.stringify({
        items: [{ sku: 'SKU-MUG', quantity: 1 }],
        payment: { token: 'tok_visa' },
        shipping: { name: 'Carol', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
      });
      const url = `${server.url}/api/v1/pipeline/orders`;
      const placed = await postChunked(url, token, [order.slice(0, 40), order.slice(40)]);
      expect(placed).toMatchObject({ status: 201, body: { status: 'completed', order: { total_cents: 1250 } } });

      const huge = await postChunked(url, token, Array.from({ length: 70 }, () => 'x'.repeat(1024)));
      expect(huge).toMatchObject({ status: 413, type: 'application/problem+json', body: { code: 'payload_too_large' } });
      const declared = await fetch(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: 'x'.repeat(65 * 1024),
      });
      expect(declared.status).toBe(413);
      expect(await declared.json()).toMatchObject({ code: 'payload_too_large' });
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
