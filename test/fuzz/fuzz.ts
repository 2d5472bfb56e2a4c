import Database from 'better-sqlite3';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { checkResponse } from '../support/openapi.js';
import { readmeErrorCodes } from '../support/readme.js';
import { send, type RawRequest, type RawResponse } from './raw-http.js';
import { concretise, printableHeaders, requestArbitrary, type FuzzTarget } from './requests.js';

/*
 * Drives a real server with generated requests and judges every answer: no 5xx; every error
 * is problem+json with a code from the README's error table; no stack trace or internal path
 * in any body. Afterwards: no order that was not accepted exists, stock and money add up,
 * the server is still healthy and its memory is back near where it started.
 */

export interface FuzzServer {
  port: number;
  pid: number;
  /** The server's SQLite file, read (read-only) after the run. */
  dbPath: string;
}

export interface FuzzOptions {
  runs: number;
  seed?: number;
  /** fast-check's replay path, with `seed`. */
  path?: string;
  /** Called every `every` requests with progress. */
  progress?: (done: number) => void;
}

export interface FuzzResult {
  requests: number;
  seconds: number;
  statuses: Record<string, number>;
  codes: Record<string, number>;
  kinds: number;
  /** Orders some answer accepted (201/202, or a problem carrying an order id). */
  accepted: string[];
  rss_mb: { start: number; end: number };
}

