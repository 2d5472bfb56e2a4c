import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { OpenAPIHono } from '@hono/zod-openapi';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderError } from '../../src/domain/errors.js';
import { SimulatedPaymentGateway } from '../../src/gateways/payment.gateway.js';
import { auditRoutes } from '../../src/http/audit.routes.js';
import { createHttpServer } from '../../src/http/server.js';
import { createLogger } from '../../src/logger.js';
import { committed, ledger } from '../support/ledger.js';
import { orderBody, startTestService, waitForFinal, waitForState, type TestService } from '../support/service.js';

/*
 * The audit log through the real service (real store, on SQLite and on PostgreSQL), served by
 * the real HTTP server on 127.0.0.1 so that the client address is a socket's, with real
 * jose-signed tokens carrying an issuer. Every admin action, refused ones included, must be
 * found at GET /api/v1/audit with who, what, when, where and how it ended.
 */

const ISSUER = 'https://idp.audit.test';

/** Refunds fail the first `failures` times: an order that must be refunded parks in compensation_failed. */
class FlakyRefunds extends SimulatedPaymentGateway {
  calls = 0;
  constructor(
    store: ConstructorParameters<typeof SimulatedPaymentGateway>[0],
    private readonly failures: number,
  ) {
    super(store, { slowMs: 1500 }); // tok_slow: long enough to cancel mid-payment
  }
  override async refund(request: Parameters<SimulatedPaymentGateway['refund']>[0]) {
    this.calls += 1;
    if (this.calls <= this.failures) throw new OrderError('payment_unavailable', `refund outage #${this.calls}`);
    return super.refund(request);
  }
}

let svc: TestService;
let server: Server;
let base: string;
let admin: string;
let alice: string;
const errorLines: any[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) errorLines.push(JSON.parse(line));
      done();
    },
  });
  svc = await startTestService(
    // The test's own address is a trusted proxy, so X-Forwarded-For can name the client.
    { JWT_ISSUER: ISSUER, TRUST_PROXY: '127.0.0.1', RETRY_MAX_ATTEMPTS: '2' },
    {
      products: [{ sku: 'SKU-A', name: 'A', price_cents: 500, available: 100 }],
      overrides: { payments: (stores) => new FlakyRefunds(stores.payments, 2) },
      logger: createLogger('error', sink),
    },
  );
  server = createHttpServer(svc.app, svc.config.http);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  [admin, alice] = await Promise.all([svc.token('ops', 'admin'), svc.token('alice')]);
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await svc?.stop();
});

async function call(method: string, path: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined, text };
}

/** The newest audit entry, read through the API as an admin. */
async function newest(): Promise<any> {
  const page = await call('GET', '/api/v1/audit?limit=1', admin);
  expect(page.status).toBe(200);
  return page.body.items[0];
}

/** Every entry, newest first, walking the pages of `query` with `limit`. */
async function walk(query: string, limit: number): Promise<any[]> {
  const all: any[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const res = await call('GET', `/api/v1/audit?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`, admin);
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeLessThanOrEqual(limit);
    all.push(...res.body.items);
    cursor = res.body.next_cursor;
    if (!cursor) return all;
  }
  throw new Error('the pages never ended');
}

