import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type FetchImplementation, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from '../logger.js';

/**
 * An identity provider's public keys, as jose's key resolver: it picks the key by the token's
 * `alg` and `kid`. Each (re)load builds new key objects, so a key object that verified a token
 * is the current one only until the next load (the verified-token cache relies on that).
 */
export interface KeySet {
  /** The URL or the file, for logs and errors. */
  readonly source: string;
  readonly getKey: JWTVerifyGetKey;
  /** Seconds a client should wait after `KeySetUnavailable` before trying again. */
  readonly retryAfterS: number;
  /** Loads the keys now (remote: one fetch); resolves either way, a failure is logged. */
  warm(): Promise<void>;
  close(): void;
}

/** The keys cannot be had (the provider is down or answers nonsense): not the client's fault, a 503. */
export class KeySetUnavailable extends Error {
  override readonly name = 'KeySetUnavailable';
}

export interface RemoteKeySetOptions {
  /** No refetch for an unknown `kid` sooner than this after the last successful fetch (jose's `cooldownDuration`). */
  cooldownMs: number;
  /** Keys older than this are fetched again before use (jose's `cacheMaxAge`). */
  maxAgeMs: number;
  /** One fetch may take this long (jose's `timeoutDuration`). */
  timeoutMs?: number;
  /** After a failed fetch, no new attempt for this long (default: the cool-down, at most 5 s). */
  retryAfterFailureMs?: number;
  logger: Logger;
  fetch?: typeof fetch;
}

function isJwkSet(value: unknown): value is JSONWebKeySet {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { keys?: unknown }).keys) &&
    (value as { keys: unknown[] }).keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))
  );
}

/**
 * A JWKS endpoint through jose's `createRemoteJWKSet`: keys cached for `maxAgeMs`, refetched at
 * most once per `cooldownMs` when a token names an unknown `kid`.
 *
 * jose counts its cool-down from the last *successful* fetch, so while the provider fails every
 * token with an unknown `kid` (or every token, once the keys are older than `maxAgeMs`) would
 * fetch again, back to back. The fetch given to jose therefore refuses to touch the network for
 * `retryAfterFailureMs` after a failure, and reports every failure as `KeySetUnavailable`.
 */
export function remoteKeySet(url: string, options: RemoteKeySetOptions): KeySet {
  const { logger } = options;
  const doFetch = options.fetch ?? fetch;
  const retryAfterFailureMs = options.retryAfterFailureMs ?? Math.min(options.cooldownMs, 5_000);
  let failedAt = -Infinity;
  let fetches = 0;

  const guardedFetch: FetchImplementation = async (input, init) => {
    const since = Date.now() - failedAt;
    if (since < retryAfterFailureMs) {
      throw new KeySetUnavailable(`the last fetch of the JWKS failed ${since} ms ago; the next attempt waits ${retryAfterFailureMs} ms`);
    }
    try {
      const res = await doFetch(input, init);
      if (res.status !== 200) throw new KeySetUnavailable(`the JWKS endpoint answered ${res.status}`);
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new KeySetUnavailable('the JWKS endpoint answered with something that is not JSON');
      }
      if (!isJwkSet(json)) throw new KeySetUnavailable('the JWKS endpoint answered JSON that is not a key set ({"keys": [...]})');
      fetches += 1;
      logger.info({ jwks: url, keys: json.keys.length, fetches }, 'fetched the identity provider keys');
      return new Response(text, { status: 200, headers: { 'Content-Type': 'application/json' } });
    } catch (err) {
      failedAt = Date.now();
      logger.warn({ err, jwks: url }, 'fetching the identity provider keys failed');
      throw err instanceof KeySetUnavailable ? err : new KeySetUnavailable(`the JWKS could not be fetched: ${(err as Error).message}`, { cause: err });
    }
  };

  const remote = createRemoteJWKSet(new URL(url), {
    cooldownDuration: options.cooldownMs,
    cacheMaxAge: options.maxAgeMs,
    timeoutDuration: options.timeoutMs ?? 5_000,
    [customFetch]: guardedFetch,
  });

  return {
    source: url,
    retryAfterS: Math.max(1, Math.ceil(retryAfterFailureMs / 1000)),
    getKey: async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSTimeout) throw new KeySetUnavailable('the JWKS endpoint did not answer in time', { cause: err });
        throw err;
      }
    },
    async warm() {
      try {
        await remote.reload();
      } catch {
        // Logged by the fetch; tokens get 503 auth_unavailable until a fetch succeeds.
      }
    },
    close() {},
  };
}

export interface FileKeySetOptions {
  logger: Logger;
  /** How often the file is checked for a change (fs.watchFile, which also sees a file replaced by a rename). */
  pollMs?: number;
}

/**
 * A JWKS in a local file (`JWT_JWKS_FILE`), read at once (a missing or bad file fails the start)
 * and again whenever it changes. A change that cannot be used (half written, not a key set) keeps
 * the previous keys and is logged.
 */
export function fileKeySet(path: string, options: FileKeySetOptions): KeySet {
  const { logger } = options;
  const load = () => {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`JWT_JWKS_FILE: cannot read ${path} as JSON: ${(err as Error).message}`);
    }
    if (!isJwkSet(json)) throw new Error(`JWT_JWKS_FILE: ${path} is not a JSON Web Key Set ({"keys": [...]})`);
    return { set: createLocalJWKSet(json), count: json.keys.length };
  };
  let current = load().set;

  const onChange = (now: Stats, before: Stats) => {
    if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) return;
    try {
      const next = load();
      current = next.set;
      logger.info({ jwks: path, keys: next.count }, 'reloaded the identity provider keys from the file');
    } catch (err) {
      logger.error({ err, jwks: path }, 'the JWKS file changed but cannot be used; keeping the previous keys');
    }
  };
  watchFile(path, { interval: options.pollMs ?? 1_000, persistent: false }, onChange);

  return {
    source: path,
    retryAfterS: 1,
    getKey: (header, token) => current(header, token),
    async warm() {},
    close() {
      unwatchFile(path, onChange);
    },
  };
}

export interface KeySetConfig {
  jwksUrl: string | undefined;
  jwksFile: string | undefined;
  jwksCooldownMs: number;
  jwksMaxAgeMs: number;
}

/** The key set that `JWT_JWKS_URL` or `JWT_JWKS_FILE` names, or `undefined` for HS256 with a secret. */
export function keySetFromConfig(jwt: KeySetConfig, logger: Logger): KeySet | undefined {
  if (jwt.jwksUrl) return remoteKeySet(jwt.jwksUrl, { cooldownMs: jwt.jwksCooldownMs, maxAgeMs: jwt.jwksMaxAgeMs, logger });
  if (jwt.jwksFile) return fileKeySet(jwt.jwksFile, { logger });
  return undefined;
}
