/**
 * The service under test as a separate process: build, start on a fresh temporary
 * database, wait for /healthz, sample its CPU and memory from /proc, stop it
 * (SIGTERM, then SIGKILL), and make sure no server outlives the bench.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../scripts/support/free-port.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export { freePort };

/** Variables the service reads: never inherited from the caller's shell, so every run uses the same config. */
const SERVICE_VARS = [
  'NODE_ENV', 'PORT', 'HOST', 'DB_PATH', 'JWT_SECRET', 'JWT_ISSUER', 'JWT_AUDIENCE', 'SYNC_WAIT_MS', 'PAYMENT_SLOW_MS',
  'ORDER_TIMEOUT_MS', 'RETRY_MAX_ATTEMPTS', 'RETRY_BASE_MS', 'INVENTORY_THREADS', 'RATE_LIMIT_PER_SEC', 'RATE_LIMIT_BURST',
  'RATE_LIMIT_IP_PER_SEC', 'RATE_LIMIT_IP_BURST', 'REDIS_URL', 'REDIS_KEY_PREFIX', 'TRUST_PROXY', 'JWT_JWKS_URL', 'JWT_JWKS_FILE',
  'JWT_ALGORITHMS', 'JWT_CLOCK_TOLERANCE_S', 'JWT_ROLE_CLAIM', 'JWT_JWKS_COOLDOWN_MS', 'JWT_JWKS_MAX_AGE_MS', 'HEADERS_TIMEOUT_MS',
  'REQUEST_TIMEOUT_MS', 'KEEP_ALIVE_TIMEOUT_MS', 'MAX_HEADER_BYTES', 'MAX_CONNECTIONS', 'CORS_ORIGINS', 'LOG_LEVEL', 'SEED_DEMO', 'SHUTDOWN_GRACE_MS', 'MAX_LIVE_ORDERS', 'IDEMPOTENCY_TTL_HOURS', 'INSPECT', 'INSPECT_URL', 'WORKERS',
];

/** `npm run build` (tsc → dist/). Throws with the compiler output on failure. */
export function buildService(): void {
  const res = spawnSync('npm', ['run', '-s', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`npm run build failed (${res.status}):\n${res.stdout}\n${res.stderr}`);
}

/** The last `max` characters written to a stream. */
class Tail {
  private text = '';
  constructor(private readonly max = 64 * 1024) {}
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text;
  }
}

export interface ServerOptions {
  /** Start with `node --cpu-prof --cpu-prof-dir <dir>`. */
  cpuProfDir?: string;
  /** Extra/overriding service variables. */
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface ServerHandle {
  pid: number;
  url: string;
  dir: string;
  dbPath: string;
  jwtSecret: string;
  output(): string;
  /** Resolves when the process exits (for whatever reason). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** SIGTERM; SIGKILL after `graceMs`. Resolves with how it ended. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }>;
  /** Removes the temporary directory (after stop). */
  cleanup(): void;
}

const live = new Set<ChildProcess>();
/** Temporary directories not cleaned up yet: removed at exit unless kept. */
const tempDirs = new Set<string>();
let keepTempDirs = false;
let hooksInstalled = false;

export function keepTemporaryDirectories(keep: boolean): void {
  keepTempDirs = keep;
}

/** Whatever happens to the bench (error, Ctrl-C, exit), no server is left running. */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    if (!keepTempDirs) for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping ${live.size} server(s)\n`);
      for (const child of live) child.kill('SIGTERM');
      setTimeout(() => process.exit(130), 2_000).unref();
      if (live.size === 0) process.exit(130);
      else for (const child of live) child.once('exit', () => live.size === 0 && process.exit(130));
    });
  }
}

export async function startServer(options: ServerOptions = {}): Promise<ServerHandle> {
  installExitHooks();
  const dir = mkdtempSync(join(tmpdir(), 'ordersaga-bench-'));
  tempDirs.add(dir);
  const dbPath = join(dir, 'ordersaga.db');
  // Instances of one service share their secret (passed in env); one alone gets its own.
  const jwtSecret = options.env?.JWT_SECRET ?? randomBytes(48).toString('base64url');
  const port = await freePort();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !SERVICE_VARS.includes(k)) env[k] = v;
  Object.assign(env, {
    PORT: String(port),
    HOST: '127.0.0.1',
    DB_PATH: dbPath,
    JWT_SECRET: jwtSecret,
    SEED_DEMO: 'false',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_SEC: '1000000',
    RATE_LIMIT_BURST: '1000000',
    RATE_LIMIT_IP_PER_SEC: '1000000',
    RATE_LIMIT_IP_BURST: '1000000',
    ...options.env,
  });
  const nodeArgs = options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : [];
  const child = spawn(process.execPath, [...nodeArgs, 'dist/main.js'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const out = new Tail();
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => out.push(d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const handle: ServerHandle = {
    pid: child.pid!,
    url,
    dir,
    dbPath,
    jwtSecret,
    output: () => out.toString(),
    exited,
    isRunning: () => child.exitCode === null && child.signalCode === null,
    async stop(graceMs = 15_000) {
      if (!handle.isRunning()) return { ...(await exited), killed: false };
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve(true);
          }, graceMs);
        }),
      ]);
      clearTimeout(timer);
      return { ...(await exited), killed };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };

  const started = Date.now();
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  for (;;) {
    if (!handle.isRunning()) {
      const how = await exited;
      handle.cleanup();
      throw new Error(`server exited during start (code ${how.code}, signal ${how.signal}):\n${out}`);
    }
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > timeoutMs) {
      await handle.stop(2_000);
      handle.cleanup();
      throw new Error(`server did not answer /healthz within ${timeoutMs} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return handle;
}