const LEAKS = [/\n\s+at [\w.<>]+ \(/, /node:internal/, /\/src\/[\w/.-]+\.(ts|js)/, /\/node_modules\//, /\/work\//, /\bat async\b/, /TypeError|RangeError|SyntaxError: Unexpected/];

/** What is wrong with this answer, or null. */
export function judge(req: RawRequest, res: RawResponse | null, codes: ReadonlyMap<string, number>): string | null {
  if (!res) return 'the server closed the connection without an answer';
  if (res.status >= 500) return `answered ${res.status}`;
  const text = res.body.toString('utf8');
  for (const leak of LEAKS) if (leak.test(text)) return `the body shows internals (${leak}): ${text.slice(0, 300)}`;
  if (res.status < 400 || req.method === 'HEAD') return null;
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('application/problem+json')) return `a ${res.status} answer as ${JSON.stringify(type)}, not problem+json: ${text.slice(0, 200)}`;
  let problem: { code?: unknown; status?: unknown };
  try {
    problem = JSON.parse(text) as typeof problem;
  } catch {
    return `a problem body that is not JSON: ${text.slice(0, 200)}`;
  }
  if (typeof problem.code !== 'string' || !codes.has(problem.code)) return `problem code ${JSON.stringify(problem.code)} is not in the README's error table`;
  if (problem.status !== res.status) return `problem status ${String(problem.status)} differs from the HTTP status ${res.status}`;
  if (codes.get(problem.code) !== res.status) return `code ${problem.code} answered with ${res.status}, the README says ${codes.get(problem.code)}`;
  return null;
}

/** Refused by the HTTP server before any route runs (src/http/server.ts): no operation's answer. */
const BEFORE_ROUTING = new Set(['malformed_request', 'missing_host', 'invalid_request_target', 'headers_too_large', 'request_timeout', 'expectation_failed']);

/** What in this answer /openapi.json does not describe, or null. */
async function undocumented(req: RawRequest, res: RawResponse): Promise<string | null> {
  const text = res.body.toString('utf8');
  if (res.headers.get('content-type')?.startsWith('application/problem+json')) {
    try {
      if (BEFORE_ROUTING.has((JSON.parse(text) as { code?: string }).code ?? '')) return null;
    } catch {
      /* judged already */
    }
  }
  const headers = new Headers();
  for (const [name, value] of res.headers) headers.set(name, value);
  const bodyless = req.method === 'HEAD' || res.status === 204 || res.status === 304;
  try {
    await checkResponse(new Response(bodyless ? null : text, { status: res.status, headers }), req.method, req.target.startsWith('/') || /^https?:/.test(req.target) ? req.target : `/${req.target}`);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** Runs the fuzz; throws (with fast-check's shrunk counterexample and seed) on the first bad answer. */
export async function runFuzz(server: FuzzServer, target: FuzzTarget, options: FuzzOptions): Promise<FuzzResult> {
  const codes = readmeErrorCodes();
  const statuses: Record<string, number> = {};
  const seenCodes: Record<string, number> = {};
  const kinds = new Set<string>();
  const accepted = new Set<string>();
  let requests = 0;
  const started = performance.now();
  const rssStart = rssMb(server.pid);

  const property = fc.asyncProperty(requestArbitrary(target, () => [...accepted]), async (description) => {
    const req = await concretise(description, target);
    const raw = printableHeaders(req.raw);
    const res = await send(server.port, raw);
    requests++;
    if (requests % 1000 === 0) options.progress?.(requests);
    const wrong = judge(raw, res, codes) ?? (await undocumented(raw, res!));
    if (wrong) throw new Error(`${wrong}\nrequest: ${raw.method} ${raw.target.slice(0, 200)}\nheaders: ${JSON.stringify(raw.headers).slice(0, 600)}\nbody: ${raw.body?.subarray(0, 300).toString('utf8')}`);
    statuses[res!.status] = (statuses[res!.status] ?? 0) + 1;
    kinds.add(req.kind);
    let body: { code?: string; order_id?: string } = {};
    try {
      body = JSON.parse(res!.body.toString('utf8')) as typeof body;
    } catch {
      /* not JSON: fine for a 2xx without a body */
    }
    if (body.code) seenCodes[body.code] = (seenCodes[body.code] ?? 0) + 1;
    if (req.creates && body.order_id && (res!.status < 300 || body.code)) accepted.add(body.order_id);
  });
  await fc.assert(property, { numRuns: options.runs, ...(options.seed !== undefined ? { seed: options.seed } : {}), ...(options.path ? { path: options.path } : {}) });

  return {
    requests,
    seconds: Math.round((performance.now() - started) / 100) / 10,
    statuses,
    codes: seenCodes,
    kinds: kinds.size,
    accepted: [...accepted],
    rss_mb: { start: Math.round(rssStart), end: Math.round(rssMb(server.pid)) },
  };
}

/**
 * After the run, once every order is final: no order exists that no answer accepted; per
 * SKU available + reserved + sold = added and reserved = 0, and sold = what completed orders
 * bought; per order, captured − refunded = total for completed orders and 0 for the rest.
 */
export async function checkLedger(dbPath: string, acceptedIds: readonly string[], timeoutMs = 60_000): Promise<string[]> {
  const db = new Database(dbPath, { readonly: true });
  db.pragma('busy_timeout = 5000');
  try {
    const deadline = Date.now() + timeoutMs;
    while ((db.prepare(`SELECT COUNT(*) FROM order_snapshots WHERE status = 'processing'`).pluck().get() as number) > 0) {
      if (Date.now() > deadline) return ['orders still processing long after the run'];
      await new Promise((r) => setTimeout(r, 100));
    }
    const problems: string[] = [];
    const stored = db.prepare('SELECT order_id, status, view FROM order_snapshots').all() as Array<{ order_id: string; status: string; view: string }>;
    const accepted = new Set(acceptedIds);
    for (const o of stored) if (!accepted.has(o.order_id)) problems.push(`order ${o.order_id} exists, but no answer accepted it`);
    for (const id of accepted) if (!stored.some((o) => o.order_id === id)) problems.push(`order ${id} was accepted but is not stored`);
    const soldBy = new Map<string, number>();
    for (const o of stored) {
      const view = JSON.parse(o.view) as { order: { items: Array<{ sku: string; quantity: number }>; total_cents: number | null } };
      if (o.status === 'completed') for (const i of view.order.items) soldBy.set(i.sku, (soldBy.get(i.sku) ?? 0) + i.quantity);
      const charge = db.prepare('SELECT status, amount_cents FROM payment_charges WHERE order_id = ?').get(o.order_id) as { status: string; amount_cents: number } | undefined;
      const refunded = db.prepare('SELECT COALESCE(SUM(amount_cents), 0) FROM payment_refunds WHERE order_id = ?').pluck().get(o.order_id) as number;
      const captured = charge && (charge.status === 'captured' || charge.status === 'refunded') ? charge.amount_cents : 0;
      const expected = o.status === 'completed' ? (view.order.total_cents ?? 0) : 0;
      if (captured - refunded !== expected) problems.push(`order ${o.order_id} (${o.status}) holds ${captured - refunded} cents, expected ${expected}`);
    }
    for (const p of db.prepare('SELECT sku, available, reserved, sold, added FROM products').all() as Array<{ sku: string; available: number; reserved: number; sold: number; added: number }>) {
      if (p.available + p.reserved + p.sold !== p.added) problems.push(`${p.sku}: available + reserved + sold ≠ added`);
      if (p.reserved !== 0) problems.push(`${p.sku}: ${p.reserved} still reserved`);
      if (p.sold !== (soldBy.get(p.sku) ?? 0)) problems.push(`${p.sku}: sold ${p.sold}, completed orders bought ${soldBy.get(p.sku) ?? 0}`);
    }
    return problems;
  } finally {
    db.close();
  }
}

/**
 * After the run: every admin action the fuzz got through authentication left an entry the
 * server could write (none went to the log as "audit entry not recorded"), and each entry's
 * outcome is an HTTP status with, for refusals, a code from the README's error table.
 */
export function checkAudit(dbPath: string, serverOutput: string): { entries: number; problems: string[] } {
  const problems: string[] = [];
  if (serverOutput.includes('audit entry not recorded')) problems.push('an audit entry could not be written (see the server log)');
  const codes = readmeErrorCodes();
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare('SELECT id, action, status, code FROM audit_log').all() as Array<{ id: string; action: string; status: number; code: string | null }>;
    for (const r of rows) {
      if (!/^aud_[0-9A-HJKMNP-TV-Z]{26}$/.test(r.id)) problems.push(`audit entry ${r.id}: not an audit id`);
      if (r.status < 200 || r.status > 599) problems.push(`audit entry ${r.id}: status ${r.status}`);
      if (r.status >= 400 && (r.code === null || !codes.has(r.code))) problems.push(`audit entry ${r.id} (${r.action}, ${r.status}): code ${String(r.code)} is not in the README's error table`);
    }
    return { entries: rows.length, problems };
  } finally {
    db.close();
  }
}
