import { Writable } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createService } from '../../src/main.js';
import { orderBody, TEST_SECRET } from '../support/service.js';
import { checkedRequest } from '../support/openapi.js';

describe('structured logs', () => {
  it('carry order_id and stage on order lines, codes on failures and compensations, and request id, status and duration on request lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ordersaga-log-'));
    const lines: any[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const config = loadConfig({ DB_PATH: join(dir, 'db.sqlite'), JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'debug', SEED_DEMO: 'true' });
    const svc = await createService(config, createLogger('debug', sink));
    try {
      const token = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user' });
      const res = await checkedRequest(svc.app, '/api/v1/pipeline/orders', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'X-Request-Id': 'req-log-1' },
        body: JSON.stringify(orderBody({ items: [{ sku: 'SKU-MUG', quantity: 1 }], country: 'AQ' })),
      });
      expect(res.status).toBe(422);
      const orderId = ((await res.json()) as { order_id: string }).order_id;
      await new Promise((r) => setTimeout(r, 50));

      const request = lines.find((l) => l.msg === 'request' && l.request_id === 'req-log-1');
      expect(request).toMatchObject({ level: 'info', method: 'POST', path: '/api/v1/pipeline/orders', status: 422, user_id: 'alice' });
      expect(request.duration_ms).toEqual(expect.any(Number));

      const orderLines = lines.filter((l) => l.order_id === orderId);
      expect(orderLines.length).toBeGreaterThan(5);
      for (const l of orderLines) expect(l.stage).toEqual(expect.any(String));
      expect(orderLines).toContainEqual(expect.objectContaining({ msg: 'stage failed', stage: 'fulfillment', code: 'fulfillment_failed', level: 'warn' }));
      expect(orderLines).toContainEqual(expect.objectContaining({ msg: 'compensation done', stage: 'refund', compensation: true }));
      expect(orderLines).toContainEqual(expect.objectContaining({ msg: 'compensation done', stage: 'release', compensation: true }));
      expect(orderLines).toContainEqual(expect.objectContaining({ msg: 'order failed', code: 'fulfillment_failed', status: 'failed' }));
    } finally {
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