// --- /proc sampling -------------------------------------------------------------------

let clockTicks: number | undefined;
function clkTck(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime in ms: of the whole process (all threads), or of one thread (`tid`). */
export function cpuTimeMs(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces: split after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / clkTck();
}

/** VmRSS and VmHWM (peak RSS) in MB. */
export function memoryMb(pid: number): { rss: number; hwm: number } {
  // Summed over a primary and its order loops (peaks summed: an upper bound of the peak together).
  let rss = 0;
  let hwm = 0;
  for (const p of processTree(pid)) {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
      rss += kb('VmRSS') / 1024;
      hwm += kb('VmHWM') / 1024;
    } catch {
      if (p === pid) throw new Error(`process ${pid} is gone`);
    }
  }
  return { rss, hwm };
}

export interface CpuMark {
  /** The whole process. */
  cpuMs: number;
  /** The main threads (event loops: HTTP, actors, main-thread SQLite) of the server and its order loops; the rest is mostly the Piscina workers. */
  mainMs: number;
  at: number;
}

export function markCpu(pid: number): CpuMark {
  // With WORKERS > 1 the server is a primary and its order loops: count the whole tree.
  let cpuMs = 0;
  let mainMs = 0;
  for (const p of processTree(pid)) {
    try {
      cpuMs += cpuTimeMs(p);
      mainMs += cpuTimeMs(p, p);
    } catch {
      // a loop that exited between the listing and the read
    }
  }
  return { cpuMs, mainMs, at: performance.now() };
}

/** `pid` and its descendants (the order loops of a primary), from /proc. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const kids = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim();
      if (kids) out.push(...kids.split(' ').map(Number));
    } catch {
      // gone, or /proc will not say
    }
  }
  return out;
}

/** The process whose event loop serves orders: the first order loop under a primary, else `pid` itself. */
export function firstLoop(pid: number): number {
  return processTree(pid)[1] ?? pid;
}

/** Average CPU % between two marks (100 % = one core busy). */
export function cpuPercent(a: CpuMark, b: CpuMark, which: 'cpuMs' | 'mainMs' = 'cpuMs'): number {
  return ((b[which] - a[which]) / (b.at - a.at)) * 100;
}

/** Samples RSS every `intervalMs` while running. */
export class RssSampler {
  readonly samples: Array<{ t_s: number; rss_mb: number }> = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly t0 = performance.now();
  constructor(
    private readonly pid: number,
    private readonly intervalMs: number,
    private readonly onSample?: (s: { t_s: number; rss_mb: number }) => void,
  ) {}
  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }
  sample(): void {
    try {
      const s = { t_s: Math.round((performance.now() - this.t0) / 100) / 10, rss_mb: round1(memoryMb(this.pid).rss) };
      this.samples.push(s);
      this.onSample?.(s);
    } catch {
      // the process is gone; the caller notices through its exit
    }
  }
  stop(): void {
    clearInterval(this.timer);
  }
  get maxMb(): number {
    return Math.max(0, ...this.samples.map((s) => s.rss_mb));
  }
}

