import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../../src/auth/tokens.js';
import { startServerProcess, type ServerProcess } from '../support/process.js';
import type { FuzzServer } from './fuzz.js';
import type { FuzzTarget } from './requests.js';

export const FUZZ_SECRET = 'fuzz-secret-that-is-at-least-32-bytes-long!!';
const SKUS = ['FUZZ-A', 'FUZZ-B', 'FUZZ-C'];

/** A real server process on a fresh SQLite file, with a small catalog, for the fuzz to attack. */
export async function startFuzzServer(): Promise<{ server: FuzzServer & { process: ServerProcess }; target: FuzzTarget; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-fuzz-'));
  const dbPath = join(dir, 'fuzz.db');
  const proc = await startServerProcess({
    DB_PATH: dbPath,
    JWT_SECRET: FUZZ_SECRET,
    SEED_DEMO: 'false',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_SEC: '1000000',
    RATE_LIMIT_BURST: '1000000',
    RATE_LIMIT_IP_PER_SEC: '1000000',
    RATE_LIMIT_IP_BURST: '1000000',
    SYNC_WAIT_MS: '2000',
    PAYMENT_SLOW_MS: '50',
  });
  const secret = new TextEncoder().encode(FUZZ_SECRET);
  const token = (sub: string, role: 'user' | 'admin') => mintToken({ secret: FUZZ_SECRET, sub, role, expiresIn: '2h' });
  const admin = await token('fuzz-admin', 'admin');
  for (const sku of SKUS) {
    const res = await fetch(`${proc.url}/api/v1/inventory/${sku}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: sku, price_cents: 250, available: 1_000_000 }),
    });
    if (res.status !== 201) throw new Error(`could not create ${sku}: ${res.status}`);
  }
  return {
    server: { port: Number(new URL(proc.url).port), pid: proc.child.pid!, dbPath, process: proc },
    target: { skus: SKUS, token, secret },
    async stop() {
      proc.child.kill('SIGTERM');
      await proc.exited;
      // FUZZ_KEEP=1 keeps the server's database for a post-mortem of a failed run.
      if (process.env.FUZZ_KEEP === '1') process.stderr.write(`fuzz: kept ${dbPath}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
}