describe('the audit log', () => {
  it("records an admin's stock change: who, what, when, from where, and the outcome, never the token", async () => {
    const before = new Date().toISOString();
    const res = await call('PUT', '/api/v1/inventory/SKU-NEW', admin, { name: 'New', price_cents: 250, available: 7 });
    expect(res.status).toBe(201);
    // Committed before the answer was sent: a second connection sees it at once.
    expect(await committed(svc).get('SELECT action, status FROM audit_log WHERE request_id = ?', res.headers.get('x-request-id'))).toEqual({
      action: 'inventory.set',
      status: 201,
    });
    const entry = await newest();
    expect(entry).toEqual({
      id: expect.stringMatching(/^aud_[0-9A-HJKMNP-TV-Z]{26}$/),
      at: expect.any(String),
      actor: 'ops',
      role: 'admin',
      issuer: ISSUER,
      action: 'inventory.set',
      target: 'SKU-NEW',
      address: '127.0.0.1',
      request_id: res.headers.get('x-request-id'),
      status: 201,
      code: null,
      details: { name: 'New', price_cents: 250, available: 7 },
    });
    expect(entry.at >= before && entry.at <= new Date().toISOString()).toBe(true);
    expect(new Date(entry.at).toISOString()).toBe(entry.at);

    const updated = await call('PUT', '/api/v1/inventory/SKU-NEW', admin, { name: 'New', price_cents: 250, available: 3 }, { 'X-Forwarded-For': '203.0.113.9' });
    expect(updated.status).toBe(200);
    expect(await newest()).toMatchObject({ status: 200, address: '203.0.113.9', details: { available: 3 } });
    const raw = JSON.stringify((await call('GET', '/api/v1/audit?limit=100', admin)).body);
    expect(raw).not.toContain(admin.split('.')[2]!);
  });

  it("records refused stock changes: a user's (403), an invalid product (400) with what was sent, a bad SKU", async () => {
    const forbidden = await call('PUT', '/api/v1/inventory/SKU-A', alice, { name: 'A', price_cents: 1, available: 0 });
    expect(forbidden.status).toBe(403);
    expect(await newest()).toMatchObject({ actor: 'alice', role: 'user', action: 'inventory.set', target: 'SKU-A', status: 403, code: 'forbidden' });

    const invalid = await call('PUT', '/api/v1/inventory/SKU-A', admin, { name: 'A', price_cents: -1, available: 1.5, extra: 'x' });
    expect(invalid.status).toBe(400);
    expect(await newest()).toMatchObject({
      actor: 'ops',
      target: 'SKU-A',
      status: 400,
      code: 'validation_failed',
      details: { name: 'A', price_cents: -1, available: 1.5 },
    });
    const malformed = await call('PUT', '/api/v1/inventory/SKU-A', admin, '{"name": ');
    expect(malformed.status).toBe(400);
    expect(await newest()).toMatchObject({ target: 'SKU-A', status: 400, code: 'malformed_json', details: null });
    const badSku = await call('PUT', `/api/v1/inventory/${encodeURIComponent('bad sku')}`, admin, { name: 'n', price_cents: 1, available: 1 });
    expect(badSku.status).toBe(400);
    expect(await newest()).toMatchObject({ target: 'bad sku', status: 400, code: 'validation_failed' });
    // The stock is as the last accepted change left it.
    expect((await ledger(svc)).products.find((p) => p.sku === 'SKU-A')).toMatchObject({ available: 100 });
  });

  it("records compensation retries: a parked order's (202), a user's (403), a finished order's (409), an unknown order's (404)", async () => {
    // Shipping to AQ fails; the refund fails twice (its retries), so the order parks.
    const parked = await call('POST', '/api/v1/pipeline/orders', alice, orderBody({ country: 'AQ' }));
    expect(parked.body.code).toBe('compensation_failed');
    const id = parked.body.order_id as string;

    expect((await call('POST', `/api/v1/pipeline/orders/${id}/retry`, alice)).status).toBe(403);
    expect(await newest()).toMatchObject({ actor: 'alice', action: 'order.retry', target: id, status: 403, code: 'forbidden' });

    const retried = await call('POST', `/api/v1/pipeline/orders/${id}/retry`, admin);
    expect(retried.status).toBe(202);
    expect(await newest()).toMatchObject({ actor: 'ops', role: 'admin', action: 'order.retry', target: id, status: 202, code: null, address: '127.0.0.1' });
    expect((await waitForFinal(svc, id, admin)).status).toBe('failed');

    const again = await call('POST', `/api/v1/pipeline/orders/${id}/retry`, admin);
    expect(again.status).toBe(409);
    expect(await newest()).toMatchObject({ action: 'order.retry', target: id, status: 409, code: 'invalid_transition' });

    const unknown = 'ord_01AAAAAAAAAAAAAAAAAAAAAAAA';
    expect((await call('POST', `/api/v1/pipeline/orders/${unknown}/retry`, admin)).status).toBe(404);
    expect(await newest()).toMatchObject({ action: 'order.retry', target: unknown, status: 404, code: 'not_found' });
  });

  it("records an admin's cancel (of anyone's order), not a user's own", async () => {
    const { order_id: id } = (await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody({ token: 'tok_slow' }))).body;
    await waitForState(svc, id, alice, 'paying'); // the slow capture is in flight: cancellable
    const count = (await walk('', 100)).length;
    expect((await call('POST', `/api/v1/pipeline/orders/${id}/cancel`, alice)).status).toBe(202);
    expect((await walk('', 100)).length).toBe(count);
    await waitForFinal(svc, id, alice);
    const again = await call('POST', `/api/v1/pipeline/orders/${id}/cancel`, admin);
    expect(again.status).toBe(409);
    expect(await newest()).toMatchObject({ actor: 'ops', action: 'order.cancel', target: id, status: 409, code: 'invalid_transition' });
    const { order_id: other } = (await call('POST', '/api/v1/pipeline/orders/async', alice, orderBody({ token: 'tok_slow' }))).body;
    await waitForState(svc, other, alice, 'paying');
    expect((await call('POST', `/api/v1/pipeline/orders/${other}/cancel`, admin)).status).toBe(202);
    expect(await newest()).toMatchObject({ actor: 'ops', action: 'order.cancel', target: other, status: 202, code: null });
    expect((await waitForFinal(svc, other, alice)).status).toBe('cancelled');
  });

  it("records orders placed for another user (refused ones too), without payment token or address, and not anyone's own", async () => {
    const placed = await call('POST', '/api/v1/pipeline/orders', admin, orderBody({ user_id: 'bob', token: 'tok_visa' }));
    expect(placed.status).toBe(201);
    const entry = await newest();
    expect(entry).toMatchObject({
      actor: 'ops',
      action: 'order.place_for_user',
      target: 'bob',
      status: 201,
      code: null,
      details: { user_id: 'bob', order_id: placed.body.order_id, mode: 'sync', items: [{ sku: 'SKU-A', quantity: 1 }] },
    });
    expect(JSON.stringify(entry)).not.toMatch(/tok_visa|Main St|Berlin/);

    const queued = await call('POST', '/api/v1/pipeline/orders/async', admin, orderBody({ user_id: 'carol' }));
    expect(queued.status).toBe(202);
    expect(await newest()).toMatchObject({ target: 'carol', status: 202, details: { mode: 'async', order_id: queued.body.order_id } });

    const refused = await call('POST', '/api/v1/pipeline/orders', alice, orderBody({ user_id: 'bob' }));
    expect(refused.status).toBe(403);
    expect(await newest()).toMatchObject({ actor: 'alice', role: 'user', target: 'bob', status: 403, code: 'forbidden', details: { order_id: null } });

    // A key spelled with escapes is the same key once parsed: still audited.
    const escaped = JSON.stringify(orderBody()).replace(/^\{/, '{"user\\u005fid":"dave",');
    const sneaky = await call('POST', '/api/v1/pipeline/orders', alice, escaped);
    expect(sneaky.status).toBe(403);
    expect(await newest()).toMatchObject({ actor: 'alice', target: 'dave', code: 'forbidden' });

    // One's own orders, with or without naming oneself, are not admin actions.
    const count = (await walk('', 100)).length;
    expect((await call('POST', '/api/v1/pipeline/orders', alice, orderBody())).status).toBe(201);
    expect((await call('POST', '/api/v1/pipeline/orders', admin, orderBody({ user_id: 'ops' }))).status).toBe(201);
    expect((await call('POST', '/api/v1/pipeline/orders', alice, orderBody({ user_id: ' alice ' }))).status).toBe(201);
    expect((await walk('', 100)).length).toBe(count);
  });

  it('pages newest first across pages without gaps or repeats, also filtered by action and actor', async () => {
    // Many entries at once: several share a millisecond, so the order must come from the ids.
    await Promise.all(Array.from({ length: 30 }, (_, i) => call('PUT', `/api/v1/inventory/SKU-P${i}`, admin, { name: `P${i}`, price_cents: 1, available: i })));
    const all = await walk('', 100);
    const ids = all.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort().reverse()).toEqual(ids);
    expect(all.filter((e) => e.target.startsWith('SKU-P'))).toHaveLength(30);

    for (const limit of [1, 7, 20]) expect((await walk('', limit)).map((e) => e.id)).toEqual(ids);
    const sets = await walk('&action=inventory.set', 4);
    expect(sets.map((e) => e.id)).toEqual(all.filter((e) => e.action === 'inventory.set').map((e) => e.id));
    const byAlice = await walk('&actor=alice', 2);
    expect(byAlice.length).toBeGreaterThan(0);
    expect(byAlice.map((e) => e.id)).toEqual(all.filter((e) => e.actor === 'alice').map((e) => e.id));
    const both = await walk('&actor=alice&action=order.retry', 1);
    expect(both.map((e) => e.id)).toEqual(all.filter((e) => e.actor === 'alice' && e.action === 'order.retry').map((e) => e.id));

    // The default page is 20; the last page says there is no next.
    const first = await call('GET', '/api/v1/audit', admin);
    expect(first.body.items).toHaveLength(20);
    expect(first.body.next_cursor).toBe(ids[19]);
    const last = await call('GET', `/api/v1/audit?limit=100&cursor=${ids.at(-2)}`, admin);
    expect(last.body).toEqual({ items: [all.at(-1)], next_cursor: null });
  });

  it('refuses a bad query with 400 validation_failed naming the parameter', async () => {
    const cases: Array<[string, string]> = [
      ['limit=0', '?/limit'],
      ['limit=101', '?/limit'],
      ['limit=1.5', '?/limit'],
      ['limit=abc', '?/limit'],
      ['limit=1&limit=2', '?/limit'],
      ['cursor=ord_01AAAAAAAAAAAAAAAAAAAAAAAA', '?/cursor'],
      ['cursor=aud_x', '?/cursor'],
      ['action=order.delete', '?/action'],
      ['actor=', '?/actor'],
    ];
    for (const [query, path] of cases) {
      const res = await call('GET', `/api/v1/audit?${query}`, admin);
      expect(res.status, query).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ code: 'validation_failed', status: 400, instance: '/api/v1/audit' });
      expect(res.body.errors.map((e: any) => e.path), query).toContain(path);
    }
    const unknown = await call('GET', '/api/v1/audit?page=2', admin);
    expect(unknown.status).toBe(400);
    expect(unknown.body.code).toBe('validation_failed');
  });

  it('is for admins only: 403 forbidden for a user (even with a bad query), 401 without a token', async () => {
    for (const query of ['', '?limit=0']) {
      const res = await call('GET', `/api/v1/audit${query}`, alice);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('forbidden');
    }
    const anonymous = await call('GET', '/api/v1/audit', undefined);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.code).toBe('unauthorized');
  });

  it('keeps the answer of an admin action whose audit entry cannot be written, and logs the entry instead', async () => {
    const db = committed(svc);
    // A real failure of the store's write: the database refuses every new audit row.
    if (svc.storeKind === 'sqlite') {
      await db.run(`CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit refused'); END`);
    } else {
      await db.run(`CREATE FUNCTION audit_refused() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''audit refused''; END'`);
      await db.run(`CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_refused()`);
    }
    try {
      const countBefore = (await walk('', 100)).length;
      const res = await call('PUT', '/api/v1/inventory/SKU-FAIL', admin, { name: 'F', price_cents: 1, available: 4 });
      expect(res.status).toBe(201);
      expect((await call('GET', '/api/v1/inventory/SKU-FAIL', alice)).body).toMatchObject({ available: 4 });
      expect((await walk('', 100)).length).toBe(countBefore);
      const logged = errorLines.find((l) => l.msg === 'audit entry not recorded' && l.audit?.target === 'SKU-FAIL');
      expect(logged).toMatchObject({
        level: 'error',
        request_id: res.headers.get('x-request-id'),
        audit: { actor: 'ops', action: 'inventory.set', status: 201, details: { available: 4 } },
      });
      expect(JSON.stringify(logged.err)).toContain('audit refused');
    } finally {
      await db.run('DROP TRIGGER audit_refused' + (svc.storeKind === 'sqlite' ? '' : ' ON audit_log'));
    }
    // Once the database takes rows again, so does the log.
    expect((await call('PUT', '/api/v1/inventory/SKU-FAIL', admin, { name: 'F', price_cents: 1, available: 5 })).status).toBe(200);
    expect(await newest()).toMatchObject({ target: 'SKU-FAIL', status: 200, details: { available: 5 } });
  });
});

