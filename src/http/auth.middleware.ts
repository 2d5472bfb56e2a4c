import type { Context, MiddlewareHandler } from 'hono';
import { errors as joseErrors, jwtVerify, type CryptoKey, type FlattenedJWSInput, type JWTHeaderParameters, type JWTPayload, type JWTVerifyOptions } from 'jose';
import { KeySetUnavailable, type KeySet } from '../auth/jwks.auth.js';
import { ASYMMETRIC_JWT_ALGORITHMS } from '../config.js';
import { OrderError } from '../domain/errors.js';
import { problemFor, problemResponse, type Problem } from './problem.js';

export type Role = 'user' | 'admin';

export interface AuthUser {
  id: string;
  role: Role;
  /** The token's `iss`, when it has one (for the audit log). */
  issuer?: string;
}

interface CommonAuthOptions {
  issuer?: string;
  audience?: string;
  /** Clock skew allowed on `exp` and `nbf`, in seconds (default 30). */
  clockToleranceS?: number;
  /** The claim that carries the role (default `role`): a string, or an array of strings. */
  roleClaim?: string;
  /** Longer tokens are refused before any parsing (default 8 KiB). */
  maxTokenBytes?: number;
}

/** HS256 with a shared secret (the embedded default), or an identity provider's keys with an allow-list. */
export type BearerAuthOptions = CommonAuthOptions &
  ({ secret: Uint8Array; keys?: never; algorithms?: never } | { keys: KeySet; algorithms: readonly string[]; secret?: never });

declare module 'hono' {
  // Read these with `c.get('user')`: Hono's `c.var` copies every variable into a new object on each access.
  interface ContextVariableMap {
    user: AuthUser;
    /** When the bearer token stops being accepted (ms since the epoch: its `exp` plus the clock tolerance); long-lived streams close then. */
    tokenValidUntil: number;
  }
}

interface Verified {
  user: AuthUser;
  /** ms */
  expiresAt: number;
  /** JWKS only: the key object that verified the token, and what is needed to ask the key set for it again. */
  key?: CryptoKey;
  header?: JWTHeaderParameters;
}

const NO_JWS: FlattenedJWSInput = { payload: '', signature: '', protected: '' };
const MAX_CACHED = 10_000;

/**
 * Verifies a bearer JWT and exposes `{ id: sub, role, issuer: iss }` as `c.var.user`: HS256 with `secret`, or
 * the identity provider's `keys` with only `algorithms` allowed. Requires `exp` and `sub`; checks
 * `nbf`, and `iss`/`aud` when configured, with `clockToleranceS` of skew.
 *
 * A verified token's claims are cached until it expires, so the same token is verified once rather
 * than per request (a signature check costs 140–400 µs here, more than the rest of the HTTP layer).
 * With a key set, a cached token counts only while the key set still hands out the very key object
 * that verified it: every (re)load builds new key objects, so after each refresh a token is verified
 * again, and a token whose key was withdrawn is refused as soon as the key set no longer has it.
 */
