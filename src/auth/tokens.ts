import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SignJWT } from 'jose';

export interface MintOptions {
  secret: string;
  sub: string;
  role: 'user' | 'admin';
  issuer?: string;
  audience?: string;
  /** e.g. '1h', '7d' (jose's time span syntax). */
  expiresIn?: string;
}

/** Signs an HS256 token with the claims the API checks. */
export function mintToken(o: MintOptions): Promise<string> {
  let jwt = new SignJWT({ role: o.role }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(o.sub).setIssuedAt().setExpirationTime(o.expiresIn ?? '24h');
  if (o.issuer) jwt = jwt.setIssuer(o.issuer);
  if (o.audience) jwt = jwt.setAudience(o.audience);
  return jwt.sign(new TextEncoder().encode(o.secret));
}

/** Where a development secret lives: next to the database, so the server and `npm run token` share it. */
export function devSecretPath(dbPath: string): string {
  return join(dirname(dbPath), 'dev-jwt-secret');
}

/**
 * Outside production, with no JWT_SECRET, a secret is generated once and kept (mode 0600)
 * beside the database: tokens then survive restarts and the token script can sign them.
 */
export function resolveDevSecret(dbPath: string, create: boolean): { secret: string; generated: boolean } | null {
  const path = devSecretPath(dbPath);
  if (existsSync(path)) {
    const secret = readFileSync(path, 'utf8').trim();
    if (Buffer.byteLength(secret) >= 32) return { secret, generated: false };
  }
  if (!create) return null;
  mkdirSync(dirname(path), { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { secret, generated: true };
}
