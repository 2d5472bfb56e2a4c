/**
 * Mints a JWT for the API:  npm run token -- --sub alice --role user [--expires 1h]
 * Signs with JWT_SECRET, or with the development secret the server keeps beside DB_PATH.
 */
import { parseArgs } from 'node:util';
import { mintToken, resolveDevSecret } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: { sub: { type: 'string' }, role: { type: 'string', default: 'user' }, expires: { type: 'string', default: '24h' } },
    strict: true,
  }).values;
} catch (err) {
  fail(`${(err as Error).message}\nusage: npm run token -- --sub <user id> [--role user|admin] [--expires 24h]`);
}
if (!args.sub) fail('--sub is required, e.g. npm run token -- --sub alice --role user');
if (args.role !== 'user' && args.role !== 'admin') fail('--role must be "user" or "admin"');

let config;
try {
  config = loadConfig();
} catch (err) {
  fail((err as Error).message);
}
if (config.jwt.jwksUrl || config.jwt.jwksFile) fail('JWT_JWKS_URL or JWT_JWKS_FILE is set: tokens come from the identity provider, not from this script');
const secret = config.jwt.secret ?? resolveDevSecret(config.dbPath, config.env !== 'production')?.secret;
if (!secret) fail('no JWT_SECRET set and no development secret found');

process.stdout.write(
  `${await mintToken({ secret, sub: args.sub, role: args.role, issuer: config.jwt.issuer, audience: config.jwt.audience, expiresIn: args.expires })}\n`,
);
