/**
 * ordersaga benchmark (issue #5).
 *
 *   npm run bench                                  every scenario, 5 s each after a 1 s warm-up
 *   npm run bench -- --only sync-c50,items-10      some scenarios
 *   npm run bench -- --duration 10 --runs 3        longer, repeated (median reported)
 *   npm run bench -- --only sync-c50 --profile     + node --cpu-prof of the server
 *   npm run bench -- --soak 300 [--rate 1000]      hold a rate, watch the server's RSS
 *   npm run bench -- --list                        scenario names
 *   npm run bench -- --store postgres --instances 3 --only sync-c50
 *                                                  N instances on one PostgreSQL database
 *   npm run bench -- --workers 1,4                 order loops per server (WORKERS), interleaved
 *
 * The service is built once (`npm run build`). Each scenario run then starts
 * `node dist/main.js` on a fresh temporary SQLite file, creates its catalog through the API
 * as an admin, warms up, drives load with autocannon from this process (100 users'
 * pre-minted tokens), samples the server's CPU/RSS from /proc, waits until no order is
 * `processing` and checks the stock and money invariants on the database (a violation
 * exits non-zero). Results go to bench/results/<timestamp>.json and a table on stdout.
 *
 * With `--store postgres` each run gets a database of its own on BENCH_DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres), dropped afterwards; with
 * `--instances N` it starts N servers on it (same JWT secret, INSTANCE_ID bench-1…N) and
 * divides the connections between them. Server CPU is summed over the instances; memory
 * and main-thread states are the first instance's.
 *
 * `--workers` (default `1,<cores>`) lists the WORKERS settings to compare: every run of a
 * scenario runs each of them in turn (side by side, as the machine drifts), and the summary
 * gives each one's medians and the ratio of the others to the first. `default` leaves
 * WORKERS unset (the service's default, one loop). CPU and memory are the whole process
 * tree's (a primary and its loops); main-thread states are the first loop's.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { mintToken } from '../src/auth/tokens.js';
import { median, runLoad, runLoadSpread, summarise, type LatencySummary, type LoadResult } from './load.js';
import { formatSummary, profileFiles, summariseProfile, type ProfileSummary } from './profile-summary.js';
import { PLENTY_SKUS, SCARCE_SKUS, SCARCE_STOCK, SCENARIOS, SOAK, type CatalogKind, type Scenario, type ScenarioContext } from './scenarios.js';
import { buildService, cpuPercent, firstLoop, keepTemporaryDirectories, machinePercent, MainThreadSampler, markCpu, markMachine, memoryMb, round1, ROOT, RssSampler, startServer, type MainThreadStates, type ServerHandle } from './server.js';
import { completedBetween, verifyInvariants, type StoreTarget, type VerifyResult } from './verify.js';

const USERS = 100;
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const PROFILES_DIR = join(RESULTS_DIR, 'profiles');

// --- arguments ------------------------------------------------------------------------------

const parseOptions = {
  options: {
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    only: { type: 'string' },
    runs: { type: 'string', default: '1' },
    profile: { type: 'boolean', default: false },
    'profile-scenario': { type: 'string' },
    soak: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string' },
    'rss-limit': { type: 'string', default: '300' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'no-thread-states': { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite' },
    instances: { type: 'string', default: '1' },
    workers: { type: 'string', default: `1,${os.availableParallelism()}` },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
} as const;

function parseArgv() {
  try {
    return parseArgs(parseOptions).values;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message} (see --help)\n`);
    process.exit(2);
  }
}
const argv = parseArgv();
if (argv.store !== 'sqlite' && argv.store !== 'postgres') {
  process.stderr.write(`bench: --store must be sqlite or postgres (got ${argv.store})\n`);
  process.exit(2);
}
const INSTANCES = Number(argv.instances);
if (!Number.isInteger(INSTANCES) || INSTANCES < 1 || (INSTANCES > 1 && argv.store !== 'postgres')) {
  process.stderr.write('bench: --instances must be a whole number ≥ 1, and more than one needs --store postgres\n');
  process.exit(2);
}
/** WORKERS settings to compare; `default` leaves it unset. */
const WORKERS_LIST = argv.workers.split(',').map((w) => w.trim()).filter(Boolean);
if (WORKERS_LIST.length === 0 || WORKERS_LIST.some((w) => w !== 'default' && !(Number.isInteger(Number(w)) && Number(w) >= 1 && Number(w) <= 64))) {
  process.stderr.write(`bench: --workers takes a comma list of whole numbers 1..64 or "default" (got ${argv.workers})\n`);
  process.exit(2);
}
/** What `default` means (the service's default, src/config.ts). */
const DEFAULT_WORKERS = 1;
const workersLabel = (w: string) => (w === 'default' ? `W=${DEFAULT_WORKERS} (default)` : `W=${w}`);
const workersEnv = (w: string): Record<string, string> => (w === 'default' ? {} : { WORKERS: w });

