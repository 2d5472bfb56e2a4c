import fc from 'fast-check';
import { base64url, SignJWT } from 'jose';
import { z } from 'zod';
import { auditQuerySchema } from '../../src/http/audit.routes.js';
import { listQuerySchema, orderRequestSchema, productSchema } from '../../src/http/schemas.js';
import type { RawRequest } from './raw-http.js';

/*
 * Generated hostile requests, built from the API's own schemas: a valid value is drawn from
 * each route's zod schema (through its JSON Schema), then broken in one of the ways clients
 * break things — wrong types, missing and unknown fields, huge, negative and fractional
 * numbers, long, unicode and NUL-laden strings, deep nesting, `__proto__` keys, duplicate
 * keys, bad content types, oversized bodies, random methods and paths, malformed
 * `Idempotency-Key`s, cursors and query strings, and forged, truncated or re-signed tokens.
 */

type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
};

/** What the generator knows of the server it talks to. */
export interface FuzzTarget {
  /** SKUs in its catalog (orders for them can succeed). */
  skus: string[];
  /** Signs a valid token for `sub` with `role`. */
  token(sub: string, role: 'user' | 'admin'): Promise<string>;
  /** The signing secret, to re-sign forged tokens with the right key. */
  secret: Uint8Array;
}

/** A generated request, plus what the checks need to know of it. */
export interface FuzzRequest {
  raw: RawRequest;
  /** Which mutation made it, for the statistics and the shrunk report. */
  kind: string;
  /** Whether it may create an order when the server accepts it. */
  creates: boolean;
}

const toSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
const SCHEMAS = {
  order: toSchema(orderRequestSchema),
  product: toSchema(productSchema),
  listQuery: toSchema(listQuerySchema),
  auditQuery: toSchema(auditQuerySchema),
};

/** Values that succeed where they can (known SKUs and cards), so accepted requests go deep into the service. */
function hinted(name: string, target: FuzzTarget): fc.Arbitrary<unknown> | undefined {
  switch (name) {
    case 'sku':
      return fc.constantFrom(...target.skus);
    case 'token':
      // Not tok_gateway_error (its order ends in a 503 by design) nor tok_slow (it holds a slot for seconds).
      return fc.constantFrom('tok_visa', 'tok_visa', 'tok_declined', 'tok_insufficient_funds');
    case 'country':
      return fc.constantFrom('DE', 'FR', 'AQ');
    case 'user_id':
      return fc.constantFrom('alice', 'bob', 'fuzz');
    default:
      return undefined;
  }
}

/** A value the JSON Schema accepts (roughly: small arrays and strings). */
function valid(schema: JsonSchema, target: FuzzTarget, name = ''): fc.Arbitrary<unknown> {
  const hint = hinted(name, target);
  if (hint) return fc.oneof({ weight: 4, arbitrary: hint }, { weight: 1, arbitrary: validPlain(schema, target) });
  return validPlain(schema, target);
}

function validPlain(schema: JsonSchema, target: FuzzTarget): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  switch (schema.type) {
    case 'object': {
      const props = schema.properties ?? {};
      const required = new Set(schema.required ?? []);
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, sub] of Object.entries(props)) record[key] = valid(sub, target, key);
      return fc.record(record, { requiredKeys: [...required] });
    }
    case 'array':
      return fc.array(valid(schema.items ?? {}, target), { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 3, 3) });
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1000, max: Math.min(schema.maximum ?? 1000, 1000) });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1000, max: schema.maximum ?? 1000, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'string': {
      const max = Math.min(schema.maxLength ?? 20, 20);
      if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? Infinity));
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.max(max, schema.minLength ?? 0) });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

// --- ways to break a value -----------------------------------------------------------------

