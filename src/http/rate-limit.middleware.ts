import type { MiddlewareHandler } from 'hono';
import { problemFor, problemResponse } from './problem.js';

export interface RateLimitOptions {
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size: the most requests a quiet user can send at once. */
  burst: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per authenticated user (so it runs after auth). Every answer carries
 * `RateLimit-Limit/Remaining/Reset`; a refusal is a 429 with `Retry-After`.
 */
export function rateLimit({ perSecond, burst, now = Date.now }: RateLimitOptions): MiddlewareHandler {
  const buckets = new Map<string, Bucket>();

  return async function rateLimit(c, next) {
    const t = now();
    const key = c.var.user.id;
    let bucket = buckets.get(key);
    if (!bucket) {
      if (buckets.size >= 10_000) sweep(buckets, t, perSecond, burst);
      bucket = { tokens: burst, at: t };
      buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((t - bucket.at) / 1000) * perSecond);
    bucket.at = t;
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    const untilFull = Math.ceil((burst - bucket.tokens) / perSecond);
    const headers = {
      'RateLimit-Limit': String(burst),
      'RateLimit-Remaining': String(Math.floor(bucket.tokens)),
      'RateLimit-Reset': String(untilFull),
    };
    if (!allowed) {
      const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
      return problemResponse(c, problemFor('rate_limited', `Rate limit exceeded; retry in ${retryAfter}s.`), { ...headers, 'Retry-After': String(retryAfter) });
    }
    await next();
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value);
  };
}

/** Forget users whose bucket has refilled: they are indistinguishable from new ones. */
function sweep(buckets: Map<string, Bucket>, t: number, perSecond: number, burst: number): void {
  for (const [key, b] of buckets) if (b.tokens + ((t - b.at) / 1000) * perSecond >= burst) buckets.delete(key);
}
