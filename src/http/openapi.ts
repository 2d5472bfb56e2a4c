import { OpenAPIHono, z, type RouteConfig } from '@hono/zod-openapi';
import type { Context, Env, Handler, MiddlewareHandler } from 'hono';
import type { SchemaObject } from 'openapi3-ts/oas31';
import { OrderError, STEP_ERROR_CODES, type ErrorCode } from '../domain/errors.js';
import { orderViewSchema } from '../orders/order.view.js';
import { PROBLEM_STATUS, problemType } from './problem.js';

/*
 * The shared pieces of the OpenAPI document: the problem responses (one per status, their `code`
 * enum derived from PROBLEM_STATUS so it cannot drift), the bearer scheme, the response headers,
 * and `documented()`, which registers a route for the document and mounts its handlers. Every
 * sub-app (orders, inventory, events, audit, …) builds its routes with these.
 */

/** The security scheme's name in the document. */
export const BEARER = 'bearerAuth';
export const bearerSecurity = [{ [BEARER]: [] }];

/** A JSON body's schema in the document. `orderViewSchema` is named once and referenced. */
export const OrderViewDoc = orderViewSchema.openapi('OrderView');

/** /readyz: each check, `ok` or why not. */
export const readinessChecks = z.record(z.string(), z.string()).describe('Each check (`store`, `pool`, `engine`): `ok`, or why not.');

const validationErrors = z.array(z.object({ path: z.string(), message: z.string() }));

/** An RFC 9457 problem whose `code` is one of `codes`, all of one status. */
function problemSchema(status: number, codes: readonly ErrorCode[]) {
  return z.strictObject({
    type: z.enum(codes.map(problemType) as [string, ...string[]]).describe('`urn:ordersaga:problem:<code>`'),
    title: z.string(),
    status: z.literal(status),
    detail: z.string(),
    code: z.enum(codes as [ErrorCode, ...ErrorCode[]]).describe('Stable: what a client branches on.'),
    instance: z.string().describe('The request path.'),
    request_id: z.string().optional(),
    ...(codes.includes('validation_failed') ? { errors: validationErrors.optional().describe('Each problem by JSON Pointer (`validation_failed`).') } : {}),
    ...(codes.includes('not_ready') ? { checks: readinessChecks } : {}),
    ...(codes.some(isOrderOutcome) ? { order_id: z.string().optional(), order: OrderViewDoc.optional().describe('The order as it ended (a failed order).') } : {}),
  });
}

/** Codes a synchronous create answers a failed, cancelled or parked order with. */
export const ORDER_OUTCOME_CODES: readonly ErrorCode[] = [...STEP_ERROR_CODES, 'compensation_failed'];
const isOrderOutcome = (code: ErrorCode) => ORDER_OUTCOME_CODES.includes(code);

type HeaderDoc = { description: string; required?: boolean; schema: SchemaObject };
type Headers = Record<string, HeaderDoc>;

const integer: SchemaObject = { type: 'integer', minimum: 0 };
export const HEADERS = {
  location: { Location: { description: "The order's status URL.", required: true, schema: { type: 'string' } } },
  idempotentReplayed: {
    'Idempotent-Replayed': { description: '`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.', schema: { type: 'string', enum: ['true'] } },
  },
  rateLimit: {
    'RateLimit-Limit': { description: 'The burst of the limit with the least left.', schema: integer },
    'RateLimit-Remaining': { description: 'Requests left before a `429`.', schema: integer },
    'RateLimit-Reset': { description: 'Seconds until the quota is whole again.', schema: integer },
  },
  retryAfter: (required: boolean) => ({ 'Retry-After': { description: 'Seconds to wait before trying again.', required, schema: { type: 'integer', minimum: 1 } } }),
  wwwAuthenticate: { 'WWW-Authenticate': { description: '`Bearer …`, with `error="invalid_token"` for a bad token.', required: true, schema: { type: 'string' } } },
} satisfies Record<string, Headers | ((r: boolean) => Headers)>;

/** Headers every answer of a status carries (or may carry) whatever the route. */
function headersForStatus(status: number, codes: readonly ErrorCode[]): Headers {
  if (status === 401) return HEADERS.wwwAuthenticate;
  if (status === 429) return HEADERS.retryAfter(true);
  // Some 503s say when to come back (shutting down, overloaded, keys unavailable); an order that
  // failed does not, and a refusal raised inside the engine may not either.
  if (status === 503 && codes.some((c) => c === 'shutting_down' || c === 'overloaded' || c === 'auth_unavailable' || c === 'streams_unavailable')) return HEADERS.retryAfter(false);
  return {};
}

export const PROBLEM_JSON = 'application/problem+json';

type SchemaDoc = z.ZodType | SchemaObject;
type ResponseDoc = { description: string; headers?: Headers; content?: Record<string, { schema: SchemaDoc }> };
export type Responses = Record<number, ResponseDoc>;

/**
 * The problem responses for `codes`, grouped by the status PROBLEM_STATUS gives each: listing a
 * code is all a route does, so a code's status and the document cannot disagree.
 */
