import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';

describe('configuration', () => {
  it('uses the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      dbPath: './data/ordersaga.db',
      syncWaitMs: 10_000,
      paymentSlowMs: 3_000,
      orderTimeoutMs: 30_000,
      inventoryThreads: 2,
      rateLimit: { perSecond: 50, burst: 100 },
      logLevel: 'info',
      seedDemo: true,
      retry: { max_attempts: 3, base_ms: 100 },
      database: { url: undefined, poolSize: 10 },
      leaseMs: 10_000,
    });
    expect(c.jwt.secret).toBeUndefined();
  });

  it('defaults the event stream settings as documented and checks them', () => {
    expect(loadConfig({}).sse).toEqual({ heartbeatMs: 15_000, maxStreams: 500, maxStreamsPerUser: 10 });
    expect(loadConfig({ SSE_HEARTBEAT_MS: '250', SSE_MAX_STREAMS: '20', SSE_MAX_STREAMS_PER_USER: '2' }).sse).toEqual({ heartbeatMs: 250, maxStreams: 20, maxStreamsPerUser: 2 });
    expect(() => loadConfig({ SSE_HEARTBEAT_MS: '0', SSE_MAX_STREAMS: 'many', SSE_MAX_STREAMS_PER_USER: '-1' })).toThrowError(/SSE_HEARTBEAT_MS[\s\S]*SSE_MAX_STREAMS[\s\S]*SSE_MAX_STREAMS_PER_USER/);
  });

  it('names each start of an instance uniquely unless INSTANCE_ID is set', () => {
    expect(loadConfig({}).instanceId).not.toBe(loadConfig({}).instanceId);
    expect(loadConfig({ INSTANCE_ID: 'shop-a' }).instanceId).toBe('shop-a');
    expect(() => loadConfig({ INSTANCE_ID: 'two words' })).toThrowError(/INSTANCE_ID/);
  });

  it('takes a PostgreSQL DATABASE_URL and refuses anything else', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u@db:5432/shop' }).database.url).toBe('postgres://u@db:5432/shop');
    expect(() => loadConfig({ DATABASE_URL: 'mysql://u@db/shop' })).toThrowError(/DATABASE_URL: must be a postgres:\/\//);
    expect(() => loadConfig({ LEASE_MS: '10' })).toThrowError(/LEASE_MS/);
  });

  it('fails fast, naming every bad variable at once', () => {
    expect(() => loadConfig({ PORT: 'eighty', INVENTORY_THREADS: '0', LOG_LEVEL: 'loud', SEED_DEMO: 'maybe' })).toThrowError(
      /Invalid configuration:[\s\S]*PORT[\s\S]*INVENTORY_THREADS[\s\S]*LOG_LEVEL[\s\S]*SEED_DEMO/,
    );
  });

  it('rejects a JWT secret shorter than 32 bytes', () => {
    expect(() => loadConfig({ JWT_SECRET: 'short' })).toThrowError(/JWT_SECRET: must be at least 32 bytes/);
  });

  it('refuses to run in production without a JWT secret', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrowError(/JWT_SECRET: required when NODE_ENV=production/);
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).jwt.secret).toHaveLength(32);
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ PORT: '', JWT_SECRET: '' })).toMatchObject({ port: 3000, jwt: { secret: undefined } });
  });

  it('defaults the security settings as documented', () => {
    const c = loadConfig({});
    expect(c.jwt).toMatchObject({ jwksUrl: undefined, jwksFile: undefined, algorithms: ['RS256', 'ES256', 'EdDSA'], clockToleranceS: 30, roleClaim: 'role', jwksCooldownMs: 30_000, jwksMaxAgeMs: 600_000 });
    expect(c.rateLimit).toMatchObject({ perAddress: { perSecond: 100, burst: 200 }, storage: { redisUrl: undefined, keyPrefix: 'ordersaga:' } });
    expect(c.trustProxy).toEqual([]);
    expect(c.http).toEqual({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, maxHeaderBytes: 16_384, maxConnections: 1_000 });
    expect(c.corsOrigins).toEqual([]);
  });

  it('takes exactly one way of verifying tokens, and one is required in production', () => {
    const secret = 'x'.repeat(32);
    expect(() => loadConfig({ JWT_SECRET: secret, JWT_JWKS_URL: 'https://idp.example/jwks' })).toThrowError(/JWT_SECRET, JWT_JWKS_URL: set only one/);
    expect(() => loadConfig({ JWT_JWKS_URL: 'https://idp.example/jwks', JWT_JWKS_FILE: '/etc/jwks.json' })).toThrowError(/JWT_JWKS_URL, JWT_JWKS_FILE: set only one/);
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrowError(/unless JWT_JWKS_URL or JWT_JWKS_FILE is set/);
    expect(loadConfig({ NODE_ENV: 'production', JWT_JWKS_URL: 'https://idp.example/jwks' }).jwt.jwksUrl).toBe('https://idp.example/jwks');
    expect(loadConfig({ NODE_ENV: 'production', JWT_JWKS_FILE: '/etc/jwks.json' }).jwt.jwksFile).toBe('/etc/jwks.json');
  });

  it('fetches keys only over https (http only from localhost) and allows only asymmetric algorithms', () => {
    expect(() => loadConfig({ JWT_JWKS_URL: 'http://idp.example/jwks' })).toThrowError(/JWT_JWKS_URL: must be an https:\/\/ URL/);
    expect(loadConfig({ JWT_JWKS_URL: 'http://127.0.0.1:8080/jwks' }).jwt.jwksUrl).toBe('http://127.0.0.1:8080/jwks');
    for (const algorithms of ['HS256', 'RS256,none', 'rs256', ',']) {
      expect(() => loadConfig({ JWT_JWKS_URL: 'https://idp.example/jwks', JWT_ALGORITHMS: algorithms }), algorithms).toThrowError(/JWT_ALGORITHMS/);
    }
    expect(loadConfig({ JWT_JWKS_URL: 'https://idp.example/jwks', JWT_ALGORITHMS: 'PS256, ES384' }).jwt.algorithms).toEqual(['PS256', 'ES384']);
    expect(() => loadConfig({ JWT_ALGORITHMS: 'RS256' })).toThrowError(/JWT_ALGORITHMS: applies only with JWT_JWKS_URL or JWT_JWKS_FILE/);
  });

  it('checks the limits, the proxy list, the CORS origins and the Redis URL', () => {
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '20000', REQUEST_TIMEOUT_MS: '10000' })).toThrowError(/HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS/);
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' })).toThrowError(/TRUST_PROXY/);
    expect(() => loadConfig({ TRUST_PROXY: 'proxy.internal' })).toThrowError(/TRUST_PROXY/);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, ::1, fd00::/8' }).trustProxy).toEqual(['10.0.0.0/8', '::1', 'fd00::/8']);
    for (const origins of ['*', 'https://shop.example/', 'https://shop.example/path', 'shop.example']) {
      expect(() => loadConfig({ CORS_ORIGINS: origins }), origins).toThrowError(/CORS_ORIGINS/);
    }
    expect(() => loadConfig({ REDIS_URL: 'http://127.0.0.1:6379' })).toThrowError(/REDIS_URL/);
    expect(loadConfig({ RATE_LIMIT_IP_PER_SEC: '5', RATE_LIMIT_IP_BURST: '10' }).rateLimit.perAddress).toEqual({ perSecond: 5, burst: 10 });
  });

  it('leaves /metrics open without METRICS_TOKEN and takes a token of 16 to 512 printable characters', () => {
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(loadConfig({ METRICS_TOKEN: 'a-scrape-token-16' }).metricsToken).toBe('a-scrape-token-16');
    for (const bad of ['short', 'has a space in it ok', 'x'.repeat(513)]) expect(() => loadConfig({ METRICS_TOKEN: bad }), bad).toThrowError(/METRICS_TOKEN/);
  });
});
