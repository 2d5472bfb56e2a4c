import { createConfig, lintFromString } from '@redocly/openapi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEM_STATUS } from '../../src/http/problem.js';
import { checkResponse, openApiDocument } from '../support/openapi.js';
import { startTestService, type TestService } from '../support/service.js';

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(() => svc.stop());

const problemJson = (body: unknown, status: number, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/problem+json', ...headers } });

describe('GET /openapi.json', () => {
  it('serves an OpenAPI 3.1 document that the redocly recommended ruleset passes with no errors or warnings', async () => {
    const res = await svc.call('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const doc = await res.json();
    expect(doc.openapi).toBe('3.1.0');
    const config = await createConfig({
      extends: ['recommended'],
      rules: {
        // /healthz, /readyz, /openapi.json and /docs take no input and need no token: there is no client error for them to answer.
        'operation-4xx-response': 'off',
        // A private package (package.json "private": true, no "license"): there is no licence to name.
        'info-license': 'off',
      },
    });
    const found = await lintFromString({ source: JSON.stringify(doc), absoluteRef: 'openapi.json', config });
    expect(found.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual([]);
  });

  it('documents every route the app serves, with the bearer scheme on every /api/v1 operation', async () => {
    const doc = await openApiDocument();
    const served = new Set(
      svc.app.routes
        .filter((r) => r.method !== 'ALL')
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([^/]+)/g, '{$1}')}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops as object).map((m) => `${m} ${path}`)));
    expect([...served].sort()).toEqual([...documented].sort());
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith('/api/v1/')) continue;
      for (const op of Object.values(ops as Record<string, { security: unknown }>)) expect(op.security).toEqual([{ bearerAuth: [] }]);
    }
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  });

  it('gives each problem response the codes of its status only, as PROBLEM_STATUS has them', async () => {
    const doc = await openApiDocument();
    let checked = 0;
    for (const ops of Object.values(doc.paths)) {
      for (const op of Object.values(ops as Record<string, { responses: Record<string, any> }>)) {
        for (const [status, response] of Object.entries(op.responses)) {
          const schema = response.content?.['application/problem+json']?.schema;
          if (!schema) continue;
          for (const code of schema.properties.code.enum) expect([code, PROBLEM_STATUS[code as keyof typeof PROBLEM_STATUS]]).toEqual([code, Number(status)]);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('documents the headers a client acts on: Idempotency-Key in, Location, Idempotent-Replayed, Retry-After and RateLimit-* out', async () => {
    const doc = await openApiDocument();
    const create = doc.paths['/api/v1/pipeline/orders'].post;
    expect(create.parameters).toContainEqual(expect.objectContaining({ name: 'Idempotency-Key', in: 'header', required: false }));
    expect(create.responses['201'].headers).toMatchObject({ Location: { required: true }, 'Idempotent-Replayed': {}, 'RateLimit-Remaining': {} });
    expect(create.responses['503'].headers['Retry-After']).toMatchObject({ required: false });
    expect(create.responses['429'].headers['Retry-After']).toMatchObject({ required: true });
    expect(doc.paths['/api/v1/inventory'].get.responses['503'].headers['Retry-After']).toBeDefined();
    expect(create.responses['401'].headers['WWW-Authenticate']).toMatchObject({ required: true });
    expect(doc.paths['/api/v1/pipeline/orders/{id}/status'].get.parameters).toContainEqual(expect.objectContaining({ name: 'id', in: 'path', required: true }));
    expect(doc.paths['/api/v1/pipeline/orders'].get.parameters.map((p: { name: string }) => p.name)).toEqual(['status', 'limit', 'cursor']);
  });
});

describe('the response check the HTTP tests run on every answer', () => {
  const view = async () => (await svc.call('GET', '/healthz')).json();

  it('passes what the service answers', async () => {
    expect(await view()).toEqual({ status: 'ok' });
    await expect(checkResponse(problemJson({ type: 'urn:ordersaga:problem:not-found', title: 'Not found', status: 404, detail: 'x', code: 'not_found', instance: '/nowhere' }, 404), 'GET', '/nowhere')).resolves.toBeUndefined();
  });

  it('fails an undocumented status, a body off the schema, a missing required header and an undocumented one', async () => {
    await expect(checkResponse(new Response('{"status":"ok"}', { status: 201, headers: { 'Content-Type': 'application/json' } }), 'GET', '/healthz')).rejects.toThrow(/status not documented/);
    await expect(checkResponse(new Response('{"status":"fine"}', { status: 200, headers: { 'Content-Type': 'application/json' } }), 'GET', '/healthz')).rejects.toThrow(/does not match the schema/);
    await expect(checkResponse(new Response('{"status":"ok"}', { status: 200, headers: { 'Content-Type': 'text/plain' } }), 'GET', '/healthz')).rejects.toThrow(/content type text\/plain not documented/);
    const unauthorized = { type: 'urn:ordersaga:problem:unauthorized', title: 'Authentication required', status: 401, detail: 'x', code: 'unauthorized', instance: '/api/v1/inventory' };
    await expect(checkResponse(problemJson(unauthorized, 401), 'GET', '/api/v1/inventory')).rejects.toThrow(/required header WWW-Authenticate missing/);
    await expect(checkResponse(problemJson(unauthorized, 401, { 'WWW-Authenticate': 'Bearer', Location: '/x' }), 'GET', '/api/v1/inventory')).rejects.toThrow(/header location sent but not documented/);
    // A code of another status, or one the route does not answer with.
    await expect(checkResponse(problemJson({ ...unauthorized, code: 'forbidden' }, 401, { 'WWW-Authenticate': 'Bearer' }), 'GET', '/api/v1/inventory')).rejects.toThrow(/does not match the schema/);
    await expect(checkResponse(problemJson({ ...unauthorized, status: 409, code: 'invalid_transition', type: 'urn:ordersaga:problem:invalid-transition' }, 409), 'GET', '/api/v1/inventory')).rejects.toThrow(/status not documented/);
    // An unknown path may only answer a problem whose code goes with its status.
    await expect(checkResponse(problemJson({ ...unauthorized, status: 404 }, 404), 'GET', '/nowhere')).rejects.toThrow(/does not go with 404/);
  });
});
