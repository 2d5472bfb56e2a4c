import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwks, providerKey, signToken, startJwksServer, type JwksServer, type ProviderKey } from '../support/identity-provider.js';
import { startServerProcess } from '../support/process.js';
import { startTestService, type TestResponse, type TestService } from '../support/service.js';
import { checkedFetch } from '../support/openapi.js';

/*
 * Tokens from an identity provider: a JWKS endpoint served by the test on 127.0.0.1 with real RSA,
 * EC and Ed25519 keys made by jose, and the real service verifying through createRemoteJWKSet.
 */

const ISS = 'https://idp.test';
const AUD = 'ordersaga';
const route = '/api/v1/inventory';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function expectProblem(res: TestResponse, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const body = await res.json();
  expect(body).toMatchObject({ status, code });
  return body;
}

/** Waits until `fetches()` has gone up to at least `n` (the start-up warm fetch runs in the background). */
async function waitForFetches(idp: JwksServer, n: number) {
  const deadline = Date.now() + 5_000;
  while (idp.fetches() < n) {
    if (Date.now() > deadline) throw new Error(`the service fetched the JWKS ${idp.fetches()} times, expected ${n}`);
    await sleep(10);
  }
}

let rsa: ProviderKey;
let ec: ProviderKey;
let ed: ProviderKey;
let es384: ProviderKey;
let stranger: ProviderKey;

beforeAll(async () => {
  [rsa, ec, ed, es384, stranger] = await Promise.all([
    providerKey('RS256', 'rsa-1'),
    providerKey('ES256', 'ec-1'),
    providerKey('EdDSA', 'ed-1'),
    providerKey('ES384', 'es384-1'),
    providerKey('ES256', 'ec-1'), // same kid as `ec`, another key: a forgery
  ]);
});

