import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { OrderError } from '../domain/errors.js';

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
    'vendor/dagre.min.js': asset(join(dirname(require.resolve('@dagrejs/dagre')), 'dagre.min.js'), 'text/javascript; charset=utf-8'),
  };
}

const pageRoute = createRoute({
  method: 'get',
  path: '/',
  summary: 'The operator and customer page',
  description: 'Sign in by pasting a token; orders (live), an order’s stages and machine diagram, cancel and retry, and the inventory.',
  responses: { 200: { description: 'The page', content: { 'text/html': { schema: z.string() } } } },
});

export function uiRoutes() {
  const assets = loadAssets();
  const page = readFileSync(join(ROOT, 'src', 'ui', 'index.html'), 'utf8');
  const routes = new OpenAPIHono();

  // Revalidated on each load: a redeploy is picked up at once, and the files are small.
  const cache = { 'Cache-Control': 'no-cache' };
  routes.openapi(pageRoute, (c) => c.html(page, 200, cache));
  routes.get('/:file{.+}', (c) => {
    const file = assets[c.req.param('file')];
    if (!file) throw new OrderError('not_found', `No file ${c.req.path}.`);
    return c.body(file.body, 200, { 'Content-Type': file.type, ...cache });
  });
  return routes;
}
