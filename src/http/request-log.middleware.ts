import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../logger.js';

/** One line per request with its id, status and duration. */
export function requestLog(logger: Logger): MiddlewareHandler {
  return async function requestLog(c, next) {
    if (!logger.isLevelEnabled('info')) return next();
    const started = performance.now();
    await next();
    logger.info(
      {
        request_id: c.get('requestId'),
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        user_id: c.get('user')?.id,
      },
      'request',
    );
  };
}
