import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { documented, problems } from './openapi.js';
import { problemFor, problemResponse } from './problem.js';

/*
 * GET /docs: Swagger UI from the swagger-ui-dist package, served by the service itself (no CDN),
 * reading /openapi.json. "Try it" calls this origin (the document's server is relative) with the
 * token given to "Authorize". The page runs only scripts and styles from /docs/…, which the
 * same-origin CSP that security-headers.middleware.ts gives /docs allows: no inline script.
 */

/** The swagger-ui-dist files the page uses, and their types. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ordersaga API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

// validatorUrl null: no call to the online validator; the token stays in this tab's storage.
const INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
  validatorUrl: null,
  persistAuthorization: true,
  tryItOutEnabled: true,
});
`;

/** Where swagger-ui-dist's files are (its own `getAbsoluteFSPath()`). */
function assetDir(): string {
  const require = createRequire(import.meta.url);
  return (require('swagger-ui-dist') as { getAbsoluteFSPath(): string }).getAbsoluteFSPath();
}

const html = 'text/html; charset=utf-8';

const page = createRoute({
  method: 'get',
  path: '/docs',
  operationId: 'docsPage',
  tags: ['operations'],
  security: [],
  summary: 'Interactive API documentation (Swagger UI)',
  responses: { 200: { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } } },
});

const asset = createRoute({
  method: 'get',
  path: '/docs/{file}',
  operationId: 'docsAsset',
  tags: ['operations'],
  security: [],
  summary: "The documentation page's scripts, styles and icons",
  request: { params: z.object({ file: z.string() }) },
  responses: {
    200: {
      description: 'The file.',
      content: {
        'text/javascript': { schema: { type: 'string' } },
        'text/css': { schema: { type: 'string' } },
        'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } },
      },
    },
    ...problems('not_found', 'internal_error'),
  },
});

export function docsRoutes(): OpenAPIHono {
  const routes = new OpenAPIHono();
  const dir = assetDir();
  const cache = new Map<string, Uint8Array>();

  documented(routes, page, (c) => c.body(PAGE, 200, { 'Content-Type': html }));

  documented(routes, asset, async (c) => {
    const file = c.req.param('file')!;
    if (file === 'init.js') return c.body(INIT, 200, { 'Content-Type': 'text/javascript; charset=utf-8' });
    const type = ASSETS[file];
    if (!type) return problemResponse(c, problemFor('not_found', `No file ${file} under /docs.`));
    let bytes = cache.get(file);
    if (!bytes) cache.set(file, (bytes = new Uint8Array(await readFile(join(dir, file)))));
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { 'Content-Type': type, 'Cache-Control': 'public, max-age=3600' });
  });

  return routes;
}
