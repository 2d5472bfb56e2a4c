import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { OrderError } from '../domain/errors.js';
import { documented, problems } from './openapi.js';

/*
 * `/ui`: the operator and customer page. Its files are read from the repository (`src/ui/`,
 * `docs/order-machine.json`) and from node_modules (dagre), relative to this module's folder
 * two levels down, which is the same from `src/http/` under tsx and `dist/http/` after
 * `npm run build`; so the build needs to copy nothing. Everything the page loads comes from
 * here: no CDN, and the /ui Content-Security-Policy of security-headers.middleware.ts
 * (same-origin scripts, no inline ones) already fits it.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

interface Asset {
  body: string;
  type: string;
}

function asset(path: string, type: string): Asset {
  return { body: readFileSync(path, 'utf8'), type };
}

/** The page's files, read once when the app is built (a missing file fails the start, not a request). */
function loadAssets(): Record<string, Asset> {
  const ui = join(ROOT, 'src', 'ui');
  return {
    'app.js': asset(join(ui, 'app.js'), 'text/javascript; charset=utf-8'),
    'sse.js': asset(join(ui, 'sse.js'), 'text/javascript; charset=utf-8'),
    'diagram.js': asset(join(ui, 'diagram.js'), 'text/javascript; charset=utf-8'),
    'app.css': asset(join(ui, 'app.css'), 'text/css; charset=utf-8'),
    'order-machine.json': asset(join(ROOT, 'docs', 'order-machine.json'), 'application/json'),
    // The browser build of dagre (a global `dagre`), beside the package's main entry.
    'dagre.min.js': asset(join(dirname(require.resolve('@dagrejs/dagre')), 'dagre.min.js'), 'text/javascript; charset=utf-8'),
  };
}

const pageRoute = createRoute({
  method: 'get',
  path: '/',
  operationId: 'uiPage',
  tags: ['operations'],
  security: [],
  summary: 'The operator and customer page',
  description: 'Sign in by pasting a token; orders (live), an order’s stages and machine diagram, cancel and retry, and the inventory.',
  responses: { 200: { description: 'The page', content: { 'text/html': { schema: z.string() } } } },
});

const fileRoute = createRoute({
  method: 'get',
  path: '/{file}',
  operationId: 'uiAsset',
  tags: ['operations'],
  security: [],
  summary: "The page's scripts, styles, the machine diagram's JSON and dagre",
  request: { params: z.object({ file: z.string() }) },
  responses: {
    200: {
      description: 'The file.',
      content: { 'text/javascript': { schema: z.string() }, 'text/css': { schema: z.string() }, 'application/json': { schema: z.object({}).passthrough() } },
    },
    ...problems('not_found'),
  },
});

export function uiRoutes() {
  const assets = loadAssets();
  const page = readFileSync(join(ROOT, 'src', 'ui', 'index.html'), 'utf8');
  const routes = new OpenAPIHono();

  // Revalidated on each load: a redeploy is picked up at once, and the files are small.
  const cache = { 'Cache-Control': 'no-cache' };
  documented(routes, pageRoute, (c) => c.html(page, 200, cache));
  documented(routes, fileRoute, (c) => {
    const file = assets[c.req.param('file')!];
    if (!file) throw new OrderError('not_found', `No file ${c.req.path}.`);
    return c.body(file.body, 200, { 'Content-Type': file.type, ...cache });
  });
  return routes;
}