export function bearerAuth(options: BearerAuthOptions): MiddlewareHandler {
  const keys = options.keys;
  let algorithms: string[];
  if (keys) {
    algorithms = [...options.algorithms!];
    const bad = algorithms.filter((a) => !(ASYMMETRIC_JWT_ALGORITHMS as readonly string[]).includes(a));
    if (algorithms.length === 0 || bad.length > 0) {
      throw new Error(`bearerAuth: algorithms must be a non-empty list of ${ASYMMETRIC_JWT_ALGORITHMS.join(', ')}${bad.length ? ` (not ${bad.join(', ')})` : ''}`);
    }
  } else {
    if (!options.secret || options.secret.byteLength < 32) throw new Error('bearerAuth: the secret must be at least 32 bytes');
    algorithms = ['HS256'];
  }
  const maxTokenBytes = options.maxTokenBytes ?? 8 * 1024;
  const roleClaim = options.roleClaim ?? 'role';
  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    requiredClaims: ['exp', 'sub'],
    clockTolerance: options.clockToleranceS ?? 30,
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
  };

  const verified = new Map<string, Verified>();
  const toleranceMs = (options.clockToleranceS ?? 30) * 1000;

  /** A cache hit counts only while it has not expired and (JWKS) its key is still the key set's. */
  async function fromCache(token: string): Promise<Verified | undefined> {
    const hit = verified.get(token);
    if (!hit) return undefined;
    if (hit.expiresAt <= Date.now()) {
      verified.delete(token);
      return undefined;
    }
    if (keys) {
      const current = await Promise.resolve()
        .then(() => keys.getKey(hit.header!, NO_JWS))
        .catch(() => undefined);
      if (current !== hit.key) {
        verified.delete(token);
        return undefined;
      }
    }
    return hit;
  }

  async function verify(token: string): Promise<{ payload: JWTPayload; header: JWTHeaderParameters; key?: CryptoKey }> {
    if (!keys) {
      const { payload, protectedHeader } = await jwtVerify(token, options.secret!, verifyOptions);
      return { payload, header: protectedHeader };
    }
    let key: CryptoKey | undefined;
    const { payload, protectedHeader } = await jwtVerify(
      token,
      async (header, jws) => {
        const k = await keys.getKey(header, jws);
        key = k as CryptoKey;
        return k;
      },
      verifyOptions,
    );
    return { payload, header: protectedHeader, ...(key ? { key } : {}) };
  }

  return async function bearerAuth(c, next) {
    const header = c.req.header('Authorization');
    if (header !== undefined && header.length > maxTokenBytes + 64) {
      return refuse(c, problemFor('unauthorized', `The token is longer than ${maxTokenBytes} bytes.`));
    }
    const match = header?.match(/^Bearer\s+([A-Za-z0-9._~+/-]+=*)\s*$/i);
    if (!match) {
      return problemResponse(c, problemFor('unauthorized', 'Send a JWT as "Authorization: Bearer <token>".'), {
        'WWW-Authenticate': 'Bearer realm="ordersaga"',
      });
    }
    const token = match[1]!;
    if (token.length > maxTokenBytes) return refuse(c, problemFor('unauthorized', `The token is longer than ${maxTokenBytes} bytes.`));

    const cached = await fromCache(token);
    if (cached) {
      c.set('user', cached.user);
      c.set('tokenValidUntil', cached.expiresAt + toleranceMs);
      return next();
    }

    let result: Awaited<ReturnType<typeof verify>>;
    try {
      result = await verify(token);
    } catch (err) {
      if (err instanceof KeySetUnavailable) {
        return problemResponse(c, problemFor('auth_unavailable', 'The identity provider keys cannot be loaded right now; retry shortly.'), {
          'Retry-After': String(keys!.retryAfterS),
        });
      }
      return refuse(c, problemFor(err instanceof joseErrors.JWTExpired ? 'token_expired' : 'unauthorized', describe(err)));
    }
    const user = toUser(result.payload, roleClaim);
    if (!user) {
      return refuse(
        c,
        problemFor('unauthorized', `The token needs a non-empty "sub" and a "${roleClaim}" claim of "user" or "admin" (or a list holding one).`),
      );
    }
    if (verified.size >= MAX_CACHED) verified.clear();
    verified.set(token, { user, expiresAt: result.payload.exp! * 1000, ...(result.key ? { key: result.key, header: result.header } : {}) });
    c.set('user', user);
    c.set('tokenValidUntil', result.payload.exp! * 1000 + toleranceMs);
    await next();
  };
}

function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'The token has expired.';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `The token's "${err.claim}" claim is not acceptable (${err.reason}).`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'The token is signed with an algorithm that is not allowed.';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'No key of the identity provider matches the token ("kid" unknown).';
  if (err instanceof joseErrors.JOSEError) return `The token is invalid (${err.code}).`;
  return 'The token is invalid.';
}

/** 401 with a `WWW-Authenticate` challenge (RFC 6750); its description is the detail without quotes. */
function refuse(c: Context, problem: Problem): Response {
  const description = problem.detail.replace(/["\\]/g, "'");
  return problemResponse(c, problem, { 'WWW-Authenticate': `Bearer realm="ordersaga", error="invalid_token", error_description="${description}"` });
}

/**
 * The role: an absent claim means `user`; a string must be `user` or `admin`; an array (identity
 * providers list roles of many applications) gives `admin` if it holds "admin", else `user` if it
 * holds "user", and is refused when it holds neither. Anything else is refused.
 */
export function roleFrom(value: unknown): Role | null {
  if (value === undefined) return 'user';
  if (value === 'user' || value === 'admin') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    if (value.includes('admin')) return 'admin';
    if (value.includes('user')) return 'user';
  }
  return null;
}

function toUser(payload: JWTPayload, roleClaim: string): AuthUser | null {
  if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 128) return null;
  const role = roleFrom(payload[roleClaim]);
  if (!role) return null;
  return typeof payload.iss === 'string' ? { id: payload.sub, role, issuer: payload.iss.slice(0, 256) } : { id: payload.sub, role };
}

/** Admin-only routes. */
export function requireRole(role: Role): MiddlewareHandler {
  return async function requireRole(c, next) {
    if (c.get('user').role !== role) throw new OrderError('forbidden', `This needs the "${role}" role.`);
    await next();
  };
}
