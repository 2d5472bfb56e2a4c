import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';

/* Secure response headers (hono/secure-headers) and CORS (hono/cors, off unless CORS_ORIGINS lists origins). */

const JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

describe('secure response headers', () => {
  let svc: TestService;
  let alice: string;
  beforeAll(async () => {
    svc = await startTestService();
    alice = await svc.token('alice');
  });
  afterAll(() => svc.stop());

  it('puts the JSON policy on every JSON answer, problems included, and no-store on the API', async () => {
    const answers = {
      health: await svc.call('GET', '/healthz'),
      inventory: await svc.call('GET', '/api/v1/inventory', { token: alice }),
      unauthorized: await svc.call('GET', '/api/v1/inventory'),
      notFound: await svc.call('GET', '/nowhere'),
    };
    expect(answers.inventory.status).toBe(200);
    expect(answers.unauthorized.status).toBe(401);
    for (const [name, res] of Object.entries(answers)) {
      const h = res.headers;
      expect({ name, csp: h.get('content-security-policy') }).toEqual({ name, csp: JSON_CSP });
      expect(h.get('x-content-type-options')).toBe('nosniff');
      expect(h.get('x-frame-options')).toBe('DENY');
      expect(h.get('referrer-policy')).toBe('no-referrer');
      expect(h.get('cross-origin-resource-policy')).toBe('same-origin');
      expect(h.get('strict-transport-security')).toMatch(/^max-age=\d+/);
      expect(h.get('x-powered-by')).toBeNull();
    }
    expect(answers.inventory.headers.get('cache-control')).toBe('no-store');
    expect(answers.unauthorized.headers.get('cache-control')).toBe('no-store');
    expect(answers.health.headers.get('cache-control')).toBeNull();
  });

  it('gives pages under /docs and /ui a same-origin policy that lets them load their own scripts and styles', async () => {
    for (const path of ['/docs', '/docs/index.html', '/ui/app.js']) {
      const csp = (await svc.call('GET', path)).headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self' 'unsafe-inline'");
      expect(csp).toContain("connect-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('*');
    }
    // A path that merely starts with the same letters is not a page.
    expect((await svc.call('GET', '/docsx')).headers.get('content-security-policy')).toBe(JSON_CSP);
  });

  it('sends no CORS headers by default', async () => {
    const res = await svc.call('GET', '/api/v1/inventory', { token: alice, headers: { Origin: 'https://shop.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const preflight = await svc.call('OPTIONS', '/api/v1/pipeline/orders', {
      headers: { Origin: 'https://shop.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.status).not.toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(preflight.headers.get('access-control-allow-methods')).toBeNull();
  });
});

describe('CORS with CORS_ORIGINS', () => {
  let svc: TestService;
  let alice: string;
  beforeAll(async () => {
    svc = await startTestService({ CORS_ORIGINS: 'https://shop.example, https://admin.example:8443' });
    alice = await svc.token('alice');
  });
  afterAll(() => svc.stop());

  it('lets a listed origin read answers and the headers it needs, and nobody else', async () => {
    const res = await svc.call('GET', '/api/v1/inventory', { token: alice, headers: { Origin: 'https://admin.example:8443' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://admin.example:8443');
    expect(res.headers.get('vary')).toContain('Origin');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const exposed = res.headers.get('access-control-expose-headers')!.split(',');
    expect(exposed).toEqual(expect.arrayContaining(['Location', 'Retry-After', 'RateLimit-Remaining', 'X-Request-Id']));

    for (const origin of ['https://evil.example', 'https://shop.example.evil.example', 'http://shop.example', 'null']) {
      const other = await svc.call('GET', '/api/v1/inventory', { token: alice, headers: { Origin: origin } });
      expect({ origin, allowed: other.headers.get('access-control-allow-origin') }).toEqual({ origin, allowed: null });
    }
  });

  it('answers a preflight from a listed origin before authentication', async () => {
    const preflight = await svc.call('OPTIONS', '/api/v1/pipeline/orders', {
      headers: {
        Origin: 'https://shop.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type, idempotency-key',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(preflight.headers.get('access-control-allow-headers')!.split(',')).toEqual(expect.arrayContaining(['Authorization', 'Content-Type', 'Idempotency-Key']));
    expect(preflight.headers.get('access-control-max-age')).toBe('600');
    const refused = await svc.call('OPTIONS', '/api/v1/pipeline/orders', { headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
  });
});
