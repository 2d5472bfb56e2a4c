import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

/** A signing key of the test identity provider: a real key pair made by jose, and its public JWK. */
export interface ProviderKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function providerKey(alg: 'RS256' | 'ES256' | 'EdDSA' | 'ES384' | 'PS256', kid: string): Promise<ProviderKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export const jwks = (keys: ProviderKey[]) => ({ keys: keys.map((k) => k.publicJwk) });

/** Signs a token as the provider would: `sub`, a role, `exp` in 10 min, unless `claims` say otherwise (`undefined` drops one). */
export function signToken(key: ProviderKey, claims: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = { sub: 'alice', role: 'user', iat: now, exp: now + 600, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

/** The provider's JWKS endpoint on 127.0.0.1: what it publishes can change, and it can be made to fail. */
export interface JwksServer {
  url: string;
  /** How many times the key set was requested. */
  fetches(): number;
  publish(keys: ProviderKey[]): void;
  /** Answer every request with this status (500, …) until `fail(null)`. */
  fail(status: number | null): void;
  close(): Promise<void>;
}

export async function startJwksServer(keys: ProviderKey[]): Promise<JwksServer> {
  let published = jwks(keys);
  let failing: number | null = null;
  let fetches = 0;
  const server: Server = createServer((req, res) => {
    fetches += 1;
    if (failing !== null) {
      res.writeHead(failing, { 'Content-Type': 'text/plain' }).end('provider down');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(published));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    fetches: () => fetches,
    publish: (next) => {
      published = jwks(next);
    },
    fail: (status) => {
      failing = status;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