describe('with JWT_JWKS_URL', () => {
  let idp: JwksServer;
  let svc: TestService;
  const call = (token: string, method = 'GET', path = route, body?: unknown) => svc.call(method, path, { token, ...(body ? { body } : {}) });
  const sign = (key: ProviderKey, claims: JWTPayload = {}, header: Record<string, unknown> = {}) => signToken(key, { iss: ISS, aud: AUD, ...claims }, header);

  beforeAll(async () => {
    idp = await startJwksServer([rsa, ec, ed, es384]);
    svc = await startTestService({
      JWT_SECRET: '',
      JWT_JWKS_URL: idp.url,
      JWT_ISSUER: ISS,
      JWT_AUDIENCE: AUD,
      JWT_ROLE_CLAIM: 'roles',
      JWT_JWKS_COOLDOWN_MS: '1500',
    });
    await waitForFetches(idp, 1);
  });
  afterAll(async () => {
    await svc?.stop();
    await idp?.close();
  });

  it('accepts tokens signed with the provider RSA, EC and Ed25519 keys', async () => {
    for (const key of [rsa, ec, ed]) {
      const res = await call(await sign(key));
      expect(res.status, key.alg).toBe(200);
    }
  });

  it('reads the role from JWT_ROLE_CLAIM, as a string or an array, and refuses a list without a known role', async () => {
    const put = (token: string) => call(token, 'PUT', '/api/v1/inventory/SKU-IDP', { name: 'x', price_cents: 1, available: 1 });
    expect((await put(await sign(ec, { roles: ['offline_access', 'admin'] }))).status).toBe(201);
    expect((await put(await sign(ec, { roles: 'admin' }))).status).toBe(200);
    await expectProblem(await put(await sign(ec, { roles: ['user'] })), 403, 'forbidden');
    // The configured claim is the only one read: "role" means nothing here.
    await expectProblem(await put(await sign(ec, { role: 'admin', roles: undefined })), 403, 'forbidden');
    await expectProblem(await call(await sign(ec, { roles: ['offline_access'] })), 401, 'unauthorized');
    await expectProblem(await call(await sign(ec, { roles: 'root' })), 401, 'unauthorized');
  });

  it('refuses an algorithm outside JWT_ALGORITHMS even when the provider publishes its key, and "none"', async () => {
    await expectProblem(await call(await sign(es384)), 401, 'unauthorized');
    const header = Buffer.from(JSON.stringify({ alg: 'none', kid: ec.kid })).toString('base64url');
    const claims = Buffer.from(JSON.stringify({ sub: 'alice', iss: ISS, aud: AUD, exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    await expectProblem(await call(`${header}.${claims}.`), 401, 'unauthorized');
  });

  it('refuses an HS256 token that uses the provider public key as its secret', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: 'mallory', roles: ['admin'], iss: ISS, aud: AUD, exp: now + 600 };
    const asJwk = new TextEncoder().encode(JSON.stringify(rsa.publicJwk));
    const asPem = new TextEncoder().encode(await exportSPKI(await crypto.subtle.importKey('jwk', rsa.publicJwk, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, ['verify'])));
    for (const secret of [asJwk, asPem]) {
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(secret);
      await expectProblem(await call(forged), 401, 'unauthorized');
    }
  });

  it('refuses a bad signature: another key under a published kid', async () => {
    await expectProblem(await call(await sign(stranger)), 401, 'unauthorized');
  });

  it('allows JWT_CLOCK_TOLERANCE_S of skew on exp and nbf, and refuses beyond it', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await call(await sign(ed, { exp: now - 10 }))).status).toBe(200);
    await expectProblem(await call(await sign(ed, { exp: now - 60 })), 401, 'token_expired');
    expect((await call(await sign(ed, { nbf: now + 10 }))).status).toBe(200);
    const early = await expectProblem(await call(await sign(ed, { nbf: now + 120 })), 401, 'unauthorized');
    expect(early.detail).toContain('"nbf"');
  });

  it('requires exp and sub, and checks iss and aud', async () => {
    await expectProblem(await call(await sign(rsa, { exp: undefined })), 401, 'unauthorized');
    await expectProblem(await call(await sign(rsa, { sub: undefined })), 401, 'unauthorized');
    await expectProblem(await call(await sign(rsa, { iss: 'https://other-idp.test' })), 401, 'unauthorized');
    await expectProblem(await call(await sign(rsa, { aud: 'another-api' })), 401, 'unauthorized');
    await expectProblem(await call(await sign(rsa, { iss: undefined })), 401, 'unauthorized');
  });

  it('refuses a correctly signed token over 8 KiB before verifying it', async () => {
    const big = await sign(ec, { padding: 'x'.repeat(8 * 1024) });
    const body = await expectProblem(await call(big), 401, 'unauthorized');
    expect(body.detail).toContain('longer than 8192 bytes');
  });

  it('refetches once for an unknown kid and then refuses it; a flood of unknown kids fetches at most once per cool-down', async () => {
    await sleep(1_600); // past the cool-down of the last fetch
    const before = idp.fetches();
    const unknown = await Promise.all(Array.from({ length: 20 }, (_, i) => sign({ ...ec, kid: `unknown-${i}` })));
    const answers = await Promise.all(unknown.map((t) => call(t)));
    for (const res of answers) await expectProblem(res, 401, 'unauthorized');
    expect(idp.fetches()).toBe(before + 1);
    // Within the cool-down, more unknown kids fetch nothing.
    for (const t of unknown.slice(0, 5)) await expectProblem(await call(t), 401, 'unauthorized');
    expect(idp.fetches()).toBe(before + 1);
  });

  it('accepts a newly published key without a restart, and refuses a withdrawn key after the next refresh, even for a token it has cached', async () => {
    const token = await sign(rsa, { sub: 'carol' });
    expect((await call(token)).status).toBe(200); // verified and cached
    expect((await call(token)).status).toBe(200);

    const next = await providerKey('ES256', 'ec-2');
    idp.publish([ec, ed, es384, next]); // rsa-1 withdrawn, ec-2 new
    await sleep(1_600);
    const before = idp.fetches();
    expect((await call(await sign(next))).status).toBe(200); // the unknown kid made the service refetch
    expect(idp.fetches()).toBe(before + 1);
    const refused = await expectProblem(await call(token), 401, 'unauthorized');
    expect(refused.detail).toContain('kid');
    // Keys still published keep working after the refresh.
    expect((await call(await sign(ed))).status).toBe(200);
    idp.publish([rsa, ec, ed, es384]);
  });
});

