import type { Context, MiddlewareHandler } from 'hono';
import { newId } from '../domain/ids.js';
import type { Logger } from '../logger.js';
import type { AuditEntry, AuditStore } from '../store/store.ports.js';

export interface AuditLogOptions {
  audit: AuditStore;
  logger: Logger;
}

/** What one admin action is done to, and the request fields worth keeping. */
interface Described {
  target: string;
  details: Record<string, unknown> | null;
}

interface AuditedRoute {
  action: string;
  method: string;
  path: RegExp;
  /** `null`: this request is not the action after all (an order placed for oneself). */
  describe(match: RegExpExecArray, c: Context): Described | null;
}

const MAX_TEXT = 200;

/**
 * The admin actions, by route. They are recognised here, by method and path, rather than in
 * the routes, so that the routes stay unaware of the audit log (and an admin action is
 * audited even when its route refuses it before running: 403, 400, 404, 409).
 */
export const AUDITED_ROUTES: readonly AuditedRoute[] = [
  {
    action: 'inventory.set',
    method: 'PUT',
    path: /^\/api\/v1\/inventory\/([^/]+)$/,
    describe: (match, c) => {
      const body = bodyOf(c);
      return { target: text(match[1]!), details: body ? pick(body, ['name', 'price_cents', 'available']) : null };
    },
  },
  {
    action: 'order.retry',
    method: 'POST',
    path: /^\/api\/v1\/pipeline\/orders\/([^/]+)\/retry$/,
    describe: (match) => ({ target: text(match[1]!), details: null }),
  },
  {
    // Admins may cancel anyone's order (a user only their own, which is no admin action).
    action: 'order.cancel',
    method: 'POST',
    path: /^\/api\/v1\/pipeline\/orders\/([^/]+)\/cancel$/,
    describe: (match, c) => (c.get('user').role === 'admin' ? { target: text(match[1]!), details: null } : null),
  },
  {
    // An order for another user is an admin action (refused with 403 for anyone else); one's own is not.
    action: 'order.place_for_user',
    method: 'POST',
    path: /^\/api\/v1\/pipeline\/orders(\/async)?$/,
    describe: (match, c) => {
      const body = bodyOf(c, 'user_id');
      // The route trims `user_id`: " alice" is alice's own order.
      if (!body || body.user_id === undefined || (typeof body.user_id === 'string' && body.user_id.trim() === c.get('user').id)) return null;
      const orderId = /\/orders\/(ord_[0-9A-Z]{26})\/status$/.exec(c.res.headers.get('Location') ?? '')?.[1] ?? null;
      const items = Array.isArray(body.items)
        ? body.items.slice(0, 100).map((line: unknown) => (isRecord(line) ? pick(line, ['sku', 'quantity']) : scalar(line)))
        : scalar(body.items);
      // Only what was ordered for whom: never the payment token nor the shipping address.
      return {
        target: typeof body.user_id === 'string' ? text(body.user_id) : JSON.stringify(scalar(body.user_id)),
        details: { user_id: scalar(body.user_id), order_id: orderId, mode: match[1] ? 'async' : 'sync', items },
      };
    },
  },
];

/**
 * Writes one audit entry for every admin action an authenticated caller attempts (see
 * `AUDITED_ROUTES`): who (`sub`, role, `iss`), what and to what, from which address, with
 * which request id, and how it ended (status, and the problem `code` when refused). Mounted
 * after authentication and the per-user rate limit: refusals before those have no "who",
 * and are in the request log only; after the rate limit, so that one user's flood costs at
 * most their rate of audit writes.
 *
 * The entry is written once the answer is known and before it is sent, so a client that has
 * its answer can find the entry. If the write fails, the answer stands and the entry goes to
 * the log at error level instead ("audit entry not recorded", the whole entry). Why not
 * fail closed, writing first and refusing the action when that fails: the audit log lives
 * in the same database as what the actions change, so a failing audit write almost always
 * means a failing action too, and the rare case between (the action committed, then the
 * write failed) cannot be undone by answering 500: the stock is set, the retry is running,
 * and a 500 would only tell the admin it was not and invite doing it twice. Writing an
 * intent first would not close that gap either (on PostgreSQL the action's effects commit
 * on their own), and would double the writes. So: record after, never fail the action,
 * and make the failure loud.
 */
export function auditLog({ audit, logger }: AuditLogOptions): MiddlewareHandler {
  return async function auditLog(c, next) {
    const route = AUDITED_ROUTES.find((r) => r.method === c.req.method && r.path.test(c.req.path));
    if (!route) return next();
    await next();
    let entry: AuditEntry | undefined;
    try {
      const described = route.describe(route.path.exec(c.req.path)!, c);
      if (!described) return;
      const user = c.get('user');
      const address = c.get('clientAddress');
      entry = {
        id: newId('aud'),
        at: new Date().toISOString(),
        actor: text(user.id),
        role: user.role,
        issuer: user.issuer === undefined ? null : text(user.issuer),
        action: route.action,
        target: described.target,
        address: address && address !== 'unknown' ? address : null,
        request_id: (c.get('requestId') as string | undefined) ?? null,
        status: c.res.status,
        code: await problemCode(c.res),
        details: described.details,
      };
      await audit.record(entry);
    } catch (err) {
      logger.error({ err, audit: entry, request_id: c.get('requestId') }, 'audit entry not recorded');
    }
  };
}

/**
 * The JSON object the route read, if it read one (see `readBody`). With `key`, a body that
 * cannot hold that key is not parsed again: every order passes here, few name a user. (A key
 * written with `\u` escapes is still a key once parsed, so those bodies are parsed.)
 */
function bodyOf(c: Context, key?: string): Record<string, unknown> | undefined {
  const raw = c.get('bodyText');
  if (raw === undefined) return undefined;
  if (key !== undefined && !raw.includes(key) && !raw.includes('\\u')) return undefined;
  try {
    const body: unknown = JSON.parse(raw);
    return isRecord(body) ? body : undefined;
  } catch {
    return undefined;
  }
}

async function problemCode(res: Response): Promise<string | null> {
  if (!(res.headers.get('Content-Type') ?? '').startsWith('application/problem+json')) return null;
  try {
    const body = (await res.clone().json()) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : null;
  } catch {
    return null;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The named fields as sent (also when invalid: that is what was attempted), each cut to a scalar. */
function pick(body: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) if (Object.hasOwn(body, key)) out[key] = scalar(body[key]);
  return out;
}

function scalar(value: unknown): unknown {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}…` : value;
  return Array.isArray(value) ? '[array]' : '[object]';
}

/** A string fit for a text column on either store: at most 200 characters, no control bytes (PostgreSQL refuses NUL), well formed. */
function text(value: string): string {
  const cut = value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}…` : value;
  return cut
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
    .replace(/[\u0000-\u001f\u007f]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
