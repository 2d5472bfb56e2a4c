import { createRequire } from 'node:module';
import { OpenAPIHono } from '@hono/zod-openapi';
import { requestId } from 'hono/request-id';
import type { Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import { createServiceMetrics, type ServiceMetrics } from '../metrics/service.metrics.js';
import type { OrderEngine } from '../orders/order.engine.js';
import type { AuditStore, CatalogStore, IdempotencyStore } from '../store/store.ports.js';
import { auditLog } from './audit.middleware.js';
import { auditRoutes } from './audit.routes.js';
import { bearerAuth, type BearerAuthOptions } from './auth.middleware.js';
import { bodyLimit } from './body.middleware.js';
import { addressKey, clientAddress } from './client-address.middleware.js';
import { cors } from './cors.middleware.js';
import { docsRoutes } from './docs.routes.js';
import { createIdempotency, type IdempotencyOptions } from './idempotency.js';
import { inventoryRoutes } from './inventory.routes.js';
import { registerSecurity } from './openapi.js';
import { operationsRoutes, type ReadinessCheck } from './operations.routes.js';
import { orderEventsRoutes } from './order-events.routes.js';
import type { OrderStreams } from './order-streams.js';
import { ordersRoutes } from './orders.routes.js';
import { problemFor, problemResponse, toProblem } from './problem.js';
import { rateLimit, type RateLimitOptions } from './rate-limit.middleware.js';
import type { RateLimitStore } from './rate-limit.store.js';
import { requestLog } from './request-log.middleware.js';
import { securityHeaders } from './security-headers.middleware.js';
import { uiRoutes } from './ui.routes.js';

export interface AppDeps {
  engine: OrderEngine;
  catalog: CatalogStore;
  logger: Logger;
  auth: BearerAuthOptions;
  /** Per user after authentication; `perAddress`, per client address before it (off when absent). */
  rateLimit: RateLimitOptions & { perAddress?: RateLimitOptions; store?: RateLimitStore };
  /** Proxies whose X-Forwarded-For is believed (see client-address.middleware.ts). */
  trustProxy?: readonly string[];
  /** Origins allowed to call the API from a browser; empty or absent: CORS off. */
  corsOrigins?: readonly string[];
  syncWaitMs: number;
  idempotency: IdempotencyOptions;
  /** Where admin actions are recorded, and `GET /api/v1/audit` reads them. */
  audit: AuditStore;
  maxBodyBytes?: number;
  /** This instance's metrics (main.ts feeds them); absent: HTTP metrics only, in a registry of the app's own. */
  metrics?: ServiceMetrics;
  /** With a token, /metrics requires `Authorization: Bearer <token>` (METRICS_TOKEN). */
  metricsToken?: string | undefined;
  /** What /metrics serves instead of `metrics.registry` (an order loop: every loop's, from the primary). */
  metricsExposition?: Pick<Registry, 'metrics' | 'contentType'>;
  /** /readyz checks by name besides the engine's own (`store`, `pool`: main.ts). */
  readiness?: Record<string, ReadinessCheck>;
  /** Open event streams and their limits (main.ts closes them on shutdown); absent, a default set. */
  streams?: OrderStreams;
}

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/**
 * The whole HTTP API as a Hono app; `main.ts` serves it, tests call `app.request()`. Every route
 * is declared with `createRoute` in an OpenAPIHono sub-app, so /openapi.json describes them all.
 */
export function createApp(deps: AppDeps): OpenAPIHono {
  const app = new OpenAPIHono();
  const metrics = deps.metrics ?? createServiceMetrics({ defaultMetrics: false });
  app.use(metrics.http);
  app.use(requestId({ limitLength: 128 }));
  app.use(requestLog(deps.logger));
  app.use(securityHeaders());
  const corsHandler = cors({ origins: deps.corsOrigins ?? [] });
  if (corsHandler) app.use(corsHandler);
  app.use(clientAddress({ trustProxy: deps.trustProxy ?? [] }));

  registerSecurity(app);
  app.route(
    '/',
    operationsRoutes({
      readiness: { ...deps.readiness, engine: () => (deps.engine.accepting ? null : 'draining') },
      metrics: deps.metricsExposition ?? metrics.registry,
      metricsToken: deps.metricsToken,
      documentOf: () => app,
      version,
    }),
  );
  app.route('/', docsRoutes());

  const { perAddress, store, ...perUser } = deps.rateLimit;
  const api = new OpenAPIHono();
  // Before authentication: a flood of bad tokens from one address is refused before any is verified.
  if (perAddress) api.use(rateLimit({ name: 'ip', ...perAddress, keyOf: (c) => addressKey(c.get('clientAddress')), logger: deps.logger, ...(store ? { store } : {}) }));
  api.use(bodyLimit({ maxBytes: deps.maxBodyBytes ?? 64 * 1024 }));
  api.use(bearerAuth(deps.auth));
  api.use(rateLimit({ name: 'user', perSecond: perUser.perSecond, burst: perUser.burst, keyOf: (c) => c.get('user').id, logger: deps.logger, ...(store ? { store } : {}) }));
  api.use(auditLog({ audit: deps.audit, logger: deps.logger }));
  // While shutting down, reads still work; anything that would change an order waits for the next start.
  api.use(async function rejectWhileDraining(c, next) {
    if (c.req.method === 'GET' || deps.engine.accepting) return next();
    return problemResponse(c, problemFor('shutting_down', 'The service is shutting down; retry in a few seconds.'), { 'Retry-After': '5' });
  });
  api.route('/pipeline', ordersRoutes({ ...deps, idempotent: createIdempotency(deps.idempotency) }));
  api.route('/inventory', inventoryRoutes(deps));
  api.route('/audit', auditRoutes(deps));
  api.route('/pipeline', orderEventsRoutes(deps));
  app.route('/api/v1', api);
  app.route('/ui', uiRoutes());

  app.notFound((c) => problemResponse(c, problemFor('not_found', `No route for ${c.req.method} ${c.req.path}.`)));
  app.onError((err, c) => {
    const problem = toProblem(err);
    if (problem.status >= 500) deps.logger.error({ err, request_id: c.get('requestId') }, 'unhandled error');
    // Overload passes quickly: tell the client when to come back, as for a shutdown.
    return problemResponse(c, problem, problem.code === 'overloaded' ? { 'Retry-After': '1' } : {});
  });
  return app;
}