const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  'x'.repeat(10_000),
  '😀'.repeat(500),
  '\u202Eevil',
  '\uD800',
  '<script>alert(1)</script>',
  "' OR 1=1 --",
  '../../etc/passwd',
  '%00',
  '\\u0000',
  'tok_visa\n',
  'Ω≈ç√∫˜µ≤≥÷',
];
const NASTY_NUMBERS = [-1, 0, 1.5, -0.000001, 1e308, -1e308, 2 ** 53 + 1, 1001, 1_000_000_001, Number.MAX_SAFE_INTEGER];
const NASTY_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' ', 'items ', 'ITEMS', '$where', 'a'.repeat(5000)];

const deep = (depth: number, leaf: unknown): unknown => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? { a: v } : [v];
  return v;
};

const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, [], {}, '1', '1.0', 'null', [null], { '': null }),
  fc.constantFrom(...NASTY_STRINGS),
  fc.constantFrom(...NASTY_NUMBERS),
  fc.integer({ min: 2, max: 1000 }).map((d) => deep(d, 1)),
  fc.string({ unit: 'binary', maxLength: 50 }),
  fc.jsonValue({ maxDepth: 3 }),
);

type Path = Array<string | number>;

/** Every place in a JSON value (the root included). */
function paths(value: unknown, at: Path = []): Path[] {
  const out: Path[] = [at];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...at, i])));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]));
  return out;
}

function setAt(value: unknown, path: Path, replace: (old: unknown, parent: unknown, key: string | number) => unknown, remove = false): unknown {
  if (path.length === 0) return replace(value, undefined, '');
  const [head, ...rest] = path;
  const copy: any = Array.isArray(value) ? [...value] : { ...(value as object) };
  if (rest.length === 0) {
    if (remove) Array.isArray(copy) ? copy.splice(head as number, 1) : delete copy[head as string];
    else copy[head as string] = replace(copy[head as string], copy, head!);
    return copy;
  }
  copy[head as string] = setAt(copy[head as string], rest, replace, remove);
  return copy;
}

/** A valid body broken in one place; `null` means "left valid". */
function mutate(value: unknown): fc.Arbitrary<{ body: unknown; kind: string }> {
  const all = paths(value);
  const inner = all.filter((p) => p.length > 0);
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant({ body: value, kind: 'valid' }) },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.constantFrom(...all), nastyValue).map(([p, v]) => ({ body: setAt(value, p, () => v), kind: 'wrong-value' })),
    },
    // An empty value (e.g. a query with no parameters) has no field to leave out.
    ...(inner.length > 0
      ? [{ weight: 2, arbitrary: fc.constantFrom(...inner).map((p) => ({ body: setAt(value, p, () => undefined, true), kind: 'missing-field' })) }]
      : []),
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...all), fc.oneof(fc.constantFrom(...NASTY_KEYS), fc.string({ maxLength: 10 })), nastyValue)
        .map(([p, k, v]) => ({
          body: setAt(value, p, (old) => (old && typeof old === 'object' && !Array.isArray(old) ? { ...old, [k]: v } : { [k]: v, value: old })),
          kind: 'unknown-field',
        })),
    },
  );
}

/** How a JSON value is put on the wire: as it should be, or broken in the text itself. */
const serialise = (value: unknown): fc.Arbitrary<{ text: Buffer; kind?: string }> => {
  const json = JSON.stringify(value) ?? 'null';
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant({ text: Buffer.from(json) }) },
    {
      weight: 1,
      // Duplicate keys: JSON.parse keeps the last one, so the first must not matter.
      arbitrary: fc.constant({ text: Buffer.from(json.startsWith('{') && json.length > 2 ? `{"items":[],${json.slice(1)}` : json), kind: 'duplicate-keys' }),
    },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: Math.max(0, json.length - 1) }).map((n) => ({ text: Buffer.from(json.slice(0, n)), kind: 'truncated-json' })) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        { text: Buffer.from(`\uFEFF${json}`), kind: 'bom' },
        { text: Buffer.from(`${json} trailing`), kind: 'trailing-garbage' },
        { text: Buffer.from([0xff, 0xfe, 0x00, 0x7b]), kind: 'not-utf8' },
        { text: Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), kind: 'deep-text' },
        { text: Buffer.alloc(70 * 1024, 0x20), kind: 'oversized-body' },
        { text: Buffer.from(`{"a":"${'x'.repeat(65 * 1024)}"}`), kind: 'oversized-json' },
        { text: Buffer.alloc(0), kind: 'empty-body' },
      ),
    },
  );
};

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/problem+json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json;;;',
      'json',
      '',
      'application/jsonx',
    ),
  },
);

