/**
 * Floors: what the service's two main-thread layers cost on their own, each measured alone.
 * Their sum per order bounds what one event loop can do, whatever SQLite and the pool cost.
 *
 *   npm run bench:floor                  3 rounds of 20,000 orders, 50 in flight; 5 s of HTTP
 *   npm run bench:floor -- --orders 50000 --rounds 5 --http-seconds 10
 *
 * XState rows (in this process, one core): a minimal 5-step machine (one invoke per step,
 * no context to speak of: the "XState run of a 5-step machine with no I/O"); the
 * real order machine with instant steps; the same plus the persisted snapshot as JSON per
 * transition. HTTP row: the real `createApp` (auth, rate limit, validation, the sync route
 * and its 2.6 KB answer) in a separate process whose engine settles every order at once
 * (bench/http-floor.server.ts), driven by autocannon at 50 connections like sync-c50.
 * Results go to bench/results/<timestamp>-floor.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { assign, createActor, fromPromise, setup, type AnyStateMachine } from 'xstate';
import { orderMachine } from '../src/machines/order.machine.js';
import { instant, instantSteps, orderInput } from './instant-steps.js';
import { mintToken } from '../src/auth/tokens.js';
import { runLoad, summarise } from './load.js';
import { orderBody } from './scenarios.js';
import { cpuPercent, freePort, markCpu, ROOT } from './server.js';

const { values: argv } = parseArgs({
  options: {
    orders: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '50' },
    'http-seconds': { type: 'string', default: '5' },
  },
});
const HTTP_SECONDS = Number(argv['http-seconds']);
const ORDERS = Number(argv.orders);
const ROUNDS = Number(argv.rounds);
const IN_FLIGHT = Number(argv.concurrency);
if (![ORDERS, ROUNDS, IN_FLIGHT, HTTP_SECONDS].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('bench:floor: --orders, --rounds, --concurrency and --http-seconds must be positive integers\n');
  process.exit(2);
}

const order = orderMachine.provide({ actors: instantSteps });

/** Five invoked steps in a row, each result assigned to context: nothing else. */
const step = (src: string, target: string) => ({
  invoke: { src, onDone: { target, actions: assign({ [src]: ({ event }: { event: { output: unknown } }) => event.output }) } },
});
const minimal = setup({
  actors: { a: instant(() => 1), b: instant(() => 2), c: instant(() => 3), d: instant(() => 4), e: instant(() => 5) },
}).createMachine({
  context: {},
  initial: 'a',
  states: { a: step('a', 'b'), b: step('b', 'c'), c: step('c', 'd'), d: step('d', 'e'), e: step('e', 'done'), done: { type: 'final' } },
} as never);

