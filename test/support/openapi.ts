import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { createApp } from '../../src/http/app.js';
import { PROBLEM_STATUS } from '../../src/http/problem.js';
import { createLogger } from '../../src/logger.js';
import { FakeEngine, memoryStores } from './fake-engine.js';

/*
 * Every response an HTTP test receives is checked against /openapi.json: its status must be
 * documented for the operation, its content type among the documented ones, its body valid
 * against the documented schema (JSON Schema 2020-12, which OpenAPI 3.1 uses), documented
 * required headers present, and every documented header's value valid. Headers a client acts on
 * (Location, Retry-After, …) may not appear where the document does not name them. A path the
 * document does not have may only answer a problem with a known code and its status (a 404 of
 * no route, or a refusal of the middleware in front of it, e.g. 401 under /api/v1).
 *
 * `checkResponse(res, method, path)` throws on a mismatch; test/support/service.ts calls it for
 * every `call()`, `checkedFetch` and `checkedRequest` wrap fetch and `app.request`.
 */

// The document as JSON: read by JSON Pointer, not by type.
type Doc = any;

/** Headers clients act on: seen on an answer, they must be documented for it. */
const WATCHED_HEADERS = ['location', 'retry-after', 'idempotent-replayed', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'www-authenticate'];

let cached: Promise<{ doc: Doc; ajv: Ajv2020 }> | undefined;

/** The service's document, from an app in front of fakes (the routes and their docs are the same code). */
export function openApiDocument(): Promise<Doc> {
  return load().then((l) => l.doc);
}

function load(): Promise<{ doc: Doc; ajv: Ajv2020 }> {
  cached ??= (async () => {
    const { catalog, idempotency, audit } = memoryStores();
    const app = createApp({
      audit,
      engine: new FakeEngine(),
      catalog,
      logger: createLogger('silent'),
      auth: { secret: new TextEncoder().encode('document-only-secret-of-32-bytes-or-more') },
      rateLimit: { perSecond: 1000, burst: 1000 },
      syncWaitMs: 10,
      idempotency: { store: idempotency, ttlHours: 24 },
    });
    const doc = await (await app.request('/openapi.json')).json();
    // strict off: the document holds OpenAPI members (`openapi`, `paths`, …) around its schemas.
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ ...(doc as object), $id: 'openapi' });
    return { doc, ajv };
  })();
  return cached;
}

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');
const validators = new Map<string, ValidateFunction>();

function validatorAt(ajv: Ajv2020, ref: string): ValidateFunction {
  let v = validators.get(ref);
  if (!v) validators.set(ref, (v = ajv.compile({ $ref: `openapi#/${ref}` })));
  return v;
}