// --- tokens --------------------------------------------------------------------------------

/** A token to send: a valid one for a role, a fixed broken header, or one forged and signed at send time. */
export interface TokenPlan {
  kind: string;
  role?: 'user' | 'admin';
  header?: string;
  forged?: boolean;
}

const FORGED = ['expired', 'not-yet', 'no-sub', 'no-exp', 'bad-role', 'long-sub', 'tampered', 'truncated', 'wrong-key', 'hs512'] as const;

function tokenPlan(): fc.Arbitrary<TokenPlan> {
  const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
  const later = Math.floor(Date.now() / 1000) + 86_400;
  return fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom<TokenPlan>({ kind: 'user-token', role: 'user' }, { kind: 'admin-token', role: 'admin' }) },
    {
      weight: 4,
      arbitrary: fc.constantFrom<TokenPlan>(
        { kind: 'no-token' },
        { kind: 'empty-bearer', header: 'Bearer' },
        { kind: 'basic-auth', header: 'Basic YWxpY2U6cGFzcw==' },
        { kind: 'garbage-token', header: 'Bearer not.a.jwt' },
        { kind: 'alg-none', header: `Bearer ${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: 'alice', role: 'admin', exp: later })}.` },
        { kind: 'huge-token', header: `Bearer ${'a'.repeat(9000)}` },
        { kind: 'odd-bearer', header: 'bearer  \t x' },
      ),
    },
    { weight: 4, arbitrary: fc.constantFrom(...FORGED).map((kind): TokenPlan => ({ kind, forged: true })) },
  );
}

/** Resolves the token description into an Authorization header value (signing where needed). */
export async function authorization(t: TokenPlan, target: FuzzTarget): Promise<string | undefined> {
  const now = Math.floor(Date.now() / 1000);
  if (t.role) return `Bearer ${await target.token('fuzz', t.role)}`;
  if (!t.forged) return t.header;
  const sign = (claims: Record<string, unknown>, key: Uint8Array = target.secret, alg = 'HS256') =>
    new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
  const good = { sub: 'fuzz', role: 'user', exp: now + 3600 };
  switch (t.kind) {
    case 'expired':
      return `Bearer ${await sign({ ...good, exp: now - 3600 })}`;
    case 'not-yet':
      return `Bearer ${await sign({ ...good, nbf: now + 3600 })}`;
    case 'no-sub':
      return `Bearer ${await sign({ role: 'user', exp: now + 3600 })}`;
    case 'no-exp':
      return `Bearer ${await sign({ sub: 'fuzz', role: 'user' })}`;
    case 'bad-role':
      return `Bearer ${await sign({ ...good, role: 'root' })}`;
    case 'long-sub':
      return `Bearer ${await sign({ ...good, sub: 'x'.repeat(500) })}`;
    case 'wrong-key':
      return `Bearer ${await sign(good, new TextEncoder().encode('another-secret-that-is-32-bytes-long!!'))}`;
    case 'hs512':
      return `Bearer ${await sign(good, target.secret, 'HS512')}`;
    case 'tampered': {
      const [h, , s] = (await sign(good)).split('.');
      return `Bearer ${h}.${base64url.encode(JSON.stringify({ ...good, role: 'admin' }))}.${s}`;
    }
    case 'truncated':
      return `Bearer ${(await sign(good)).slice(0, -5)}`;
    default:
      return t.header;
  }
}

