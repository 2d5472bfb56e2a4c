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
});
