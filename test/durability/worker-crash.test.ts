import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledger } from '../support/ledger.js';
import { orderBody, startTestService, type TestService } from '../support/service.js';

const crashDir = mkdtempSync(join(tmpdir(), 'ordersaga-crash-'));
let svc: TestService;
let token: string;

beforeAll(async () => {
  process.env.CRASH_DIR = crashDir;
  svc = await startTestService(
    { RETRY_MAX_ATTEMPTS: '4' },
    {
      products: [
        { sku: 'SKU-CRASH-BEFORE', name: 'before', price_cents: 100, available: 10 },
        { sku: 'SKU-CRASH-AFTER', name: 'after', price_cents: 100, available: 10 },
        { sku: 'SKU-OK', name: 'ok', price_cents: 100, available: 10 },
      ],
      overrides: { inventoryWorkerFile: new URL('../fixtures/crashing-inventory.worker.mjs', import.meta.url).href },
    },
  );
  token = await svc.token('alice');
});
afterAll(async () => {
  await svc.stop();
  rmSync(crashDir, { recursive: true, force: true });
});

describe('a worker thread that dies in the middle of a reservation', () => {
  for (const sku of ['SKU-CRASH-BEFORE', 'SKU-CRASH-AFTER']) {
    it(`is retried without leaking or double-reserving stock (${sku})`, async () => {
      const res = await svc.call('POST', '/api/v1/pipeline/orders', {
        token,
        body: orderBody({ items: [{ sku, quantity: 3 }, { sku: 'SKU-OK', quantity: 1 }] }),
      });
      const body = await res.json();
      expect(res.status).toBe(201);
      const reservation = body.stages.find((s: any) => s.name === 'reservation');
      expect(reservation).toMatchObject({ status: 'succeeded', attempts: 2, error: { code: 'worker_crashed' } });
      const stock = (await ledger(svc)).products.find((p) => p.sku === sku);
      expect(stock).toMatchObject({ available: 7, reserved: 0, sold: 3, added: 10 });
      expect(readdirSync(crashDir)).toContain(`${body.order_id}-${sku === 'SKU-CRASH-BEFORE' ? 'before' : 'after'}`);
    });
  }

  it('leaves SKU-OK stock exactly as the two orders took it', async () => {
    expect((await ledger(svc)).products.find((p) => p.sku === 'SKU-OK')).toMatchObject({ available: 8, reserved: 0, sold: 2, added: 10 });
  });
});