// --- requests ------------------------------------------------------------------------------

const ORDER_ID = /^ord_[0-9A-HJKMNP-TV-Z]{26}$/;
const idLike = fc.oneof(
  fc.stringMatching(ORDER_ID),
  fc.constantFrom('ord_01AAAAAAAAAAAAAAAAAAAAAAAA', 'ord_', 'ORD_01M8SNQYX72X2SS1BQMTT0RS7F', '%00', '..%2F..%2Fetc', '%E2%82%AC', 'x'.repeat(3000), '%ZZ', '1;DROP'),
);
const skuLike = (target: FuzzTarget) => fc.oneof(fc.constantFrom(...target.skus), fc.stringMatching(/^[A-Za-z0-9%._~-]{0,80}$/), fc.constantFrom('%00', 'a%2Fb', '%ZZ', '-'.repeat(70)));

const query = fc.oneof(
  fc.constant(''),
  fc.record({ status: fc.constantFrom('processing', 'completed', 'nope', ''), limit: fc.constantFrom('1', '20', '100', '0', '-1', '101', '1.5', '1e2', 'abc', ''), cursor: fc.oneof(fc.stringMatching(ORDER_ID), fc.constantFrom('', 'ord_x', '%00')) }, { requiredKeys: [] })
    .map((q) => `?${Object.entries(q).map(([k, v]) => `${k}=${v}`).join('&')}`),
  fc.constantFrom('?limit=1&limit=2', '?__proto__=1', '?constructor=x', '?%ZZ=1', '?=', '?&&&', '?limit', '?status[]=x', `?x=${'y'.repeat(5000)}`, '?limit=%00'),
);

/** The audit log's query: valid from its schema, then broken in one place; or a fixed malformed one. */
const auditQuery = (target: FuzzTarget) => {
  // Byte by byte, as UTF-8: a lone surrogate, which encodeURIComponent refuses, goes out as U+FFFD.
  const asParam = (v: unknown) =>
    [...Buffer.from(typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))].map((b) => (/[A-Za-z0-9._~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');
  const toQuery = (q: unknown) =>
    q && typeof q === 'object' && !Array.isArray(q) ? `?${Object.entries(q).map(([k, v]) => `${asParam(k)}=${asParam(v)}`).join('&')}` : `?${asParam(q)}`;
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant({ q: '', kind: 'audit' }) },
    { weight: 4, arbitrary: valid(SCHEMAS.auditQuery, target).chain(mutate).map(({ body, kind }) => ({ q: toQuery(body), kind: `audit-${kind}` })) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '?limit=1&limit=2',
        '?cursor=aud_01AAAAAAAAAAAAAAAAAAAAAAAA&cursor=x',
        '?cursor=ord_01AAAAAAAAAAAAAAAAAAAAAAAA',
        '?cursor=%00',
        '?cursor=aud_%F0%9F%98%80',
        '?actor=%ED%A0%80',
        '?action=order.delete',
        '?action[]=order.retry',
        '?actor=',
        `?actor=${'a'.repeat(129)}`,
        '?actor=%00',
        '?actor=%ZZ',
        '?limit=1e309',
        '?limit=-0',
        '?limit=0x10',
        '?__proto__[limit]=1',
        `?x=${'y'.repeat(5000)}`,
      ).map((q) => ({ q, kind: 'audit-malformed' })),
    },
  );
};

const idempotencyKey = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9-]{1,40}$/) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'k'.repeat(256), 'k'.repeat(255), 'naïve-ключ', 'a\tb') },
);

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'] as const;

