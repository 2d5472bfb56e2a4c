import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, ROOT, run } from '../support/process.js';
import { TEST_SECRET } from '../support/service.js';

/*
 * `npm start` runs the compiled service from dist/, which holds no copy of src/ui/ or docs/:
 * the page must still be served. Built here into a folder of the repository's root (as dist/
 * is, and ignored by git as `.vitest-*`), then started as `npm start` starts it.
 */

const out = join(ROOT, `.vitest-build-${process.pid}`);
const dir = mkdtempSync(join(tmpdir(), 'ordersaga-build-'));

afterAll(() => {
  rmSync(out, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('the built service', () => {
  it('serves /ui with its scripts, styles, dagre and the machine, as npm start runs it', async () => {
    const build = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', out], {}, 120_000);
    expect(build.stdout + build.stderr).toBe('');
    expect(build.code).toBe(0);

    const port = await freePort();
    const child = spawn(process.execPath, [join(out, 'main.js')], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DB_PATH: join(dir, 'o.db'), JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const url = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 400; i++) {
        if (child.exitCode !== null) throw new Error(`the built service exited:\n${output}`);
        if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const page = await fetch(`${url}/ui`);
      expect(page.status).toBe(200);
      const html = await page.text();
      const linked = [...html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]!);
      expect(linked).toEqual(expect.arrayContaining(['/ui/app.css', '/ui/dagre.min.js', '/ui/app.js']));
      for (const path of [...linked, '/ui/sse.js', '/ui/diagram.js', '/ui/order-machine.json']) {
        const res = await fetch(`${url}${path}`);
        expect(res.status, path).toBe(200);
        expect((await res.text()).length, path).toBeGreaterThan(100);
      }
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 180_000);
});
