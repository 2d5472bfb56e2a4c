import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';

/*
 * GET /docs at the HTTP level: the page refers only to files the service serves itself (no CDN),
 * each answers 200 with its type, and the page's policy lets exactly those load. (Driving the
 * page in a browser is the /ui suite's.)
 */

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(() => svc.stop());

const TYPES: Record<string, RegExp> = { '.js': /^text\/javascript/, '.css': /^text\/css/, '.png': /^image\/png$/ };

describe('GET /docs', () => {
  it('serves Swagger UI whose scripts, styles and icons all come from this service', async () => {
    const res = await svc.call('GET', '/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const ref of refs) {
      expect(ref).toMatch(/^\/docs\/[\w.-]+$/);
      const asset = await svc.call('GET', ref);
      expect(asset.status, ref).toBe(200);
      expect(asset.headers.get('content-type'), ref).toMatch(TYPES[ref.slice(ref.lastIndexOf('.'))]!);
      expect((await asset.arrayBuffer()).byteLength, ref).toBeGreaterThan(100);
    }
    // No inline script: the page's CSP allows scripts from this origin only.
    expect(html).not.toMatch(/<script>(?!<\/script>)|<script(?![^>]*\bsrc=)[^>]*>/);
  });

  it('points Swagger UI at /openapi.json with no online validator, and "try it" at this origin', async () => {
    const init = await (await svc.call('GET', '/docs/init.js')).text();
    expect(init).toMatch(/url: '\/openapi\.json'/);
    expect(init).toMatch(/validatorUrl: null/);
    const doc = await (await svc.call('GET', '/openapi.json')).json();
    expect(doc.servers).toEqual([{ url: '/' }]);
    expect(doc.components.securitySchemes.bearerAuth.scheme).toBe('bearer');
  });

  it("gives the page and its files a same-origin policy: own scripts and styles, API calls to this origin, nothing else", async () => {
    for (const path of ['/docs', '/docs/swagger-ui-bundle.js']) {
      const csp = (await svc.call('GET', path)).headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("connect-src 'self'");
      expect(csp).not.toMatch(/https?:|unsafe-eval/);
    }
  });

  it('answers 404 not_found for a file it does not serve, package files included', async () => {
    for (const path of ['/docs/index.html', '/docs/package.json', '/docs/..%2Fpackage.json', '/docs/swagger-ui.js.map']) {
      const res = await svc.call('GET', path);
      expect(res.status, path).toBe(404);
      expect((await res.json()).code).toBe('not_found');
    }
  });
});
