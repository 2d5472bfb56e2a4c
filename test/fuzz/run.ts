/**
 * The long fuzz run against a real server process:
 *
 *   npm run fuzz -- --runs 20000 [--seed N --path P]
 *
 * Prints what it sent and saw (requests, statuses, distinct codes, time, memory) and exits
 * non-zero on the first bad answer (printing the shrunk request and its seed) or when stock,
 * money or orders do not add up afterwards.
 */
import { parseArgs } from 'node:util';
import { checkAudit, checkLedger, runFuzz } from './fuzz.js';
import { startFuzzServer } from './fuzz.server.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '20000' }, seed: { type: 'string' }, path: { type: 'string' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write('fuzz: --runs takes a whole number\n');
  process.exit(2);
}

// A seed of our own when none is given, printed, so that a run failing after the last answer
// (the ledger, the audit check) can be replayed too.
const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
process.stdout.write(`fuzz: seed ${seed}\n`);

const fuzz = await startFuzzServer();
let failed = false;
try {
  const result = await runFuzz(fuzz.server, fuzz.target, {
    runs,
    seed,
    ...(values.path ? { path: values.path } : {}),
    progress: (n) => process.stdout.write(`  ${n} requests…\n`),
  });
  const ledger = await checkLedger(fuzz.server.dbPath, result.accepted);
  const audit = checkAudit(fuzz.server.dbPath, fuzz.server.process.output());
  const healthy = (await fetch(`${fuzz.server.process.url}/healthz`)).status === 200;
  process.stdout.write(
    `${JSON.stringify(
      {
        seed,
        requests: result.requests,
        seconds: result.seconds,
        per_second: Math.round(result.requests / result.seconds),
        distinct_request_kinds: result.kinds,
        distinct_codes: Object.keys(result.codes).length,
        codes: result.codes,
        statuses: result.statuses,
        accepted_orders: result.accepted.length,
        rss_mb: result.rss_mb,
        healthy,
        ledger: ledger.length === 0 ? 'ok' : ledger,
        audit_entries: audit.entries,
        audit: audit.problems.length === 0 ? 'ok' : audit.problems,
      },
      null,
      2,
    )}\n`,
  );
  failed = ledger.length > 0 || audit.problems.length > 0 || !healthy;
} catch (err) {
  // fast-check 4 keeps the property's own error (what was wrong with the answer) as the cause.
  const cause = (err as Error).cause;
  process.stderr.write(`${(err as Error).message}\n${cause instanceof Error ? `Cause: ${cause.message}\n` : ''}`);
  failed = true;
} finally {
  await fuzz.stop();
}
process.exit(failed ? 1 : 0);