const BENCH_DATABASE_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** A PostgreSQL database of its own for one run, dropped afterwards. */
async function benchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ordersaga_bench_${process.pid}_${Date.now()}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: BENCH_DATABASE_URL });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(BENCH_DATABASE_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** The servers of one run: one on SQLite, or N instances on one fresh PostgreSQL database. */
async function startServers(opts: { cpuProfDir?: string; workers: string }): Promise<{ servers: ServerHandle[]; target: StoreTarget; drop(): Promise<void> }> {
  if (argv.store === 'sqlite') {
    const server = await startServer({ ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}), env: workersEnv(opts.workers) });
    return { servers: [server], target: server.dbPath, drop: async () => undefined };
  }
  const db = await benchDatabase();
  const secret = randomBytes(48).toString('base64url');
  try {
    const servers: ServerHandle[] = [];
    for (let i = 1; i <= INSTANCES; i++) {
      // One after another: the first applies the migrations, the others find them done.
      servers.push(await startServer({ ...(i === 1 && opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}), env: { DATABASE_URL: db.url, JWT_SECRET: secret, INSTANCE_ID: `bench-${i}`, ...workersEnv(opts.workers) } }));
    }
    return { servers, target: { url: db.url }, drop: db.drop };
  } catch (err) {
    await db.drop().catch(() => undefined);
    throw err;
  }
}

function usage(code: number): never {
  const text = readFileSync(new URL(import.meta.url), 'utf8').match(/\/\*\*([\s\S]*?)\*\//)![1]!.replace(/^ \* ?/gm, '');
  process.stdout.write(`${text.trim()}\n\nOptions: --duration S (5)  --warmup S (1)  --runs K (1)  --only a,b  --profile  --profile-scenario NAME
         --soak S  --rate R (1000)  --connections C  --rss-limit MB (300)  --no-build  --keep (keep temp DBs)
         --no-thread-states (skip sampling the server main thread's state)  --list
         --store sqlite|postgres (sqlite)  --instances N (1; more than one needs --store postgres)
         --workers LIST (1,<cores>: WORKERS settings compared, interleaved)\n`);
  process.exit(code);
}

const num = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`bench: --${name} must be a number ≥ ${min} (got ${v})\n`);
    process.exit(2);
  }
  return n;
};

// --- helpers --------------------------------------------------------------------------------

const log = (msg: string) => process.stdout.write(`${msg}\n`);
const r1 = round1;
const r2 = (n: number) => Math.round(n * 100) / 100;