/** The documented path template `path` falls under; literal templates before ones with parameters. */
function findPath(doc: Doc, path: string): string | undefined {
  const templates = Object.keys(doc.paths).sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
  return templates.find((t) => new RegExp(`^${t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
}

function fail(method: string, path: string, status: number, why: string): never {
  throw new Error(`response not as documented in /openapi.json: ${method} ${path} → ${status}: ${why}`);
}

/** Checks `res` (not consumed: a clone is read) as the answer to `method path`. */
export async function checkResponse(res: Response, method: string, rawPath: string): Promise<void> {
  const { doc, ajv } = await load();
  // A path, or an absolute-form target (`http://host/path`); never resolved against a base, so `//x` stays a path.
  // Dot segments are resolved as the server resolves them (`/inventory/.` is `/inventory/`).
  const target = /^https?:\/\//i.test(rawPath) ? new URL(rawPath).pathname : rawPath.split(/[?#]/)[0]!;
  const path = target.startsWith('//') ? target : new URL(target, 'http://x').pathname;
  const m = method.toUpperCase();
  const status = res.status;
  const bad: (why: string) => never = (why) => fail(m, path, status, why);
  // Read only what is checked: a stream (text/event-stream) may never end.
  const readText = () => (m === 'HEAD' ? Promise.resolve('') : res.clone().text());
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();

  // A CORS preflight is answered by the middleware for any path; it is not an operation.
  if (m === 'OPTIONS' && status === 204) return;

  const template = findPath(doc, path);
  const operation = template ? doc.paths[template][m === 'HEAD' ? 'get' : m.toLowerCase()] : undefined;
  if (!operation) {
    if (type !== 'application/problem+json') bad(`no documented operation, and not a problem (${type || 'no content type'})`);
    if (m === 'HEAD') return;
    const text = await readText();
    let problem: { code?: string; status?: number };
    try {
      problem = JSON.parse(text);
    } catch {
      bad(`no documented operation, and a problem body that is not JSON: ${text.slice(0, 200)}`);
    }
    const expected = PROBLEM_STATUS[problem.code as keyof typeof PROBLEM_STATUS];
    if (expected === undefined || expected !== status || problem.status !== status) bad(`no documented operation, and problem code ${problem.code} does not go with ${status}`);
    return;
  }

  const response = operation.responses[String(status)] ?? operation.responses.default;
  if (!response) bad(`status not documented (documented: ${Object.keys(operation.responses).join(', ')})`);
  const responseRef = pointer('paths', template!, m === 'HEAD' ? 'get' : m.toLowerCase(), 'responses', operation.responses[String(status)] ? String(status) : 'default');

  // Headers: required ones present, documented ones valid, watched ones documented.
  const documentedHeaders = Object.fromEntries(Object.entries(response.headers ?? {}).map(([k, v]) => [k.toLowerCase(), { name: k, ...(v as object) }])) as Record<string, { name: string; required?: boolean; schema?: object }>;
  for (const [lower, header] of Object.entries(documentedHeaders)) {
    const value = res.headers.get(lower);
    if (value === null) {
      if (header.required) bad(`required header ${header.name} missing`);
      continue;
    }
    if (header.schema) {
      const v = validatorAt(ajv, `${responseRef}/${pointer('headers', header.name, 'schema')}`);
      const schemaType = (header.schema as { type?: string }).type;
      const typed = schemaType === 'integer' || schemaType === 'number' ? (/^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value) : value;
      if (!v(typed)) bad(`header ${header.name}: ${JSON.stringify(value)} ${ajv.errorsText(v.errors)}`);
    }
  }
  for (const watched of WATCHED_HEADERS) {
    if (res.headers.has(watched) && !documentedHeaders[watched]) bad(`header ${watched} sent but not documented for this response`);
  }

  // Body.
  const content = response.content as Record<string, { schema?: object }> | undefined;
  if (!content) {
    if (type !== '' || (await readText()).length > 0) bad(`a body (${type || 'untyped'}) where none is documented`);
    return;
  }
  if (m === 'HEAD') return;
  const mediaType = Object.keys(content).find((k) => k.toLowerCase() === type);
  if (!mediaType) bad(`content type ${type || '(none)'} not documented (documented: ${Object.keys(content).join(', ')})`);
  if (!/^application\/([\w.+-]+\+)?json$/.test(type)) return;
  const text = await readText();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    bad(`body is not JSON: ${text.slice(0, 200)}`);
  }
  const v = validatorAt(ajv, `${responseRef}/${pointer('content', mediaType!, 'schema')}`);
  if (!v(body)) bad(`body does not match the schema: ${ajv.errorsText(v.errors, { separator: '; ' })}\n${text.slice(0, 500)}`);
}

/** `fetch`, with the answer checked against the document. */
export async function checkedFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, init);
  await checkResponse(res, init.method ?? 'GET', new URL(url).pathname);
  return res;
}

/** `app.request`, with the answer checked against the document. */
export async function checkedRequest(app: { request(path: string, init?: RequestInit): Response | Promise<Response> }, path: string, init: RequestInit = {}): Promise<Response> {
  const res = await app.request(path, init);
  await checkResponse(res, init.method ?? 'GET', path);
  return res;
}
