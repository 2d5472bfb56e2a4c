import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.js';
import { orderBody, startTestService, TEST_SECRET, type TestResponse, type TestService } from '../support/service.js';

let svc: TestService;
let alice: string;
const key = new TextEncoder().encode(TEST_SECRET);

beforeAll(async () => {
  svc = await startTestService({}, { products: [{ sku: 'SKU-A', name: 'A', price_cents: 100, available: 100 }] });
  alice = await svc.token('alice');
});
afterAll(() => svc.stop());

async function expectProblem(res: TestResponse, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const body = await res.json();
  expect(body).toMatchObject({ status, code, type: expect.stringMatching(/^urn:ordersaga:problem:/), title: expect.any(String), detail: expect.any(String) });
  expect(JSON.stringify(body)).not.toMatch(/at .+\.(ts|js):\d+/);
  return body;
}

describe('GET /healthz', () => {
  it('answers without a token', async () => {
    const res = await svc.call('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });
});

describe('authentication', () => {
  const route = '/api/v1/inventory';

  it('answers 401 with WWW-Authenticate when the token is missing', async () => {
    const res = await svc.call('GET', route);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    await expectProblem(res, 401, 'unauthorized');
  });

  it('answers 401 for a token signed with another key', async () => {
    const forged = await mintToken({ secret: 'another-secret-that-is-also-32-bytes-long', sub: 'alice', role: 'admin' });
    const res = await svc.call('GET', route, { token: forged });
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
    await expectProblem(res, 401, 'unauthorized');
  });

  it('answers 401 token_expired for an expired token', async () => {
    const expired = await new SignJWT({ role: 'user' }).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(key);
    await expectProblem(await svc.call('GET', route, { token: expired }), 401, 'token_expired');
  });

  it('requires exp, pins HS256 and refuses unsigned tokens', async () => {
    const noExp = await new SignJWT({ role: 'user' }).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').sign(key);
    await expectProblem(await svc.call('GET', route, { token: noExp }), 401, 'unauthorized');
    const hs512 = await new SignJWT({ role: 'user' }).setProtectedHeader({ alg: 'HS512' }).setSubject('alice').setExpirationTime('1h').sign(new Uint8Array(64).fill(7));
    await expectProblem(await svc.call('GET', route, { token: hs512 }), 401, 'unauthorized');
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const claims = Buffer.from(JSON.stringify({ sub: 'alice', role: 'admin', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    await expectProblem(await svc.call('GET', route, { token: `${header}.${claims}.` }), 401, 'unauthorized');
  });

  it('refuses a token without sub or with an unknown role, and treats a missing role as user', async () => {
    const noSub = await new SignJWT({ role: 'user' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
    await expectProblem(await svc.call('GET', route, { token: noSub }), 401, 'unauthorized');
    const superuser = await new SignJWT({ role: 'root' }).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime('1h').sign(key);
    await expectProblem(await svc.call('GET', route, { token: superuser }), 401, 'unauthorized');
    const noRole = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('dave').setExpirationTime('1h').sign(key);
    expect((await svc.call('GET', route, { token: noRole })).status).toBe(200);
    await expectProblem(await svc.call('PUT', '/api/v1/inventory/SKU-Z', { token: noRole, body: { name: 'z', price_cents: 1, available: 1 } }), 403, 'forbidden');
  });

  it('checks issuer and audience when they are configured', async () => {
    const strict = await startTestService({ JWT_ISSUER: 'https://issuer.example', JWT_AUDIENCE: 'ordersaga' });
    try {
      const good = await strict.token('alice');
      expect((await strict.call('GET', route, { token: good })).status).toBe(200);
      const wrongAud = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user', issuer: 'https://issuer.example', audience: 'other' });
      await expectProblem(await strict.call('GET', route, { token: wrongAud }), 401, 'unauthorized');
      const noIss = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user', audience: 'ordersaga' });
      await expectProblem(await strict.call('GET', route, { token: noIss }), 401, 'unauthorized');
    } finally {
      await strict.stop();
    }
  });
});

describe('bad input never yields a 500', () => {
  const post = (body: unknown, headers?: Record<string, string>) =>
    svc.call('POST', '/api/v1/pipeline/orders', { token: alice, body, ...(headers ? { headers } : {}) });

  it('answers 400 malformed_json for a body that is not JSON', async () => {
    await expectProblem(await post('{"items": [', { 'Content-Type': 'application/json' }), 400, 'malformed_json');
  });

  it('answers 415 when the body is not sent as JSON', async () => {
    await expectProblem(await post('items=1', { 'Content-Type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
  });

  it('answers 400 validation_failed listing every problem by path', async () => {
    const body = {
      items: [
        { sku: 'SKU-A', quantity: 0 },
        { sku: 'SKU-A', quantity: 1, price_cents: 1 },
      ],
      payment: {},
      shipping: { name: 'A', line1: 'B', city: 'C', postal_code: 'D', country: 'germany' },
    };
    const problem = await expectProblem(await post(body), 400, 'validation_failed');
    const paths = problem.errors.map((e: any) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['/items/0/quantity', '/items/1', '/payment/token', '/shipping/country']));
    for (const e of problem.errors) expect(e.message).toEqual(expect.any(String));
  });

  it('rejects duplicate SKUs, too many items, and quantities over 1000', async () => {
    const dup = await expectProblem(await post(orderBody({ items: [{ sku: 'SKU-A', quantity: 1 }, { sku: 'SKU-A', quantity: 2 }] })), 400, 'validation_failed');
    expect(dup.errors).toEqual([{ path: '/items/1/sku', message: expect.stringContaining('duplicate SKU') }]);
    const many = Array.from({ length: 101 }, (_, i) => ({ sku: `S${i}`, quantity: 1 }));
    await expectProblem(await post(orderBody({ items: many })), 400, 'validation_failed');
    await expectProblem(await post(orderBody({ items: [{ sku: 'SKU-A', quantity: 1001 }] })), 400, 'validation_failed');
    await expectProblem(await post(orderBody({ items: [] })), 400, 'validation_failed');
  });

  it('answers 400 for JSON that is not an object at all', async () => {
    for (const body of ['null', '[]', '"x"', '42']) await expectProblem(await post(body), 400, 'validation_failed');
  });

  it('answers 413 for a body over 64 KiB', async () => {
    const huge = JSON.stringify({ ...orderBody(), padding: 'x'.repeat(70 * 1024) });
    await expectProblem(await post(huge), 413, 'payload_too_large');
  });

  it('answers 404 problem+json for an unknown route', async () => {
    await expectProblem(await svc.call('GET', '/nope'), 404, 'not_found');
    await expectProblem(await svc.call('GET', '/api/v1/nothing-here', { token: alice }), 404, 'not_found');
  });

  it('echoes a client X-Request-Id and generates one when absent', async () => {
    const given = await svc.call('GET', '/healthz', { headers: { 'X-Request-Id': 'req-abc-123' } });
    expect(given.headers.get('x-request-id')).toBe('req-abc-123');
    const generated = await svc.call('GET', '/healthz');
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('rate limiting', () => {
  it('limits each user with a token bucket, answering 429 with Retry-After, without touching other users', async () => {
    const limited = await startTestService({ RATE_LIMIT_PER_SEC: '1', RATE_LIMIT_BURST: '3' });
    try {
      const [erin, frank] = await Promise.all([limited.token('erin'), limited.token('frank')]);
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await limited.call('GET', '/api/v1/inventory', { token: erin })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const refused = await limited.call('GET', '/api/v1/inventory', { token: erin });
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.headers.get('ratelimit-limit')).toBe('3');
      await expectProblem(refused, 429, 'rate_limited');
      const ok = await limited.call('GET', '/api/v1/inventory', { token: frank });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('ratelimit-remaining')).toBe('2');
    } finally {
      await limited.stop();
    }
  });
});