export function problems(...codes: ErrorCode[]): Responses {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = PROBLEM_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Responses = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[status] = {
      description: `Problem: ${list.map((c) => `\`${c}\``).join(', ')}.`,
      headers: headersForStatus(status, list),
      content: { [PROBLEM_JSON]: { schema: problemSchema(status, list) } },
    };
  }
  return responses;
}

/** A JSON answer. */
export function json(description: string, schema: SchemaDoc, headers: Headers = {}): ResponseDoc {
  return { description, headers, content: { 'application/json': { schema } } };
}

/**
 * Merges response maps: a status in both gets one response whose problem `code`s are the union
 * (so route-specific codes and the API-wide ones share a status cleanly).
 */
export function responses(...maps: Responses[]): Responses {
  const codes: ErrorCode[] = [];
  const problemHeaders = new Map<number, Headers>();
  const rest: Responses = {};
  for (const map of maps) {
    for (const [key, doc] of Object.entries(map)) {
      const status = Number(key);
      const problem = doc.content?.[PROBLEM_JSON];
      if (!problem) {
        rest[status] = mergeHeaders(rest[status], doc);
        continue;
      }
      codes.push(...problemCodes(problem.schema));
      problemHeaders.set(status, { ...problemHeaders.get(status), ...doc.headers });
    }
  }
  const merged: Responses = { ...rest, ...problems(...codes) };
  // A route's own problem headers (Location…) join the status's own, which decide `required`.
  for (const [status, headers] of problemHeaders) merged[status] = { ...merged[status]!, headers: { ...headers, ...merged[status]!.headers } };
  return merged;
}

function mergeHeaders(a: ResponseDoc | undefined, b: ResponseDoc): ResponseDoc {
  return a ? { ...a, ...b, headers: { ...a.headers, ...b.headers } } : b;
}

function problemCodes(schema: SchemaDoc): ErrorCode[] {
  const shape = (schema as unknown as z.ZodObject<{ code: z.ZodEnum }>).shape;
  return shape.code.options as ErrorCode[];
}

/** Adds `headers` to every response (e.g. the rate-limit headers under /api/v1). */
export function withHeaders(map: Responses, headers: Headers): Responses {
  return Object.fromEntries(Object.entries(map).map(([status, doc]) => [status, { ...doc, headers: { ...doc.headers, ...headers } }]));
}

/**
 * What any route under /api/v1 may answer besides its own: refusals of the rate limits, the body
 * limit (by Content-Length, any method), authentication, and a bug. `changes`: a route that
 * changes something is also refused while the service drains.
 */
export function apiResponses(own: Responses | Responses[], { changes = false } = {}): Responses {
  const common = problems('rate_limited', 'payload_too_large', 'unauthorized', 'token_expired', 'auth_unavailable', 'internal_error', ...(changes ? (['shutting_down'] as const) : []));
  return withHeaders(responses(...[own].flat(), common), HEADERS.rateLimit);
}

/**
 * Registers `route` in the app's document and mounts `handlers` on it, without the request
 * validators `app.openapi()` would add: the handlers validate with the very schemas the route
 * declares (schemas.ts `validate`, `readJson`), which keeps the body limit, the media-type and
 * JSON checks and every problem `code` exactly as they were.
 */
export function documented<E extends Env>(app: OpenAPIHono<E>, route: RouteConfig, ...handlers: Array<Handler<E> | MiddlewareHandler<E>>): void {
  app.openAPIRegistry.registerPath(route);
  const path = route.path.replaceAll(/\{(.+?)\}/g, ':$1');
  (app.on as (method: string, path: string, ...h: unknown[]) => unknown)(route.method.toUpperCase(), path, ...handlers);
}

/**
 * For sub-apps that use `app.openapi()` and its validators instead: a failed validation becomes
 * the same `validation_failed` problem (errors by JSON Pointer) as `validate()` throws.
 */
export function validationHook(result: { success: boolean; target: string; error?: unknown }, _c: Context): void {
  if (result.success) return;
  const issues = (result.error as z.ZodError).issues;
  const root = result.target === 'json' ? '' : result.target === 'query' ? '?' : `/${result.target}`;
  const errors = issues.map((issue) => ({ path: `${root}/${issue.path.map(String).join('/')}`.replace(/\/$/, '') || '/', message: issue.message }));
  throw new OrderError('validation_failed', `The request is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, { details: { errors } });
}

/** A sub-app whose routes appear in the document; mount it with `app.route()`. */
export function openApiApp<E extends Env = Env>(): OpenAPIHono<E> {
  return new OpenAPIHono<E>({ defaultHook: validationHook as never });
}

/** Registers the bearer scheme on the app that serves the document. */
export function registerSecurity(app: OpenAPIHono<any>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', BEARER, {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A JWT: HS256 with `JWT_SECRET` (`npm run token`), or an identity provider\'s keys. `sub` is the user, `role` `user` or `admin`.',
  });
}

/** The OpenAPI 3.1 document of everything mounted on `app` so far. */
export function openApiDocument(app: OpenAPIHono<any>, version: string) {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: 'ordersaga',
      version,
      description: 'An embedded order service: placement, reservation, payment, fulfilment and notification, undone in reverse when a step fails.',
    },
    // Relative: "try it" in /docs calls the service that served the page.
    servers: [{ url: '/' }],
    tags: [
      { name: 'orders', description: 'The order pipeline.' },
      { name: 'inventory', description: 'The catalog and its stock.' },
      { name: 'operations', description: 'Health, readiness, metrics and this document.' },
    ],
  });
}
