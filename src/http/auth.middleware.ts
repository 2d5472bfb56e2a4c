import type { MiddlewareHandler } from 'hono';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { OrderError } from '../domain/errors.js';
import { problemFor, problemResponse } from './problem.js';

export type Role = 'user' | 'admin';

export interface AuthUser {
  id: string;
  role: Role;
}

export interface BearerAuthOptions {
  /** HS256 key, at least 32 bytes. */
  secret: Uint8Array;
  issuer?: string;
  audience?: string;
}

declare module 'hono' {
  interface ContextVariableMap {
    user: AuthUser;
  }
}

/** Verifies an HS256 JWT and exposes `{ id: sub, role }` as `c.var.user`. */
export function bearerAuth(options: BearerAuthOptions): MiddlewareHandler {
  if (options.secret.byteLength < 32) throw new Error('bearerAuth: the secret must be at least 32 bytes');
  const verifyOptions = {
    algorithms: ['HS256'],
    requiredClaims: ['exp', 'sub'],
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
  };

  // A verified token's claims, until it expires: the same token from the same client is
  // verified once, not per request (HMAC verification showed up in the profile).
  const verified = new Map<string, { user: AuthUser; exp: number }>();

  return async function bearerAuth(c, next) {
    const header = c.req.header('Authorization');
    const match = header?.match(/^Bearer\s+([A-Za-z0-9._~+/-]+=*)\s*$/i);
    if (!match) {
      return problemResponse(c, problemFor('unauthorized', 'Send a JWT as "Authorization: Bearer <token>".'), {
        'WWW-Authenticate': 'Bearer realm="ordersaga"',
      });
    }
    const token = match[1]!;
    const cached = verified.get(token);
    if (cached && cached.exp * 1000 > Date.now()) {
      c.set('user', cached.user);
      return next();
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, options.secret, verifyOptions));
    } catch (err) {
      const expired = err instanceof joseErrors.JWTExpired;
      const detail = expired ? 'The token has expired.' : `The token is invalid${err instanceof joseErrors.JOSEError ? ` (${err.code})` : ''}.`;
      return problemResponse(c, problemFor(expired ? 'token_expired' : 'unauthorized', detail), {
        'WWW-Authenticate': `Bearer realm="ordersaga", error="invalid_token", error_description="${detail}"`,
      });
    }
    const user = toUser(payload);
    if (!user) {
      return problemResponse(c, problemFor('unauthorized', 'The token needs a non-empty "sub" and a "role" of "user" or "admin".'), {
        'WWW-Authenticate': 'Bearer realm="ordersaga", error="invalid_token"',
      });
    }
    if (verified.size >= 10_000) verified.clear();
    verified.set(token, { user, exp: payload.exp! });
    c.set('user', user);
    await next();
  };
}

function toUser(payload: JWTPayload): AuthUser | null {
  const role = payload.role ?? 'user';
  if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 128) return null;
  if (role !== 'user' && role !== 'admin') return null;
  return { id: payload.sub, role };
}

/** Admin-only routes. */
export function requireRole(role: Role): MiddlewareHandler {
  return async function requireRole(c, next) {
    if (c.var.user.role !== role) throw new OrderError('forbidden', `This needs the "${role}" role.`);
    await next();
  };
}
