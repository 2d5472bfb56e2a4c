import type { MiddlewareHandler } from 'hono';
import { cors as honoCors } from 'hono/cors';

export interface CorsOptions {
  /** Exact origins (`https://shop.example.com`) allowed to call the API from a browser (`CORS_ORIGINS`). */
  origins: readonly string[];
}

/**
 * CORS through `hono/cors`, for the listed origins only; `null` when the list is empty (CORS off:
 * browsers then keep other origins' pages from reading answers). Tokens travel in `Authorization`,
 * never in cookies, so credentials are not allowed. Preflights are answered before authentication.
 */
export function cors({ origins }: CorsOptions): MiddlewareHandler | null {
  if (origins.length === 0) return null;
  for (const origin of origins) {
    if (origin === '*' || new URL(origin).origin !== origin) throw new Error(`cors: "${origin}" is not an origin such as https://shop.example.com`);
  }
  const allowed = new Set(origins);
  const handler = honoCors({
    origin: (origin) => (allowed.has(origin) ? origin : null),
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id'],
    exposeHeaders: ['Location', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'X-Request-Id', 'Idempotent-Replayed'],
    maxAge: 600,
    credentials: false,
  });
  return async function cors(c, next) {
    return handler(c, next);
  };
}
