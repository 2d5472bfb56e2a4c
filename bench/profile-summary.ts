/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`): self time by function and by
 * file/package, and inclusive time by function, as % of the thread's non-idle time.
 *
 * Read with care: the profiler samples wall time. A native call that blocks (a better-sqlite3
 * statement waiting in SQLite's busy handler for another connection's write lock, an fsync)
 * is charged as self time to the JS function that made it. Compare with the bench's
 * main-thread CPU % and sleep/fsync shares to tell CPU from waiting.
 *
 *   npx tsx bench/profile-summary.ts bench/results/profiles/<run>/   [--top 25] [--json]
 *   npx tsx bench/profile-summary.ts some.cpuprofile
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Entry {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  file: string;
  /** "main" for thread 0, otherwise "worker <threadId>" (from Node's file name). */
  thread: string;
  wall_ms: number;
  sampled_ms: number;
  idle_ms: number;
  /** Non-idle time: `pct` values below are of this. */
  busy_ms: number;
  /** Part of idle_ms spent blocked waiting for work in JS (Piscina's Atomics.wait). */
  waiting_ms: number;
  self_by_function: Entry[];
  self_by_file: Entry[];
  inclusive_by_function: Entry[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);
/**
 * Functions that block a thread waiting for work, which V8 samples as JS time: Piscina's
 * workers wait for tasks in Atomics.wait inside `atomicsWaitLoop`. Counted as idle.
 */
const WAITING = new Set(['atomicsWaitLoop']);

/** A short, stable name for where code lives: a package, a node: module, or a project file. */
export function whereOf(url: string): string {
  if (!url) return '(native)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const m = /\/(dist|src|bench|test|scripts)\/(.*)$/.exec(path);
  return m ? `${m[1]}/${m[2]}` : path;
}

function functionKey(cf: CallFrame): string {
  const fn = cf.functionName || '(anonymous)';
  if (SPECIAL.has(fn)) return fn;
  return `${fn}  ${whereOf(cf.url)}:${cf.lineNumber + 1}`;
}

function fileKey(cf: CallFrame): string {
  if (SPECIAL.has(cf.functionName)) return cf.functionName;
  const where = whereOf(cf.url);
  return where.startsWith('node:') ? where.replace(/^(node:internal\/[^/]+).*$/, '$1') : where;
}

function top(map: Map<string, number>, busyMs: number, n: number): Entry[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: Math.round((us / 1000 / busyMs) * 1000) / 10 }));
}

export function summariseProfile(file: string, n = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id);

  // Time of sample i = the gap to the next sample (the last one gets the mean gap).
  const selfUs = new Map<number, number>();
  const deltas = profile.timeDeltas;
  const meanGap = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
  profile.samples.forEach((id, i) => {
    const dt = i + 1 < deltas.length ? deltas[i + 1]! : meanGap;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  });

  const selfFn = new Map<string, number>();
  const selfFile = new Map<string, number>();
  const inclFn = new Map<string, number>();
  let sampled = 0;
  let idle = 0;
  let waiting = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    sampled += us;
    if (node.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    if (WAITING.has(node.callFrame.functionName)) {
      idle += us;
      waiting += us;
      continue;
    }
    const fk = functionKey(node.callFrame);
    selfFn.set(fk, (selfFn.get(fk) ?? 0) + us);
    const file = fileKey(node.callFrame);
    selfFile.set(file, (selfFile.get(file) ?? 0) + us);
    // Inclusive: every distinct function on the stack once (recursion counted once).
    const onStack = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (cf.functionName === '(root)') continue;
      onStack.add(functionKey(cf));
    }
    for (const k of onStack) inclFn.set(k, (inclFn.get(k) ?? 0) + us);
  }
  const busyMs = Math.max(1e-9, (sampled - idle) / 1000);
  const tid = /\.(\d+)\.\d+\.cpuprofile$/.exec(basename(file))?.[1];
  return {
    file,
    thread: tid === undefined ? 'unknown' : tid === '0' ? 'main' : `worker ${tid}`,
    wall_ms: Math.round((profile.endTime - profile.startTime) / 1000),
    sampled_ms: Math.round(sampled / 1000),
    idle_ms: Math.round(idle / 1000),
    busy_ms: Math.round(busyMs),
    waiting_ms: Math.round(waiting / 1000),
    self_by_function: top(selfFn, busyMs, n),
    self_by_file: top(selfFile, busyMs, n),
    inclusive_by_function: top(inclFn, busyMs, n),
  };
}

/** Every .cpuprofile in a directory (or the file itself). */
export function profileFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(path, f));
}

export function formatSummary(s: ProfileSummary, n = 25): string {
  const lines: string[] = [];
  lines.push(
    `${basename(s.file)} (${s.thread}): wall ${s.wall_ms} ms, busy ${s.busy_ms} ms, idle ${s.idle_ms} ms` +
      (s.waiting_ms ? ` (of which ${s.waiting_ms} ms waiting for tasks in Atomics.wait)` : ''),
  );
  const table = (title: string, entries: Entry[]) => {
    lines.push(`  ${title}`);
    for (const e of entries.slice(0, n)) lines.push(`    ${e.pct.toFixed(1).padStart(5)} %  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}`);
  };
  table('self time by file/package (% of busy):', s.self_by_file);
  table('self time by function:', s.self_by_function);
  table('inclusive time by function:', s.inclusive_by_function);
  return lines.join('\n');
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const args = process.argv.slice(2);
  let n = 25;
  let json = false;
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--top') n = Number(args[++i]);
    else if (args[i] === '--json') json = true;
    else paths.push(args[i]!);
  }
  if (paths.length === 0) {
    process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile | dir>... [--top N] [--json]\n');
    process.exit(2);
  }
  const summaries = paths.flatMap(profileFiles).map((f) => summariseProfile(f, n));
  if (json) process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
  else process.stdout.write(`${summaries.map((s) => formatSummary(s, n)).join('\n\n')}\n`);
}
