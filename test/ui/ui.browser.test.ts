import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { mintToken } from '../../src/auth/tokens.js';
import { OrderError } from '../../src/domain/errors.js';
import { SimulatedPaymentGateway } from '../../src/gateways/payment.gateway.js';
import { createHttpServer } from '../../src/http/server.js';
import { client, ROOT, startServerProcess, type ServerProcess } from '../support/process.js';
import { orderBody, startTestService, TEST_SECRET, type TestService } from '../support/service.js';

/*
 * The /ui page in a real browser: Debian's chromium, headless, driven by playwright-core,
 * against a real server process. Without /usr/bin/chromium the suite skips with one line;
 * REQUIRE_BROWSER=1 (CI) makes a missing browser fail instead.
 */

const CHROMIUM = '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) {
  if (process.env.REQUIRE_BROWSER === '1') throw new Error(`REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
  console.warn(`test/ui: skipped, ${CHROMIUM} is missing (apt-get install chromium; REQUIRE_BROWSER=1 makes this fail)`);
}
const ARTIFACTS = join(ROOT, 'test', 'artifacts');

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-ui-'));
let server: ServerProcess;
let context: BrowserContext;
let page: Page;
let alice: string;
const consoleErrors: string[] = [];
const requested: string[] = [];

const order = (token: string) => ({
  items: [{ sku: 'SKU-TSHIRT', quantity: 1 }],
  payment: { token },
  shipping: { name: 'Alice', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
});

describe.skipIf(!haveBrowser)('the /ui page in chromium', () => {
  beforeAll(async () => {
    server = await startServerProcess({
      DB_PATH: join(dir, 'ordersaga.db'),
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      // Long enough to press Cancel while the payment is pending.
      PAYMENT_SLOW_MS: '4000',
      SSE_HEARTBEAT_MS: '1000',
    });
    alice = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user' });
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'],
      viewport: { width: 1280, height: 1100 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (err) => consoleErrors.push(String(err)));
    page.on('request', (req) => requested.push(req.url()));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    server?.child.kill('SIGTERM');
    await server?.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('signs in with a pasted token and shows orders reaching completed live, without a reload', async () => {
    await page.goto(`${server.url}/ui`);
    await page.fill('#token-input', alice);
    await page.click('#sign-in');
    await page.waitForSelector('#live:not([hidden])');
    await page.waitForSelector('#inventory tr[data-sku="SKU-TSHIRT"]');
    await page.evaluate(() => ((globalThis as any).__sameDocument = true));

    const { body } = await client(server.url, alice)('POST', '/api/v1/pipeline/orders/async', order('tok_visa'));
    await page.waitForSelector(`#orders tr[data-order-id="${body.order_id}"] td.status-completed`, { timeout: 15_000 });
    expect(await page.evaluate(() => (globalThis as any).__sameDocument)).toBe(true);
    // The newest order is on top.
    expect(await page.getAttribute('#orders tbody tr:first-child', 'data-order-id')).toBe(body.order_id);
    // The inventory follows: the page shows what the API says was sold.
    const sold = (await client(server.url, alice)('GET', '/api/v1/inventory/SKU-TSHIRT')).body.sold;
    await page.waitForFunction((n) => (globalThis as any).document.querySelector('#inventory tr[data-sku="SKU-TSHIRT"] td.sold')?.textContent === String(n), sold, { timeout: 5_000 });

    // The token is kept for this tab: a reload stays signed in.
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('ordersaga.token'))).toBe(alice);
  });

  it('opens a slow order, cancels it with the Cancel button and shows it end cancelled, with its stages and machine state', async () => {
    const { body } = await client(server.url, alice)('POST', '/api/v1/pipeline/orders/async', order('tok_slow'));
    const row = `#orders tr[data-order-id="${body.order_id}"]`;
    await page.waitForSelector(row);
    await page.click(row);
    await page.waitForSelector('#cancel-btn:not([hidden])', { timeout: 10_000 });
    await page.waitForSelector('#diagram svg g.current');
    expect(await page.isHidden('#retry-btn')).toBe(true); // a user never sees Retry
    await page.click('#cancel-btn');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#detail-status')?.textContent === 'cancelled', undefined, { timeout: 15_000 });
    await page.waitForSelector(`${row} td.status-cancelled`);
    await page.waitForSelector('#diagram svg g.current[data-state="cancelled"]');
    expect(await page.isHidden('#cancel-btn')).toBe(true);
    // The timeline shows the payment stage that was cut short and the undo that ran.
    expect(await page.textContent('#timeline li[data-stage="cancellation"]')).toMatch(/succeeded/);
    expect(await page.textContent('#timeline li[data-stage="reservation"]')).toMatch(/compensated/);
    // Every step of the machine is drawn, once.
    const drawn = await page.$$eval('#diagram svg g.node', (nodes) => nodes.map((n) => n.getAttribute('data-state')));
    expect(drawn.sort()).toEqual(
      ['placing', 'reserving', 'paying', 'fulfilling', 'notifying', 'completed', 'compensating', 'refundingPayment', 'releasingStock', 'cancellingOrder', 'compensationFailed', 'failed', 'cancelled'].sort(),
    );

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'ui.png'), fullPage: true });
    expect(existsSync(join(ARTIFACTS, 'ui.png'))).toBe(true);
  });

  it('shows an admin the Retry button on a parked order, and the retried order running on to its end', async () => {
    // In-process, to inject the fault: refunds fail three times (the order parks), then work.
    let refunds = 0;
    class FlakyRefunds extends SimulatedPaymentGateway {
      override async refund(request: Parameters<SimulatedPaymentGateway['refund']>[0]) {
        if (++refunds <= 3) throw new OrderError('payment_unavailable', `refund outage #${refunds}`);
        return super.refund(request);
      }
    }
    const svc: TestService = await startTestService(
      { RETRY_MAX_ATTEMPTS: '3' },
      { products: [{ sku: 'SKU-A', name: 'A', price_cents: 800, available: 10 }], overrides: { payments: (stores) => new FlakyRefunds(stores.payments, { slowMs: 10 }) } },
    );
    const http: Server = createHttpServer(svc.app, svc.config.http);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const adminPage = await context.newPage();
    const errors: string[] = [];
    adminPage.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()));
    adminPage.on('pageerror', (err) => errors.push(String(err)));
    try {
      const parked = await (await svc.call('POST', '/api/v1/pipeline/orders', { token: await svc.token('alice'), body: orderBody({ country: 'AQ' }) })).json();
      expect(parked.code).toBe('compensation_failed');

      await adminPage.goto(`${url}/ui`);
      await adminPage.fill('#token-input', await svc.token('ops', 'admin'));
      await adminPage.click('#sign-in');
      await adminPage.waitForSelector('#live:not([hidden])');
      await adminPage.selectOption('#status-filter', 'compensation_failed');
      const row = `#orders tr[data-order-id="${parked.order_id}"]`;
      await adminPage.waitForSelector(`${row} td.status-compensation_failed`);
      await adminPage.click(row);
      await adminPage.waitForSelector('#retry-btn:not([hidden])');
      await adminPage.waitForSelector('#diagram svg g.current[data-state="compensationFailed"]');
      expect(await adminPage.textContent('#timeline li[data-stage="refund"]')).toMatch(/failed · 3 attempts[\s\S]*payment_unavailable/);
      await adminPage.click('#retry-btn');
      // The parked order's stream stayed open: the retry's changes arrive on it, to the final state.
      await adminPage.waitForFunction(() => (globalThis as any).document.querySelector('#detail-status')?.textContent === 'failed', undefined, { timeout: 15_000 });
      expect(await adminPage.isHidden('#retry-btn')).toBe(true);
      expect(await adminPage.textContent('#timeline li[data-stage="refund"]')).toMatch(/succeeded/);
      expect(errors).toEqual([]);
    } finally {
      await adminPage.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await svc.stop();
    }
  });

  it('logged no console errors and loaded nothing from outside the server', () => {
    expect(consoleErrors).toEqual([]);
    expect(requested.length).toBeGreaterThan(5);
    const outside = requested.filter((url) => !url.startsWith(`${server.url}/`) && !url.startsWith('data:'));
    expect(outside).toEqual([]);
    // Everything the page needs came from the service itself.
    for (const path of ['/ui', '/ui/app.js', '/ui/dagre.min.js', '/ui/order-machine.json', '/api/v1/pipeline/events']) {
      expect(requested.some((url) => url === `${server.url}${path}` || url.startsWith(`${server.url}${path}?`))).toBe(true);
    }
  });
});
