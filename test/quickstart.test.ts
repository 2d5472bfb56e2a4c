import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, run, startServerProcess, type ServerProcess } from './support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-qs-'));
let server: ServerProcess | undefined;

afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
  rmSync(dir, { recursive: true, force: true });
});

describe('the README', () => {
  it('quickstart runs as written against a freshly started server with the demo catalog', async () => {
    // WORKERS empty: the default, as the README runs it (startServerProcess would otherwise set WORKERS=1 itself).
    const env = { DB_PATH: join(dir, 'ordersaga.db'), JWT_SECRET: '', WORKERS: '' };
    server = await startServerProcess(env);
    // Printed before the server listens, but the pipe's data may be read after /healthz answered.
    for (let i = 0; i < 100 && !/user token/.test(server.output()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.output()).toMatch(/user token \(sub=alice, 24h\): +ey/);

    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = readme.match(/<!-- quickstart:start -->\s*```sh\n([\s\S]*?)```/)![1]!;
    expect(block).toMatch(/^API=http:\/\/127\.0\.0\.1:3000$/m);
    // The only change: the server under test listens on a free port.
    const script = block.replace(/^API=.*$/m, `API=${server.url}`);
    const { code, stdout, stderr } = await run('bash', ['-euo', 'pipefail', '-c', script], env);
    expect(stderr).toBe('');
    expect(code).toBe(0);

    const lines = stdout.trim().split('\n');
    const bodies = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const [inventory, created, status, declined, list, openapi, docs, ready] = bodies;
    expect(inventory.items.map((p: any) => p.sku)).toEqual(['SKU-HOODIE', 'SKU-MUG', 'SKU-POSTER', 'SKU-TSHIRT']);
    expect(created).toMatchObject({ status: 'completed', order: { total_cents: 3998 } });
    expect(status).toMatchObject({ user_id: 'alice', order: { items: [{ sku: 'SKU-MUG', quantity: 1, unit_price_cents: 1250 }] } });
    expect(['processing', 'completed']).toContain(status.status);
    expect(declined).toMatchObject({ status: 402, code: 'payment_declined', order: { status: 'failed' } });
    expect(declined.order.stages.find((s: any) => s.name === 'reservation').status).toBe('compensated');
    expect(list.items).toHaveLength(3);
    expect([openapi, docs]).toEqual([{ openapi_json: 200 }, { docs: 200 }]);
    expect(ready).toEqual({ status: 'ready', checks: { store: 'ok', pool: 'ok', engine: 'ok' } });
    const metrics = new Map(lines.filter((l) => l.startsWith('ordersaga_')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
    expect(metrics.get('ordersaga_orders_started_total')).toBe(3);
    expect(metrics.get('ordersaga_orders_finished_total{status="failed",code="payment_declined"}')).toBe(1);
    expect(metrics.get('ordersaga_orders_finished_total{status="completed",code="none"}')).toBeGreaterThanOrEqual(1);

    // 7: the stream of step 4's order: `event: state` blocks with increasing ids, ending at completed.
    const events = [...stdout.matchAll(/^event: state\nid: (\d+)\ndata: (\{.*\})$/gm)].map(([, id, data]) => ({ seq: Number(id), view: JSON.parse(data!) }));
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.view.order_id === status.order_id)).toBe(true);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0]!.seq + i));
    expect(events.at(-1)!.view.status).toBe('completed');
    // 8: the page's address, which serves the page.
    const pageUrl = lines.at(-1)!;
    expect(pageUrl).toBe(`${server.url}/ui`);
    const page = await fetch(pageUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<title>ordersaga<\/title>/);
  });
});