function machineInfo() {
  const cpus = os.cpus();
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { cwd: ROOT, encoding: 'utf8' }).trim();
    } catch {
      return null;
    }
  };
  return {
    hostname: os.hostname(),
    cpu_model: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    mem_total_gb: r1(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    git_commit: git('rev-parse', 'HEAD'),
    git_dirty: (git('status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json') ?? '') !== '',
    autocannon: (JSON.parse(readFileSync(join(ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version,
  };
}

async function mintTokens(secret: string): Promise<{ admin: string; users: string[] }> {
  const admin = await mintToken({ secret, sub: 'bench-admin', role: 'admin', expiresIn: '12h' });
  const users = await Promise.all(
    Array.from({ length: USERS }, (_, i) => mintToken({ secret, sub: `bench-user-${String(i).padStart(3, '0')}`, role: 'user', expiresIn: '12h' })),
  );
  return { admin, users };
}

async function putProduct(url: string, admin: string, sku: string, body: { name: string; price_cents: number; available: number }) {
  const res = await fetch(`${url}/api/v1/inventory/${sku}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 200 && res.status !== 201) throw new Error(`PUT /api/v1/inventory/${sku}: ${res.status} ${await res.text()}`);
}

/**
 * The catalog, through the API as an admin. "plenty": 200 SKUs with stock for far more
 * orders than the run can place (a 409 there is an error); "scarce": 50 SKUs × 4 units.
 */
async function setupCatalog(url: string, admin: string, kind: CatalogKind, seconds: number): Promise<string[]> {
  const count = kind === 'plenty' ? PLENTY_SKUS : SCARCE_SKUS;
  // Up to 50 lines per order at an assumed (generous) 5,000 orders/s, spread over 200 SKUs, ×2.
  const stock = kind === 'plenty' ? Math.min(1e9, Math.max(100_000, Math.ceil(seconds * 5000 * (50 / PLENTY_SKUS) * 2))) : SCARCE_STOCK;
  const skus = Array.from({ length: count }, (_, i) => `${kind === 'plenty' ? 'BENCH' : 'SCARCE'}-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < skus.length; i += 25) {
    await Promise.all(
      skus.slice(i, i + 25).map((sku, j) => putProduct(url, admin, sku, { name: `Bench product ${sku}`, price_cents: 100 + ((i + j) * 37) % 9900, available: stock })),
    );
  }
  return skus;
}

const restock = (url: string, admin: string, skus: readonly string[]) =>
  Promise.all(skus.map((sku, i) => putProduct(url, admin, sku, { name: `Bench product ${sku}`, price_cents: 100 + (i * 37) % 9900, available: SCARCE_STOCK })));

// --- one scenario run -----------------------------------------------------------------------

interface KindReport {
  responses: number;
  per_s: number;
  statuses: Record<string, number>;
  latency_ms: LatencySummary;
}

interface RunResult {
  scenario: string;
  store: 'sqlite' | 'postgres';
  instances: number;
  /** Order loops per server (WORKERS). */
  workers: number;
  run: number;
  ok: boolean;
  failure?: string;
  profiled: boolean;
  connections: number;
  window: { start: string; finish: string; duration_s: number };
  completed_orders: number;
  /** Orders that reached `completed` inside the measured window, per second (from the DB). */
  completed_per_s: number;
  requests_per_s: number;
  kinds: Record<string, KindReport>;
  /** Answers that are expected outcomes but not completions (402 declined, 409 out of stock). */
  expected_failures: Record<string, number>;
  errors: { total: number; socket_errors: number; timeouts: number; unexpected_status: Record<string, number> };
  /** The `status` member of the status-poll answers (async scenario). */
  status_poll_bodies?: Record<string, number>;
  server: {
    cpu_pct: number;
    main_thread_cpu_pct: number;
    /** Where the event loop thread spent the run (null if /proc would not tell). */
    main_thread: MainThreadStates | null;
    cpu_ms_per_create: number;
    peak_rss_mb: number;
    rss_max_sampled_mb: number;
    rss_end_mb: number;
    exit: string;
  };
  loadgen_cpu_pct: number;
  /**
   * The whole machine over the run (100 = one core): `others_pct` is what neither the server
   * nor this bench used — other processes or the hypervisor (`steal_pct`). High values make the run noisy.
   */
  machine_cpu: { busy_pct: number; steal_pct: number; others_pct: number };
  verify: VerifyResult | null;
  /** With --keep: the temporary directory holding the run's SQLite file. */
  kept_dir?: string;
}

function kindReports(load: LoadResult): Record<string, KindReport> {
  const out: Record<string, KindReport> = {};
  for (const [kind, k] of Object.entries(load.kinds)) {
    out[kind] = { responses: k.count, per_s: r1(k.count / load.durationSec), statuses: k.statuses, latency_ms: summarise(k.latencies) };
  }
  return out;
}

function classify(s: Scenario, load: LoadResult) {
  const unexpected: Record<string, number> = {};
  const expectedFailures: Record<string, number> = {};
  for (const [kind, k] of Object.entries(load.kinds)) {
    const ok = s.expected[kind] ?? [];
    for (const [status, n] of Object.entries(k.statuses)) {
      const code = Number(status);
      if (!ok.includes(code)) unexpected[`${kind}:${status}`] = (unexpected[`${kind}:${status}`] ?? 0) + n;
      else if (code >= 400) expectedFailures[status] = (expectedFailures[status] ?? 0) + n;
    }
  }
  const total = load.errors + Object.values(unexpected).reduce((a, b) => a + b, 0);
  return { errors: { total, socket_errors: load.errors - load.timeouts, timeouts: load.timeouts, unexpected_status: unexpected }, expectedFailures };
}

async function runScenario(s: Scenario, run: number, opts: { duration: number; warmup: number; profileDir?: string; keep: boolean; workers: string }): Promise<RunResult> {
  const { servers, target, drop } = await startServers({ workers: opts.workers, ...(opts.profileDir ? { cpuProfDir: opts.profileDir } : {}) });
  const server = servers[0]!;
  let exit = 'stopped';
  try {
    const { admin, users } = await mintTokens(server.jwtSecret);
    const skus = await setupCatalog(server.url, admin, s.catalog, opts.duration + opts.warmup);
    const ctx: ScenarioContext = { tokens: users, skus, bodyStatuses: {} };
    const urls = servers.map((x) => x.url);
    const load = (durationSec: number) =>
      runLoadSpread({ url: server.url, connections: s.connections, durationSec, requests: s.requests(ctx), timeoutSec: 30 }, urls);
    const markAll = () => servers.map((x) => (x.isRunning() ? markCpu(x.pid) : null));

    if (opts.warmup > 0) await load(opts.warmup);
    if (s.catalog === 'scarce') await restock(server.url, admin, skus);
    for (const k of Object.keys(ctx.bodyStatuses)) delete ctx.bodyStatuses[k];

    const sampler = new RssSampler(server.pid, 250).start();
    const threadStates = argv['no-thread-states'] ? null : new MainThreadSampler(firstLoop(server.pid)).start();
    const cpuA = markCpu(server.pid);
    const allA = markAll();
    const machineA = markMachine();
    const result = await load(opts.duration);
    const cpuB = server.isRunning() ? markCpu(server.pid) : cpuA;
    const allB = markAll();
    const machineCpu = machinePercent(machineA, markMachine(), os.cpus().length);
    const mainThread = threadStates?.stop() ?? null;
    sampler.stop();
    for (const x of servers) if (!x.isRunning()) throw new Error(`a server died during the run:\n${x.output()}`);
    // CPU of every instance together (one instance: the same as cpuA→cpuB).
    const serversCpuPct = allA.reduce((n, a, i) => n + (a && allB[i] ? cpuPercent(a, allB[i]!) : 0), 0);

    const verify = await verifyInvariants(target);
    const mem = memoryMb(server.pid);
    const completed = await completedBetween(target, result.start, result.finish);
    const { errors, expectedFailures } = classify(s, result);
    const creates = result.kinds[s.primaryKind]?.count ?? 0;
    const out: RunResult = {
      scenario: s.name,
      run,
      ok: verify.ok,
      ...(verify.ok ? {} : { failure: `invariants violated: ${verify.violations.join('; ')}` }),
      profiled: Boolean(opts.profileDir),
      connections: s.connections,
      window: { start: result.start.toISOString(), finish: result.finish.toISOString(), duration_s: result.durationSec },
      completed_orders: completed,
      completed_per_s: r1(completed / result.durationSec),
      requests_per_s: r1(result.totalResponses / result.durationSec),
      kinds: kindReports(result),
      expected_failures: expectedFailures,
      errors,
      ...(Object.keys(ctx.bodyStatuses).length ? { status_poll_bodies: { ...ctx.bodyStatuses } } : {}),
      store: argv.store as RunResult['store'],
      instances: servers.length,
      workers: opts.workers === 'default' ? DEFAULT_WORKERS : Number(opts.workers),
      server: {
        cpu_pct: r1(serversCpuPct),
        main_thread_cpu_pct: r1(cpuPercent(cpuA, cpuB, 'mainMs')),
        main_thread: mainThread,
        cpu_ms_per_create: r2(allA.reduce((n, a, i) => n + (a && allB[i] ? allB[i]!.cpuMs - a.cpuMs : 0), 0) / Math.max(1, creates)),
        peak_rss_mb: r1(mem.hwm),
        rss_max_sampled_mb: sampler.maxMb,
        rss_end_mb: r1(mem.rss),
        exit,
      },
      loadgen_cpu_pct: r1(result.loadgenCpuPct),
      ...(opts.keep ? { kept_dir: server.dir } : {}),
      machine_cpu: { ...machineCpu, others_pct: r1(Math.max(0, machineCpu.busy_pct - serversCpuPct - result.loadgenCpuPct)) },
      verify,
    };
    for (const x of servers.slice(1)) await x.stop();
    const how = await server.stop();
    out.server.exit = exit = how.killed ? 'SIGKILL after grace' : `code ${how.code}${how.signal ? ` signal ${how.signal}` : ''}`;
    if (how.code !== 0 || how.killed) {
      out.ok = false;
      out.failure = [out.failure, `server did not stop cleanly (${out.server.exit}):\n${server.output().slice(-4000)}`].filter(Boolean).join('\n');
    }
    return out;
  } catch (err) {
    const output = server.output();
    for (const x of servers) await x.stop(5_000);
    const kept = opts.keep ? `\n(database kept in ${server.dir})` : '';
    throw new Error(`${s.name} run ${run}: ${(err as Error).message}${output && !(err as Error).message.includes(output) ? `\nserver output:\n${output.slice(-4000)}` : ''}${kept}`);
  } finally {
    for (const x of servers) {
      if (x.isRunning()) await x.stop(5_000);
      if (!opts.keep) x.cleanup();
    }
    if (!opts.keep) await drop().catch(() => undefined);
  }
}

// --- summaries and the table ----------------------------------------------------------------

interface ScenarioSummary {
  runs: number;
  ok: boolean;
  completed_per_s: number;
  requests_per_s: number;
  latency_ms: Record<string, { p50: number; p95: number; p99: number }>;
  per_s: Record<string, number>;
  errors: number;
  /** Per kind, summed over runs. */
  statuses: Record<string, Record<string, number>>;
  cpu_pct: number;
  main_thread_cpu_pct: number;
  /** Medians: the main thread on a CPU and runnable-but-waiting (schedstat), and its sampled states (% of samples). */
  main_thread_on_cpu_pct: number;
  main_thread_runqueue_pct: number;
  main_thread_states_pct: Record<string, number>;
  others_cpu_pct: number;
  cpu_ms_per_create: number;
  peak_rss_mb: number;
}

/** Median over runs of every headline number; statuses are summed. */
function summariseRuns(runs: RunResult[]): ScenarioSummary {
  const m = (f: (r: RunResult) => number) => r2(median(runs.map(f)));
  const kinds = Object.keys(runs[0]?.kinds ?? {});
  const statuses: Record<string, Record<string, number>> = {};
  for (const r of runs) {
    for (const [kind, k] of Object.entries(r.kinds)) {
      const into = (statuses[kind] ??= {});
      for (const [code, n] of Object.entries(k.statuses)) into[code] = (into[code] ?? 0) + n;
    }
  }
  return {
    runs: runs.length,
    ok: runs.every((r) => r.ok),
    completed_per_s: m((r) => r.completed_per_s),
    requests_per_s: m((r) => r.requests_per_s),
    latency_ms: Object.fromEntries(
      kinds.map((k) => [k, { p50: m((r) => r.kinds[k]!.latency_ms.p50), p95: m((r) => r.kinds[k]!.latency_ms.p95), p99: m((r) => r.kinds[k]!.latency_ms.p99) }]),
    ),
    per_s: Object.fromEntries(kinds.map((k) => [k, m((r) => r.kinds[k]!.per_s)])),
    errors: m((r) => r.errors.total),
    statuses,
    cpu_pct: m((r) => r.server.cpu_pct),
    main_thread_cpu_pct: m((r) => r.server.main_thread_cpu_pct),
    main_thread_on_cpu_pct: m((r) => r.server.main_thread?.on_cpu_pct ?? NaN),
    main_thread_runqueue_pct: m((r) => r.server.main_thread?.runqueue_wait_pct ?? NaN),
    others_cpu_pct: m((r) => r.machine_cpu.others_pct),
    main_thread_states_pct: Object.fromEntries(
      ['running', 'sleep', 'fsync', 'idle', 'futex', 'other'].map((k) => [k, m((r) => r.server.main_thread?.states_pct[k] ?? 0)]),
    ),
    cpu_ms_per_create: m((r) => r.server.cpu_ms_per_create),
    peak_rss_mb: m((r) => r.server.peak_rss_mb),
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => `| ${r.map((c, i) => (i === 0 || i === r.length - 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [fmt(rows[0]!), `|${widths.map((w, i) => (i === 0 || i === widths.length - 2 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.slice(1).map(fmt)].join('\n');
}

/** Each WORKERS setting's median completed orders/s (and p99) against the first setting's, per scenario. */
function workerRatios(entries: Array<{ scenario: Scenario; workers: string; summary: ScenarioSummary }>): string[] {
  const out: string[] = [];
  for (const s of new Set(entries.map((e) => e.scenario))) {
    const mine = entries.filter((e) => e.scenario === s);
    const base = mine[0];
    if (!base || mine.length < 2) continue;
    for (const e of mine.slice(1)) {
      const ratio = e.summary.completed_per_s / Math.max(base.summary.completed_per_s, 1e-9);
      const p99 = (x: ScenarioSummary) => x.latency_ms[s.primaryKind]?.p99 ?? NaN;
      out.push(
        `${s.name}: ${workersLabel(e.workers)} ${e.summary.completed_per_s.toFixed(1)} orders/s vs ${workersLabel(base.workers)} ${base.summary.completed_per_s.toFixed(1)}: ` +
          `×${ratio.toFixed(2)} (p99 ${p99(e.summary).toFixed(1)} vs ${p99(base.summary).toFixed(1)} ms; CPU ms/req ${e.summary.cpu_ms_per_create.toFixed(2)} vs ${base.summary.cpu_ms_per_create.toFixed(2)}; medians of ${Math.min(e.summary.runs, base.summary.runs)} interleaved runs)`,
      );
    }
  }
  return out;
}

function resultsTable(entries: Array<{ scenario: Scenario; workers: string; summary: ScenarioSummary }>): string {
  const rows = [['scenario', 'conns', 'orders/s', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'statuses', 'ok']];
  rows[0]!.splice(8, 0, 'srv CPU %', 'main thread cpu/runq/sleep/fsync/idle %', 'others CPU %', 'CPU ms/req', 'peak RSS MB');
  const several = new Set(entries.map((e) => e.workers)).size > 1;
  for (const { scenario: s, workers, summary: x } of entries) {
    for (const kind of Object.keys(x.latency_ms)) {
      const primary = kind === s.primaryKind;
      const l = x.latency_ms[kind]!;
      const statuses = Object.entries(x.statuses[kind] ?? {})
        .map(([code, n]) => `${code}×${n}`)
        .join(' ');
      rows.push([
        primary ? (several ? `${s.name} ${workersLabel(workers)}` : s.name) : `  └ ${kind} GET`,
        primary ? String(s.connections) : '',
        primary ? x.completed_per_s.toFixed(1) : '',
        x.per_s[kind]!.toFixed(1),
        l.p50.toFixed(1),
        l.p95.toFixed(1),
        l.p99.toFixed(1),
        primary ? String(x.errors) : '',
        primary ? x.cpu_pct.toFixed(0) : '',
        primary
          ? [x.main_thread_on_cpu_pct, x.main_thread_runqueue_pct, ...(['sleep', 'fsync', 'idle'] as const).map((k) => x.main_thread_states_pct[k] ?? 0)]
              .map((v) => (Number.isFinite(v) ? v.toFixed(0) : '-'))
              .join(' / ')
          : '',
        primary ? x.others_cpu_pct.toFixed(0) : '',
        primary ? x.cpu_ms_per_create.toFixed(2) : '',
        primary ? x.peak_rss_mb.toFixed(0) : '',
        statuses,
        primary ? (x.ok ? 'yes' : 'NO') : '',
      ]);
    }
  }
  return table(rows);
}

function stamp(): string {
  // ISO 8601 with ':' replaced so the name is valid on every file system.
  return new Date().toISOString().replace(/:/g, '-');
}

function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, name);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return relative(ROOT, path);
}

// --- scenario mode --------------------------------------------------------------------------

async function scenarioMode(): Promise<number> {
  const duration = num('duration', argv.duration, 1);
  const warmup = num('warmup', argv.warmup, 0);
  const runs = num('runs', argv.runs, 1);
  const selected = argv.only ? argv.only.split(',').map((n) => n.trim()).filter(Boolean) : SCENARIOS.map((s) => s.name);
  const unknown = selected.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) {
    process.stderr.write(`bench: unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
    return 2;
  }
  const scenarios = SCENARIOS.filter((s) => selected.includes(s.name));
  const profileName = argv.profile ? (argv['profile-scenario'] ?? scenarios[0]!.name) : undefined;
  if (profileName && !scenarios.some((s) => s.name === profileName)) {
    process.stderr.write(`bench: --profile-scenario ${profileName} is not among the selected scenarios\n`);
    return 2;
  }

  const startedAt = new Date();
  const id = stamp();
  const machine = machineInfo();
  log(`ordersaga bench: ${scenarios.length} scenario(s) × ${runs} run(s), ${warmup} s warm-up + ${duration} s each, on ${argv.store}${INSTANCES > 1 ? ` × ${INSTANCES} instances` : ""}`);
  log(`machine: ${machine.cpus} × ${machine.cpu_model}, ${machine.mem_total_gb} GB, node ${machine.node}, commit ${machine.git_commit?.slice(0, 10)}${machine.git_dirty ? ' (dirty)' : ''}`);
  if (!argv['no-build']) {
    log('building (npm run build)…');
    buildService();
  }

  // One entry per scenario and WORKERS setting; each run goes through the settings in turn.
  const results: Array<{ scenario: Scenario; workers: string; runs: RunResult[]; summary?: ScenarioSummary; error?: string }> = [];
  let profile: { dir: string; files: Array<{ file: string; bytes: number }>; summaries: ProfileSummary[] } | undefined;
  for (const s of scenarios) {
    const entries = WORKERS_LIST.map((workers) => ({ scenario: s, workers, runs: [] as RunResult[] }) as (typeof results)[number]);
    results.push(...entries);
    for (let run = 1; run <= runs; run++) {
      for (const entry of entries) {
        const { workers } = entry;
        const profileDir = profileName === s.name && run === 1 && entry === entries[entries.length - 1] ? join(PROFILES_DIR, `${id}-${s.name}`) : undefined;
        process.stdout.write(`▶ ${s.name.padEnd(15)} ${workersLabel(workers).padEnd(13)} run ${run}/${runs}${profileDir ? ' (cpu-prof)' : ''} … `);
        try {
          const r = await runScenario(s, run, { duration, warmup, keep: argv.keep, workers, ...(profileDir ? { profileDir } : {}) });
          entry.runs.push(r);
          const l = r.kinds[s.primaryKind]!.latency_ms;
          log(
            `${r.completed_per_s.toFixed(1)} orders/s, p50 ${l.p50} / p95 ${l.p95} / p99 ${l.p99} ms, errors ${r.errors.total}, ` +
              `CPU ${r.server.cpu_pct}% (main threads ${r.server.main_thread_cpu_pct}%${r.server.main_thread && argv.store === 'sqlite' ? `, first loop sleeping on the SQLite lock ${r.server.main_thread.states_pct.sleep ?? 0}%` : ''}), peak RSS ${r.server.peak_rss_mb} MB, invariants ${r.verify?.ok ? `ok (${r.verify.orders} orders, settled in ${r.verify.settle_ms} ms)` : 'VIOLATED'}`,
          );
          if (!r.ok) log(`  ✗ ${r.failure}`);
          if (r.kept_dir) log(`  kept ${r.kept_dir}`);
          const runq = r.server.main_thread?.runqueue_wait_pct ?? 0;
          if (runq > 10 || r.machine_cpu.others_pct > 20) {
            log(`  ! noisy: the server's main thread waited for a CPU ${runq}% of the time; others used ${r.machine_cpu.others_pct}% CPU (steal ${r.machine_cpu.steal_pct}%)`);
          }
          if (r.errors.total > 0) log(`  ! errors: ${JSON.stringify(r.errors)}`);
          if (profileDir) {
            const files = profileFiles(profileDir).map((f) => ({ file: relative(ROOT, f), bytes: statSync(f).size }));
            const summaries = profileFiles(profileDir).map((f) => summariseProfile(f, 25));
            profile = { dir: relative(ROOT, profileDir), files, summaries };
          }
        } catch (err) {
          log('FAILED');
          log(`  ✗ ${(err as Error).message}`);
          entry.error = (err as Error).message;
        }
      }
    }
    for (const entry of entries) if (entry.runs.length) entry.summary = summariseRuns(entry.runs);
  }

  const ok = results.every((e) => !e.error && e.summary?.ok);
  const file = writeResult(`${id}.json`, {
    bench: 'ordersaga',
    mode: 'scenarios',
    ok,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    machine,
    config: {
      duration_s: duration,
      warmup_s: warmup,
      runs,
      users: USERS,
      profiled_scenario: profileName ?? null,
      workers: WORKERS_LIST.map((w) => (w === 'default' ? { setting: 'default', loops: DEFAULT_WORKERS } : { setting: w, loops: Number(w) })),
      server_env: { SEED_DEMO: 'false', LOG_LEVEL: 'warn', RATE_LIMIT_PER_SEC: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_IP_PER_SEC: '1000000', RATE_LIMIT_IP_BURST: '1000000', SYNC_WAIT_MS: 'default (10000)', INVENTORY_THREADS: 'default (2)' },
      load: 'autocannon from the bench process, pipelining 1, 127.0.0.1; latency = autocannon per-response time',
    },
    scenarios: results.map((e) => ({
      name: e.scenario.name,
      workers: e.workers === 'default' ? DEFAULT_WORKERS : Number(e.workers),
      workers_setting: e.workers,
      description: e.scenario.description,
      connections: e.scenario.connections,
      expected_statuses: e.scenario.expected,
      summary: e.summary ?? null,
      error: e.error ?? null,
      runs: e.runs,
    })),
    ratios: workerRatios(results.filter((e) => e.summary) as Array<{ scenario: Scenario; workers: string; summary: ScenarioSummary }>),
    ...(profile ? { profile } : {}),
  });

  const done = results.filter((e) => e.summary) as Array<{ scenario: Scenario; workers: string; summary: ScenarioSummary }>;
  log('');
  if (done.length) log(resultsTable(done));
  const ratios = workerRatios(done);
  if (ratios.length) log(`\n${ratios.join('\n')}`);
  log(
    `\norders/s: orders that reached "completed" during the measured window (from the DB); latencies: every response of that kind${runs > 1 ? `; medians of ${runs} runs` : ''}.` +
      `\nsrv CPU %: the server process and its order loops, from /proc (100 = one core). main thread (the first loop's): % of wall time on a CPU / runnable but waiting for one` +
      `\n  (schedstat) / in nanosleep (SQLite busy handler waiting for the write lock) / in fsync (WAL checkpoint) / idle in epoll (sampled).` +
      `\nothers CPU %: machine CPU used by neither the server nor the bench (other processes, hypervisor steal): high = noisy run.`,
  );
  if (profile) {
    log(`\nCPU profile (${profile.dir}):`);
    for (const f of profile.files) log(`  ${f.file}  ${(f.bytes / 2 ** 20).toFixed(1)} MB`);
    for (const s of profile.summaries) log(`\n${formatSummary(s, 15)}`);
  }
  log(`\nresult: ${file}`);
  for (const e of results) if (e.error || !e.summary?.ok) log(`✗ ${e.scenario.name}: ${e.error ?? e.runs.find((r) => !r.ok)?.failure}`);
  log(ok ? 'all invariants held' : 'FAILED');
  return ok ? 0 : 1;
}

// --- soak mode ------------------------------------------------------------------------------

async function soakMode(): Promise<number> {
  if (argv.store !== 'sqlite') {
    process.stderr.write('bench: --soak runs one instance on SQLite; --store postgres / --instances are for the scenarios\n');
    return 2;
  }
  const seconds = num('soak', argv.soak, 10);
  const rate = num('rate', argv.rate, 1);
  const connections = argv.connections ? num('connections', argv.connections, 1) : SOAK.connections;
  const rssLimit = num('rss-limit', argv['rss-limit'], 1);
  const machine = machineInfo();
  const startedAt = new Date();
  const id = stamp();
  log(`ordersaga soak: ${rate} orders/s target for ${seconds} s, ${connections} connections; RSS limit ${rssLimit} MB`);
  log(`machine: ${machine.cpus} × ${machine.cpu_model}, node ${machine.node}, commit ${machine.git_commit?.slice(0, 10)}`);
  if (!argv['no-build']) {
    log('building (npm run build)…');
    buildService();
  }
  const server: ServerHandle = await startServer();
  try {
    const { admin, users } = await mintTokens(server.jwtSecret);
    const skus = await setupCatalog(server.url, admin, 'plenty', seconds * Math.max(1, rate / 5000) + 10);
    const ctx: ScenarioContext = { tokens: users, skus, bodyStatuses: {} };
    const progress = { responses: 0 };
    const samples: Array<{ t_s: number; rss_mb: number; cpu_pct: number; responses_per_s: number }> = [];
    let lastCpu = markCpu(server.pid);
    let lastResponses = 0;
    const rss = new RssSampler(server.pid, 5_000, (s) => {
      const cpu = markCpu(server.pid);
      const sample = { ...s, cpu_pct: r1(cpuPercent(lastCpu, cpu)), responses_per_s: r1(((progress.responses - lastResponses) * 1000) / (cpu.at - lastCpu.at || 1)) };
      if (samples.length === 0) sample.cpu_pct = sample.responses_per_s = 0;
      samples.push(sample);
      lastCpu = cpu;
      lastResponses = progress.responses;
      log(`  t=${String(sample.t_s).padStart(5)} s  RSS ${sample.rss_mb.toFixed(1).padStart(6)} MB  CPU ${sample.cpu_pct.toFixed(0).padStart(4)} %  ${sample.responses_per_s.toFixed(0).padStart(5)} resp/s`);
    });
    const cpuA = markCpu(server.pid);
    const machineA = markMachine();
    const threadStates = argv['no-thread-states'] ? null : new MainThreadSampler(server.pid, 20).start();
    rss.start();
    const load = await runLoad({ url: server.url, connections, durationSec: seconds, overallRate: rate, requests: SOAK.requests(ctx), timeoutSec: 30, progress });
    rss.stop();
    const cpuB = markCpu(server.pid);
    const machineCpu = machinePercent(machineA, markMachine(), os.cpus().length);
    const mainThread = threadStates?.stop() ?? null;
    if (!server.isRunning()) throw new Error(`the server died during the soak:\n${server.output()}`);
    const mem = memoryMb(server.pid);
    const verify = await verifyInvariants(server.dbPath);
    const completed = await completedBetween(server.dbPath, load.start, load.finish);

    // RSS over time: ignore the warm-up, compare the first and the last window.
    const warmupS = Math.min(30, Math.round(seconds * 0.15));
    const windowS = Math.min(60, (seconds - warmupS) / 3);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const rssSamples = samples.filter((x) => x.t_s > 0);
    const first = mean(rssSamples.filter((x) => x.t_s >= warmupS && x.t_s < warmupS + windowS).map((x) => x.rss_mb));
    const last = mean(rssSamples.filter((x) => x.t_s > seconds - windowS).map((x) => x.rss_mb));
    const maxRss = Math.max(mem.hwm, ...samples.map((x) => x.rss_mb));
    const checks = {
      max_rss_mb: r1(maxRss),
      max_rss_ok: maxRss <= rssLimit,
      warmup_excluded_s: warmupS,
      window_s: r1(windowS),
      first_window_avg_rss_mb: r1(first),
      last_window_avg_rss_mb: r1(last),
      growth_ratio: r2(last / first),
      growth_ok: !(last > first * 1.3),
    };
    const { errors } = classify(SOAK, load);
    const l = summarise(load.kinds.create?.latencies ?? []);
    const ok = checks.max_rss_ok && checks.growth_ok && verify.ok;
    const achievedRate = load.totalResponses / load.durationSec;
    const targetReached = achievedRate >= rate * 0.95;
    const how = await server.stop();
    const file = writeResult(`${id}-soak.json`, {
      bench: 'ordersaga',
      mode: 'soak',
      ok,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      machine,
      config: { seconds, target_rate: rate, connections, rss_limit_mb: rssLimit, sample_interval_s: 5, users: USERS },
      achieved: {
        responses_per_s: r1(load.totalResponses / load.durationSec),
        completed_per_s: r1(completed / load.durationSec),
        completed_orders: completed,
        statuses: load.kinds.create?.statuses ?? {},
        latency_ms: l,
        errors,
        target_reached: targetReached,
        server_cpu_pct: r1(cpuPercent(cpuA, cpuB)),
        server_main_thread_cpu_pct: r1(cpuPercent(cpuA, cpuB, 'mainMs')),
        server_main_thread: mainThread,
        loadgen_cpu_pct: r1(load.loadgenCpuPct),
        machine_cpu: { ...machineCpu, others_pct: r1(Math.max(0, machineCpu.busy_pct - cpuPercent(cpuA, cpuB) - load.loadgenCpuPct)) },
      },
      rss: { ...checks, end_mb: r1(mem.rss), samples },
      verify,
      server_exit: how,
    });
    log('');
    log(
      table([
        ['target/s', 'achieved resp/s', 'completed/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'max RSS MB', 'RSS first→last window', 'ok'],
        [
          String(rate),
          (load.totalResponses / load.durationSec).toFixed(1),
          (completed / load.durationSec).toFixed(1),
          l.p50.toFixed(1),
          l.p95.toFixed(1),
          l.p99.toFixed(1),
          String(errors.total),
          maxRss.toFixed(1),
          `${first.toFixed(1)} → ${last.toFixed(1)} (×${(last / first).toFixed(2)})`,
          ok ? 'yes' : 'NO',
        ],
      ]),
    );
    log(`\ninvariants: ${verify.ok ? `ok (${verify.orders} orders, ${JSON.stringify(verify.by_status)})` : `VIOLATED: ${verify.violations.join('; ')}`}`);
    log(
      `server CPU ${cpuPercent(cpuA, cpuB).toFixed(0)} % (main thread ${cpuPercent(cpuA, cpuB, 'mainMs').toFixed(0)} %` +
        (mainThread ? `, sleeping on the SQLite lock ${mainThread.states_pct.sleep ?? 0} %, runnable waiting for a CPU ${mainThread.runqueue_wait_pct} %` : '') +
        `), bench ${load.loadgenCpuPct.toFixed(0)} %, others ${Math.max(0, machineCpu.busy_pct - cpuPercent(cpuA, cpuB) - load.loadgenCpuPct).toFixed(0)} %`,
    );
    if (!targetReached) log(`! target rate not reached: ${achievedRate.toFixed(0)}/s of ${rate}/s (${((achievedRate / rate) * 100).toFixed(0)} %); the RSS verdict is for that rate`);
    if (!checks.max_rss_ok) log(`✗ RSS ${maxRss.toFixed(1)} MB exceeds ${rssLimit} MB`);
    if (!checks.growth_ok) log(`✗ RSS grows: last ${windowS.toFixed(0)} s average ${last.toFixed(1)} MB > 1.3 × first ${first.toFixed(1)} MB`);
    log(`result: ${file}`);
    log(ok ? 'soak passed' : 'soak FAILED');
    return ok ? 0 : 1;
  } catch (err) {
    log(`✗ ${(err as Error).message}`);
    if (!(err as Error).message.includes(server.output())) log(server.output().slice(-4000));
    return 1;
  } finally {
    if (server.isRunning()) await server.stop(5_000);
    if (!argv.keep) server.cleanup();
  }
}

// --- main -----------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (argv.help) usage(0);
  keepTemporaryDirectories(argv.keep);
  if (argv.list) {
    for (const s of SCENARIOS) log(`${s.name.padEnd(16)} ${s.description}`);
    return 0;
  }
  return argv.soak !== undefined ? soakMode() : scenarioMode();
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
