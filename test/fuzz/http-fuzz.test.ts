import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAudit, checkLedger, runFuzz, type FuzzResult } from './fuzz.js';
import { startFuzzServer } from './fuzz.server.js';

/*
 * The fuzz suite at the size `npm test` affords (FUZZ_RUNS, default 1,000 requests); the
 * long run is `npm run fuzz -- --runs 20000`. A failure prints the shrunk request and the
 * seed: replay with `FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz`.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
let fuzz: Awaited<ReturnType<typeof startFuzzServer>>;
let result: FuzzResult;

beforeAll(async () => {
  fuzz = await startFuzzServer();
}, 30_000);
afterAll(() => fuzz?.stop());

describe('the API under generated hostile requests', () => {
  it(`answers ${RUNS} of them without a 5xx, each error as problem+json with a documented code and no internals`, async () => {
    result = await runFuzz(fuzz.server, fuzz.target, {
      runs: RUNS,
      ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}),
      ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
    });
    expect(result.requests).toBeGreaterThanOrEqual(RUNS);
    // The generator reaches far: many kinds of request and many different refusals.
    expect(result.kinds).toBeGreaterThan(40);
    expect(Object.keys(result.codes).length).toBeGreaterThan(8);
  }, 300_000);

  it('leaves no order that no answer accepted, and stock and money adding up', async () => {
    expect(await checkLedger(fuzz.server.dbPath, result.accepted)).toEqual([]);
  }, 90_000);

  it('leaves an audit entry, with a documented outcome, for every admin action it got through', () => {
    const audit = checkAudit(fuzz.server.dbPath, fuzz.server.process.output());
    expect(audit.problems).toEqual([]);
    expect(audit.entries).toBeGreaterThan(3); // more than the set-up's three stock changes
  });

  it('leaves the server healthy, its memory near where it started', async () => {
    const health = await fetch(`${fuzz.server.process.url}/healthz`);
    expect(health.status).toBe(200);
    expect(result.rss_mb.end).toBeLessThan(result.rss_mb.start + 150);
  });
});
