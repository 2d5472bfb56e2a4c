import type { Context, MiddlewareHandler } from 'hono';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from '../logger.js';
import { problemFor, problemResponse } from './problem.js';
import { memoryRateLimitStore, type RateLimitStore } from './rate-limit.store.js';

export interface RateLimitOptions {
  /** Requests per second, sustained. */
  perSecond: number;
  /** The most requests a quiet client can send at once. */
  burst: number;
}

export interface RateLimitMiddlewareOptions extends RateLimitOptions {
  /** Names the counters (and their Redis keys): `ip`, `user`. */
  name: string;
  /** Whose limit a request counts against. */
  keyOf: (c: Context) => string;
  store?: RateLimitStore;
  logger?: Logger;
}

/** The two fixed windows that stand in for a token bucket of `perSecond` and `burst`. */
export function rateLimitWindows({ perSecond, burst }: RateLimitOptions) {
  const sustainedS = perSecond >= 1 ? 1 : Math.ceil(1 / perSecond);
  const sustainedPoints = Math.max(1, Math.min(burst, Math.round(perSecond * sustainedS)));
  const extra = burst - sustainedPoints;
  return {
    sustained: { points: sustainedPoints, durationS: sustainedS },
    burst: extra > 0 ? { points: extra, durationS: Math.max(sustainedS, Math.ceil(burst / perSecond)) } : null,
  };
}

/** A consume that refuses resolves too; only a store failure rejects. */
async function take(limiter: RateLimiterAbstract, key: string): Promise<{ ok: boolean; res: RateLimiterRes }> {
  try {
    return { ok: true, res: await limiter.consume(key) };
  } catch (err) {
    if (err instanceof RateLimiterRes) return { ok: false, res: err };
    throw err;
  }
}

/**
 * A rate limit per key (a client address before authentication, a user after it), counted by
 * rate-limiter-flexible in `store` (memory, or Redis shared by every instance). Two windows make the
 * burst and the rate: `perSecond` requests per second, and once those are spent in a second, an
 * allowance of `burst − perSecond` more that comes back every `burst / perSecond` seconds. So a
 * quiet client may send `burst` at once, and a busy one gets `perSecond` per second plus the
 * allowance (below 2 × `perSecond` on average).
 *
 * Every answer carries `RateLimit-Limit/Remaining/Reset`; when two limits apply, the one with less
 * left wins. A refusal is a 429 problem with `Retry-After`. If the store fails, the request passes
 * (and is logged): a limiter outage must not take the API down.
 */
export function rateLimit(options: RateLimitMiddlewareOptions): MiddlewareHandler {
  const { name, keyOf, logger } = options;
  if (!(options.perSecond > 0) || !Number.isInteger(options.burst) || options.burst < 1) {
    throw new Error(`rateLimit(${name}): perSecond must be > 0 and burst a whole number ≥ 1`);
  }
  const store = options.store ?? memoryRateLimitStore();
  const windows = rateLimitWindows(options);
  const sustained = store.counter(`${name}-rate`, windows.sustained.points, windows.sustained.durationS);
  const burst = windows.burst ? store.counter(`${name}-burst`, windows.burst.points, windows.burst.durationS) : null;
  const limit = String(options.burst);

  return async function rateLimit(c, next) {
    const key = keyOf(c);
    let allowed: boolean;
    let remaining: number;
    let resetMs: number;
    let retryMs = 0;
    try {
      const [rate, burstState] = await Promise.all([take(sustained, key), burst ? burst.get(key) : null]);
      if (rate.ok) {
        allowed = true;
        const burstLeft = burst ? Math.max(0, burst.points - (burstState?.consumedPoints ?? 0)) : 0;
        remaining = rate.res.remainingPoints + burstLeft;
        resetMs = Math.max(rate.res.msBeforeNext, burstState && burstState.consumedPoints > 0 ? burstState.msBeforeNext : 0);
      } else if (burst) {
        const extra = await take(burst, key);
        allowed = extra.ok;
        remaining = extra.res.remainingPoints;
        resetMs = Math.max(rate.res.msBeforeNext, extra.res.msBeforeNext);
        retryMs = Math.min(rate.res.msBeforeNext, extra.res.msBeforeNext);
      } else {
        allowed = false;
        remaining = 0;
        resetMs = retryMs = rate.res.msBeforeNext;
      }
    } catch (err) {
      logger?.error({ err, limit: name }, 'rate limit store failed; letting the request through');
      return next();
    }

    const headers = {
      'RateLimit-Limit': limit,
      'RateLimit-Remaining': String(remaining),
      'RateLimit-Reset': String(Math.max(0, Math.ceil(resetMs / 1000))),
    };
    if (!allowed) {
      const retryAfter = Math.max(1, Math.ceil(retryMs / 1000));
      return problemResponse(c, problemFor('rate_limited', `Rate limit exceeded; retry in ${retryAfter}s.`), { ...headers, 'Retry-After': String(retryAfter) });
    }
    await next();
    // An inner limit that set its headers first and has less left than this one keeps them.
    const inner = c.res.headers.get('RateLimit-Remaining');
    if (inner !== null && Number(inner) <= remaining) return;
    for (const [header, value] of Object.entries(headers)) c.res.headers.set(header, value);
  };
}