describe('when the identity provider fails', () => {
  let idp: JwksServer;
  let svc: TestService;
  beforeAll(async () => {
    idp = await startJwksServer([ec]);
    svc = await startTestService({ JWT_SECRET: '', JWT_JWKS_URL: idp.url, JWT_JWKS_COOLDOWN_MS: '2000' });
    await waitForFetches(idp, 1);
  });
  afterAll(async () => {
    await svc?.stop();
    await idp?.close();
  });

  it('answers 503 auth_unavailable for keys it cannot fetch, tries at most once per cool-down, and keeps the keys it has', async () => {
    const known = await signToken(ec);
    expect((await svc.call('GET', route, { token: known })).status).toBe(200);
    await sleep(2_050);
    idp.fail(500);
    const before = idp.fetches();
    for (let i = 0; i < 10; i++) {
      const res = await svc.call('GET', route, { token: await signToken({ ...ec, kid: `rotated-${i}` }) });
      await expectProblem(res, 503, 'auth_unavailable');
      expect(res.headers.get('retry-after')).toBe('2');
    }
    // jose alone would fetch for every one of them (its cool-down counts from the last success).
    expect(idp.fetches()).toBe(before + 1);
    expect((await svc.call('GET', route, { token: known })).status).toBe(200);

    idp.fail(null);
    await sleep(2_050);
    await expectProblem(await svc.call('GET', route, { token: await signToken({ ...ec, kid: 'still-unknown' }) }), 401, 'unauthorized');
    expect(idp.fetches()).toBe(before + 2);
  });
});

describe('with JWT_JWKS_FILE', () => {
  it('reloads the key set when the file changes, refusing a withdrawn key it had cached, and keeps the keys when a change is unusable', async () => {
    const first = await startTestService({ JWT_SECRET: '', JWT_JWKS_FILE: '/nonexistent' }).catch((err: Error) => err);
    expect(first).toBeInstanceOf(Error);
    expect((first as Error).message).toMatch(/^JWT_JWKS_FILE: cannot read \/nonexistent/);

    const dir = mkdtempSync(join(tmpdir(), 'ordersaga-jwks-'));
    const file = join(dir, 'jwks.json');
    const replace = (content: string) => {
      writeFileSync(`${file}.tmp`, content);
      renameSync(`${file}.tmp`, file); // how a deploy (or a Kubernetes secret) swaps it: atomically
    };
    replace(JSON.stringify(jwks([rsa])));
    const svc = await startTestService({ JWT_SECRET: '', JWT_JWKS_FILE: file });
    try {
      const oldToken = await signToken(rsa);
      const newToken = await signToken(ed);
      expect((await svc.call('GET', route, { token: oldToken })).status).toBe(200);
      expect((await svc.call('GET', route, { token: newToken })).status).toBe(401);

      replace(JSON.stringify(jwks([ed])));
      const deadline = Date.now() + 5_000;
      while ((await svc.call('GET', route, { token: newToken })).status !== 200) {
        if (Date.now() > deadline) throw new Error('the changed JWKS file was never picked up');
        await sleep(100);
      }
      await expectProblem(await svc.call('GET', route, { token: oldToken }), 401, 'unauthorized');

      replace('{"keys": [ half a file');
      await sleep(2_500);
      expect((await svc.call('GET', route, { token: newToken })).status).toBe(200);
    } finally {
      await svc.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a real server process with JWT_JWKS_URL', () => {
  it('verifies provider tokens and prints no development tokens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ordersaga-idp-process-'));
    const idp = await startJwksServer([ed]);
    const server = await startServerProcess({ DB_PATH: join(dir, 'p.db'), JWT_SECRET: '', JWT_JWKS_URL: idp.url, LOG_LEVEL: 'warn' });
    try {
      const ok = await checkedFetch(`${server.url}${route}`, { headers: { Authorization: `Bearer ${await signToken(ed)}` } });
      expect(ok.status).toBe(200);
      const forged = await checkedFetch(`${server.url}${route}`, { headers: { Authorization: `Bearer ${await signToken(stranger)}` } });
      expect(forged.status).toBe(401);
      expect(server.output()).not.toContain('user token');
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
      await idp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