/** One generated request (a description to be made concrete with `concretise`). */
export function requestArbitrary(target: FuzzTarget, orderIds: () => string[]) {
  // An order some earlier request created (so cancels and reads reach real orders).
  const knownOrder = fc.nat().map((n) => {
    const ids = orderIds();
    return ids.length > 0 ? ids[n % ids.length]! : 'ord_01AAAAAAAAAAAAAAAAAAAAAAAA';
  });
  const orderPath = fc.oneof(knownOrder, idLike);
  const jsonBody = (schema: JsonSchema) => valid(schema, target).chain(mutate).chain(({ body, kind }) => serialise(body).map((s) => ({ body: s.text, kind: s.kind ?? kind })));
  const route = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom('/api/v1/pipeline/orders', '/api/v1/pipeline/orders/async'), jsonBody(SCHEMAS.order)).map(([path, b]) => ({ method: 'POST', path, ...b, creates: true })) },
    { weight: 2, arbitrary: fc.tuple(orderPath, fc.constantFrom('status', 'cancel', 'retry', 'history', 'events')).map(([id, what]) => ({ method: what === 'cancel' || what === 'retry' ? 'POST' : 'GET', path: `/api/v1/pipeline/orders/${id}/${what}`, kind: `order-${what}`, creates: false })) },
    { weight: 2, arbitrary: query.map((q) => ({ method: 'GET', path: `/api/v1/pipeline/orders${q}`, kind: 'list', creates: false })) },
    { weight: 1, arbitrary: auditQuery(target).map(({ q, kind }) => ({ method: 'GET', path: `/api/v1/audit${q}`, kind, creates: false })) },
    { weight: 2, arbitrary: fc.tuple(skuLike(target), jsonBody(SCHEMAS.product)).map(([sku, b]) => ({ method: 'PUT', path: `/api/v1/inventory/${sku}`, ...b, creates: false })) },
    { weight: 1, arbitrary: skuLike(target).map((sku) => ({ method: 'GET', path: `/api/v1/inventory/${sku}`, kind: 'product', creates: false })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...METHODS), fc.oneof(fc.stringMatching(/^\/[A-Za-z0-9/._~%-]{0,60}$/), fc.constantFrom('/', '//', '/api', '/api/v1', '/api/v1/', '/healthz', '/api/v1/pipeline/orders/', '/API/V1/INVENTORY', `/${'a/'.repeat(2000)}`, '/%2e%2e/%2e%2e')))
        .map(([method, path]) => ({ method, path, kind: 'random-route', creates: false })),
    },
  );
  return fc.record({
    route,
    token: tokenPlan(),
    contentType,
    idempotencyKey,
    requestId: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('r-1', 'x'.repeat(300), '') }),
    method: fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
  });
}

export type RequestDescription = ReturnType<typeof requestArbitrary> extends fc.Arbitrary<infer T> ? T : never;

/** The description made into bytes on the wire (tokens signed now, so none expires in flight). */
export async function concretise(d: RequestDescription, target: FuzzTarget): Promise<FuzzRequest> {
  const { route } = d;
  const method = d.method ?? route.method;
  const headers: Array<[string, string]> = [];
  const auth = await authorization(d.token, target);
  if (auth !== undefined) headers.push(['Authorization', auth]);
  const body = 'body' in route ? (route.body as Buffer) : undefined;
  if (body !== undefined && d.contentType !== undefined) headers.push(['Content-Type', d.contentType]);
  if (d.idempotencyKey !== undefined) headers.push(['Idempotency-Key', d.idempotencyKey]);
  if (d.requestId !== undefined) headers.push(['X-Request-Id', d.requestId]);
  const kind = [route.kind, d.token.kind, method !== route.method ? `method-${method}` : ''].filter(Boolean).join('/');
  return { raw: { method, target: route.path, headers, ...(body !== undefined ? { body } : {}) }, kind, creates: route.creates && method === 'POST' };
}

/** Header values go on the wire as latin1: keep what the generator made to bytes a client could send. */
export function printableHeaders(req: RawRequest): RawRequest {
  return { ...req, headers: req.headers.map(([n, v]) => [n, Buffer.from(v, 'utf8').toString('latin1').replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, '')] as [string, string]) };
}
