import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCommittedReader, type CommittedReader } from '../support/ledger.js';
import { createTestDatabase } from '../support/postgres.js';
import { client, startServerProcess, type ServerProcess } from '../support/process.js';
import { TEST_SECRET } from '../support/service.js';

/*
 * A real service of several order loops (WORKERS, node:cluster) on a store of its own, the
 * store the vitest project runs (TEST_STORE=postgres in `postgres`, SQLite in `sqlite`).
 */

export const STORE: 'postgres' | 'sqlite' = process.env.TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';
/** Both stores let loops share them; kept so that a store that cannot is skipped, saying so. */
export const LOOPS_RUNNABLE = true;
export const STORE_LABEL = STORE === 'postgres' ? 'PostgreSQL' : 'SQLite';

export type Api = ReturnType<typeof client>;

/** Where a test's service keeps its data: the environment that points a server at it, and a reader. */
export interface LoopsStore {
  env: Record<string, string>;
  reader: CommittedReader;
  dialect: 'postgres' | 'sqlite';
  drop(): Promise<void>;
}

export async function loopsStore(label: string): Promise<LoopsStore> {
  if (STORE === 'postgres') {
    const db = await createTestDatabase(label);
    const reader = openCommittedReader({ dbPath: '', url: db.url });
    return { env: { DATABASE_URL: db.url }, reader, dialect: 'postgres', drop: async () => (await reader.close(), await db.drop()) };
  }
  const dir = mkdtempSync(join(tmpdir(), `ordersaga-${label}-`));
  const dbPath = join(dir, 'loops.db');
  let reader: CommittedReader | undefined;
  return {
    env: { DB_PATH: dbPath },
    // Opened at the first read: the file exists once the service has started.
    get reader() {
      return (reader ??= openCommittedReader({ dbPath }));
    },
    dialect: 'sqlite',
    drop: async () => {
      await reader?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const QUIET_LIMITS = { RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000', RATE_LIMIT_IP_PER_SEC: '100000', RATE_LIMIT_IP_BURST: '100000' };

export interface Loops {
  server: ServerProcess;
  api: Api;
  /** The owner id of slot i: `${INSTANCE_ID}-${i}`. */
  owner(slot: number): string;
  /** The pid of the loop now in each slot, from the primary's 'order loop listening' lines. */
  pids(): Map<number, number>;
  /** Resolves once the primary logged a loop in `slot` listening with a pid other than `not`. */
  replaced(slot: number, not: number, timeoutMs?: number): Promise<number>;
  /** Log lines (JSON) of the service: primary and loops. */
  lines(): any[];
}

/** Starts the service with `workers` loops and resolves once the primary logged it listening. */
export async function startLoops(store: LoopsStore, instanceId: string, token: string, env: Record<string, string> = {}, workers = 2): Promise<Loops> {
  const server = await startServerProcess(
    { JWT_SECRET: TEST_SECRET, SEED_DEMO: 'false', LOG_LEVEL: 'info', INSTANCE_ID: instanceId, WORKERS: String(workers), ...QUIET_LIMITS, ...store.env, ...env },
    60_000,
  );
  const lines = () =>
    server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return {};
        }
      });
  const pids = () => {
    const map = new Map<number, number>();
    for (const l of lines()) if (l.msg === 'order loop listening' && typeof l.pid === 'number') map.set(l.loop, l.pid);
    return map;
  };
  const until = async <T>(what: () => T | undefined, timeoutMs: number, label: string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = what();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`${label} within ${timeoutMs} ms:\n${server.output().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  // /healthz answers as soon as one loop listens: wait for all of them.
  await until(() => (lines().some((l) => l.msg === 'ordersaga listening') ? true : undefined), 60_000, 'the service did not log listening');
  return {
    server,
    api: client(server.url, token),
    owner: (slot) => `${instanceId}-${slot}`,
    pids,
    replaced: (slot, not, timeoutMs = 60_000) =>
      until(() => {
        const pid = pids().get(slot);
        return pid !== undefined && pid !== not ? pid : undefined;
      }, timeoutMs, `no replacement loop in slot ${slot}`),
    lines,
  };
}

/** Whether a process is still there (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The loop (slot) that answered each request, by its `X-Request-Id`, from the loops' request log
 * lines (waiting a moment for lines still in the pipe).
 */
export async function answeredBy(loops: Loops, requestIds: ReadonlyArray<string | null>): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    for (const l of loops.lines()) if (l.msg === 'request' && typeof l.loop === 'number') found.set(l.request_id, l.loop);
    if (requestIds.every((id) => id !== null && found.has(id))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return found;
}

/** The set of loops that answered these responses. */
export async function loopsThatAnswered(loops: Loops, answers: ReadonlyArray<{ headers: Headers }>): Promise<Set<number | undefined>> {
  const ids = answers.map((a) => a.headers.get('x-request-id'));
  const by = await answeredBy(loops, ids);
  return new Set(ids.map((id) => (id === null ? undefined : by.get(id))));
}
