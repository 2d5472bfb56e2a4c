import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run, startServerProcess } from './support/process.js';

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
});