describe('GET /api/v1/audit in the OpenAPI document', () => {
  const root = new OpenAPIHono();
  // Building the document never calls the store.
  root.route('/api/v1/audit', auditRoutes({ audit: { record: async () => undefined, list: async () => [] } }));
  const doc = root.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 'ordersaga', version: 'test' } }) as any;

  it('documents the query, the page and the problems', () => {
    const get = doc.paths['/api/v1/audit'].get;
    expect(get.parameters.map((p: any) => [p.name, p.in])).toEqual([
      ['limit', 'query'],
      ['cursor', 'query'],
      ['action', 'query'],
      ['actor', 'query'],
    ]);
    expect(get.parameters[0].schema).toMatchObject({ minimum: 1, maximum: 100, default: 20 });
    expect(Object.keys(get.responses['200'].content)).toEqual(['application/json']);
    for (const status of ['400', '401', '403', '429']) expect(Object.keys(get.responses[status].content)).toEqual(['application/problem+json']);
  });

  it("describes what the service answers: a real page and a real problem validate against the document's schemas", async () => {
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema({ $id: 'doc', components: doc.components });
    const get = doc.paths['/api/v1/audit'].get;
    const page = ajv.compile({ $ref: 'doc#/components/schemas/AuditPage', unevaluatedProperties: false });
    const answered = await call('GET', '/api/v1/audit?limit=100', admin);
    expect(answered.body.items.length).toBeGreaterThan(10);
    expect(page(answered.body), JSON.stringify(page.errors)).toBe(true);
    expect(page({ ...answered.body, next_cursor: 1 })).toBe(false);
    const problem = ajv.compile(get.responses['400'].content['application/problem+json'].schema);
    const refused = await call('GET', '/api/v1/audit?limit=0', admin);
    expect(problem(refused.body), JSON.stringify(problem.errors)).toBe(true);
  });
});

