import type { MiddlewareHandler } from 'hono';
import { secureHeaders } from 'hono/secure-headers';

type SecureHeadersOptions = NonNullable<Parameters<typeof secureHeaders>[0]>;

/** Paths that will serve HTML pages (API docs, a small UI) rather than JSON. */
export const HTML_PATH_PREFIXES = ['/docs', '/ui'] as const;

const common: Partial<SecureHeadersOptions> = {
  xFrameOptions: 'DENY',
  referrerPolicy: 'no-referrer',
  // Browsers ignore it over plain HTTP; behind a TLS-terminating proxy it pins HTTPS.
  strictTransportSecurity: 'max-age=15552000; includeSubDomains',
  permissionsPolicy: { camera: [], microphone: [], geolocation: [], payment: [], usb: [] },
};

/** JSON never loads anything, is never framed, and is never a page. */
const forJson: Partial<SecureHeadersOptions> = {
  ...common,
  contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
};

/**
 * A page under /docs or /ui may load its own scripts, styles, images and fonts and call the API on
 * this origin (inline styles, as documentation renderers use; no inline scripts, no other origins).
 */
const forHtml: Partial<SecureHeadersOptions> = {
  ...common,
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", 'data:'],
    fontSrc: ["'self'"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
};

const isHtmlPath = (path: string) => HTML_PATH_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`));

/**
 * Hono's secure headers on every answer (nosniff, no framing, no referrer, same-origin resource and
 * opener policy, …) with a Content-Security-Policy that suits what the path serves: `default-src
 * 'none'` for JSON, a same-origin policy for the HTML pages under /docs and /ui. API answers also
 * get `Cache-Control: no-store`: they are per user and must not be kept by shared caches.
 */
export function securityHeaders(): MiddlewareHandler {
  const json = secureHeaders(forJson);
  const html = secureHeaders(forHtml);
  return async function securityHeaders(c, next) {
    const path = c.req.path;
    if (isHtmlPath(path)) return html(c, next);
    await json(c, next);
    if (path.startsWith('/api/') && !c.res.headers.has('Cache-Control')) c.res.headers.set('Cache-Control', 'no-store');
  };
}