/** Runs `ORDERS` actors to their final state, `IN_FLIGHT` at a time; returns orders/s. */
function runRound(machine: AnyStateMachine, persist: boolean): Promise<number> {
  const started = performance.now();
  let launched = 0;
  let finished = 0;
  return new Promise((resolve) => {
    const launch = () => {
      launched++;
      const actor = createActor(machine, { input: orderInput() });
      actor.subscribe({
        next: (snapshot) => {
          if (persist) JSON.stringify(machine.getPersistedSnapshot(snapshot));
        },
        complete: () => {
          finished++;
          if (launched < ORDERS) launch();
          else if (finished === ORDERS) resolve((ORDERS / (performance.now() - started)) * 1000);
        },
      });
      actor.start();
    };
    for (let i = 0; i < Math.min(IN_FLIGHT, ORDERS); i++) launch();
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const cases: Array<{ name: string; machine: AnyStateMachine; persist: boolean }> = [
  { name: 'minimal 5-step machine', machine: minimal as unknown as AnyStateMachine, persist: false },
  { name: 'order machine, instant steps', machine: order, persist: false },
  { name: 'order machine, instant steps, snapshot persisted per transition', machine: order, persist: true },
];

process.stdout.write(`Floors. XState on one core: ${ORDERS} orders × ${ROUNDS} rounds, ${IN_FLIGHT} in flight (node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'})\n`);
await runRound(order, true); // warm-up: let V8 optimise before anything is measured
const results = [];
for (const c of cases) {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) rates.push(await runRound(c.machine, c.persist));
  const perS = Math.round(median(rates));
  results.push({ name: c.name, orders_per_s: perS, us_per_order: Math.round((1e6 / perS) * 10) / 10, rounds: rates.map(Math.round) });
  process.stdout.write(`  ${c.name.padEnd(66)} ${String(perS).padStart(6)} orders/s  ${(1e6 / perS).toFixed(1).padStart(6)} µs/order\n`);
}

/** The HTTP layer alone: a separate server process, 1 s of warm-up, then the measured run. */
async function httpFloor() {
  const secret = 'bench-floor-secret-that-is-at-least-32-bytes';
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/http-floor.server.ts', String(port), secret], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
      child.once('exit', (code) => reject(new Error(`http floor server exited with ${code}`)));
    });
    const token = await mintToken({ secret, sub: 'bench-user', role: 'user' });
    const skus = Array.from({ length: 200 }, (_, i) => `BENCH-${String(i).padStart(4, '0')}`);
    const requests = [
      {
        kind: 'create',
        method: 'POST' as const,
        path: '/api/v1/pipeline/orders',
        setupRequest: (req: object) => ({ ...req, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: orderBody(skus, 2, 'tok_visa') }),
      },
    ];
    const url = `http://127.0.0.1:${port}`;
    await runLoad({ url, connections: IN_FLIGHT, durationSec: 1, requests });
    const before = markCpu(child.pid!);
    const load = await runLoad({ url, connections: IN_FLIGHT, durationSec: HTTP_SECONDS, requests });
    const serverCpu = cpuPercent(before, markCpu(child.pid!));
    const create = load.kinds.create!;
    const ok = create.statuses['201'] ?? 0;
    if (ok !== create.count) throw new Error(`http floor: expected only 201s, got ${JSON.stringify(create.statuses)}`);
    const perS = Math.round(ok / load.durationSec);
    return { per_s: perS, latency_ms: summarise(create.latencies), server_cpu_pct: Math.round(serverCpu), loadgen_cpu_pct: Math.round(load.loadgenCpuPct) };
  } finally {
    child.kill();
  }
}

const http = await httpFloor();
const usPerRequest = Math.round((1e6 / http.per_s) * (http.server_cpu_pct / 100) * 10) / 10;
process.stdout.write(
  `  ${'HTTP layer: createApp + sync route, instant engine (own process)'.padEnd(66)} ${String(http.per_s).padStart(6)} req/s     ` +
    `${usPerRequest.toFixed(1).padStart(6)} µs CPU/req (server ${http.server_cpu_pct}%, p99 ${http.latency_ms.p99} ms, load generator ${http.loadgen_cpu_pct}%)\n`,
);
// The machine without persistence: the bound stays an upper bound.
const orderUs = results.find((r) => r.name === 'order machine, instant steps')!.us_per_order;
const bound = Math.round(1e6 / (orderUs + usPerRequest));
process.stdout.write(`  one event loop running the order machine and the HTTP layer, nothing persisted: at most ${bound} orders/s\n`);

const dir = join(ROOT, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/:/g, '-')}-floor.json`);
const out = { bench: 'ordersaga floors', orders: ORDERS, rounds: ROUNDS, in_flight: IN_FLIGHT, node: process.version, cpu: os.cpus()[0]?.model, cpus: os.cpus().length, xstate: results, http: { ...http, us_cpu_per_request: usPerRequest }, one_loop_bound_orders_per_s: bound };
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
process.stdout.write(`result: ${file.slice(ROOT.length)}\n`);
process.exit(0); // the order machines' deadline timers would otherwise keep the process alive
