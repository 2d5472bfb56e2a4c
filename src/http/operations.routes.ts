import { createHash, timingSafeEqual } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Registry } from 'prom-client';
import { documented, json, openApiDocument, problems, readinessChecks, responses } from './openapi.js';
import { problemFor, problemResponse } from './problem.js';

/** One readiness check: null when fine, else a short reason (`draining`, `closed`, the store's error). */
export type ReadinessCheck = () => Promise<string | null> | string | null;

export interface OperationsDeps {
  /** By name (`store`, `pool`, `engine`); every one must pass for 200. */
  readiness: Record<string, ReadinessCheck>;
  /** The exposition /metrics serves: this process's registry, or (order loops) the whole service's. */
  metrics: Pick<Registry, 'metrics' | 'contentType'>;
  /** With a token, /metrics requires `Authorization: Bearer <token>`. */
  metricsToken?: string | undefined;
  /** The app whose document /openapi.json serves (the root app, once everything is mounted). */
  documentOf: () => OpenAPIHono<any>;
  version: string;
}

const healthz = createRoute({
  method: 'get',
  path: '/healthz',
  operationId: 'healthz',
  tags: ['operations'],
  security: [],
  summary: 'Liveness: the process answers',
  responses: { 200: json('Alive.', z.object({ status: z.literal('ok') })) },
});

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  operationId: 'readyz',
  tags: ['operations'],
  security: [],
  summary: 'Readiness: the store takes writes, the inventory pool runs, the service is not draining',
  responses: responses(
    { 200: json('Ready.', z.object({ status: z.literal('ready'), checks: readinessChecks })) },
    problems('not_ready'),
  ),
});

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  operationId: 'metrics',
  tags: ['operations'],
  summary: 'Prometheus metrics of this instance',
  description: 'Open unless `METRICS_TOKEN` is set; then it needs `Authorization: Bearer <METRICS_TOKEN>`.',
  security: [{}, { bearerAuth: [] }],
  responses: {
    200: { description: 'The Prometheus text exposition format 0.0.4.', content: { 'text/plain': { schema: { type: 'string' } } } },
    ...problems('unauthorized', 'internal_error'),
  },
});

const openapiRoute = createRoute({
  method: 'get',
  path: '/openapi.json',
  operationId: 'openapiDocument',
  tags: ['operations'],
  security: [],
  summary: 'This document',
  responses: { 200: { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } } },
});

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Whether `header` is `Bearer <token>`, compared in constant time (digests, so lengths match too). */
function bearerMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer ([^\s]+)$/i.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** `/healthz`, `/readyz`, `/metrics`, `/openapi.json`: outside /api/v1, no user token, no rate limit. */
export function operationsRoutes(deps: OperationsDeps): OpenAPIHono {
  const routes = new OpenAPIHono();

  documented(routes, healthz, (c) => c.json({ status: 'ok' as const }));

  documented(routes, readyz, async (c) => {
    const results = await Promise.all(
      Object.entries(deps.readiness).map(async ([name, check]) => {
        try {
          return [name, (await check()) ?? 'ok'] as const;
        } catch (err) {
          return [name, (err as Error).message || 'failed'] as const;
        }
      }),
    );
    const checks = Object.fromEntries(results);
    const failing = results.filter(([, r]) => r !== 'ok');
    if (failing.length === 0) return c.json({ status: 'ready' as const, checks });
    return problemResponse(c, problemFor('not_ready', `Not ready: ${failing.map(([n, r]) => `${n}: ${r}`).join('; ')}.`, { checks }));
  });

  documented(routes, metricsRoute, async (c) => {
    if (deps.metricsToken !== undefined && !bearerMatches(c.req.header('Authorization'), deps.metricsToken)) {
      return problemResponse(c, problemFor('unauthorized', 'Send "Authorization: Bearer <METRICS_TOKEN>".'), { 'WWW-Authenticate': 'Bearer realm="metrics"' });
    }
    const body = await deps.metrics.metrics();
    return c.body(body, 200, { 'Content-Type': deps.metrics.contentType, 'Cache-Control': 'no-store' });
  });

  // Built at the first request, when every sub-app is mounted, then kept.
  let document: string | undefined;
  documented(routes, openapiRoute, (c) => {
    document ??= JSON.stringify(openApiDocument(deps.documentOf(), deps.version));
    return c.body(document, 200, { 'Content-Type': 'application/json; charset=UTF-8' });
  });

  return routes;
}