export const round1 = (n: number) => Math.round(n * 10) / 10;

// --- what the main thread is doing --------------------------------------------------------

/** Syscall numbers that tell a blocked event loop from an idle one (x86-64 and arm64). */
const SYSCALLS: Record<string, Record<string, string>> = {
  x64: { '230': 'sleep', '35': 'sleep', '74': 'fsync', '75': 'fsync', '232': 'idle', '281': 'idle', '441': 'idle', '202': 'futex' },
  arm64: { '115': 'sleep', '101': 'sleep', '82': 'fsync', '83': 'fsync', '22': 'idle', '441': 'idle', '98': 'futex' },
};

export interface MainThreadStates {
  /** From /proc/<pid>/task/<pid>/schedstat: share of wall time on a CPU, and runnable but waiting for one. */
  on_cpu_pct: number;
  runqueue_wait_pct: number;
  /**
   * Sampled /proc/<pid>/task/<pid>/syscall: `running` (on CPU or runnable), `sleep`
   * (nanosleep: SQLite's busy handler waiting for another connection's write lock), `fsync`
   * (WAL checkpoints), `idle` (epoll: the event loop has nothing to do), `futex`, `other`.
   */
  states_pct: Record<string, number>;
  samples: number;
}

/** Samples the main thread's state every ~`intervalMs` (cheap: one small /proc read). Null where /proc denies it. */
export class MainThreadSampler {
  private readonly counts: Record<string, number> = {};
  private n = 0;
  private timer: NodeJS.Timeout | undefined;
  private sched0: number[] | null = null;
  private t0 = 0;
  private readonly map = SYSCALLS[process.arch] ?? {};
  constructor(
    private readonly pid: number,
    private readonly intervalMs = 10,
  ) {}
  private sched(): number[] | null {
    try {
      return readFileSync(`/proc/${this.pid}/task/${this.pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
    } catch {
      return null;
    }
  }
  start(): this {
    this.sched0 = this.sched();
    this.t0 = performance.now();
    this.timer = setInterval(() => {
      try {
        const nr = readFileSync(`/proc/${this.pid}/task/${this.pid}/syscall`, 'utf8').split(' ', 1)[0]!.trim();
        const state = nr === 'running' ? 'running' : (this.map[nr] ?? 'other');
        this.counts[state] = (this.counts[state] ?? 0) + 1;
        this.n++;
      } catch {
        clearInterval(this.timer);
      }
    }, this.intervalMs);
    return this;
  }
  stop(): MainThreadStates | null {
    clearInterval(this.timer);
    const s1 = this.sched();
    const wallNs = (performance.now() - this.t0) * 1e6;
    if (!this.sched0 || !s1 || this.n === 0) return null;
    const pct = (x: number) => round1((x / this.n) * 100);
    return {
      on_cpu_pct: round1(((s1[0]! - this.sched0[0]!) / wallNs) * 100),
      runqueue_wait_pct: round1(((s1[1]! - this.sched0[1]!) / wallNs) * 100),
      states_pct: Object.fromEntries(Object.entries(this.counts).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, pct(v)])),
      samples: this.n,
    };
  }
}

// --- the whole machine ------------------------------------------------------------------------

export interface MachineMark {
  busy: number;
  steal: number;
  total: number;
}

/** Aggregate CPU ticks from /proc/stat (busy excludes idle and iowait; steal is time the hypervisor took). */
export function markMachine(): MachineMark {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq! + steal!;
  return { busy, steal: steal!, total: busy + idle! + iowait! };
}

/** Machine CPU between two marks, 100 = one core (like the per-process numbers). */
export function machinePercent(a: MachineMark, b: MachineMark, cores: number): { busy_pct: number; steal_pct: number } {
  const total = Math.max(1, b.total - a.total);
  return { busy_pct: round1(((b.busy - a.busy) / total) * cores * 100), steal_pct: round1(((b.steal - a.steal) / total) * cores * 100) };
}
