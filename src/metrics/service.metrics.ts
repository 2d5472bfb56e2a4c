import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StageName } from '../domain/order.js';
import type { CommitInfo, OrderChange, OrderEngine } from '../orders/order.engine.js';
import type { OrderView } from '../orders/order.view.js';

/*
 * What one instance exposes on /metrics. Each service gets its own Registry (no prom-client
 * globals), so several services in one process (the tests) do not share or clash. Everything is
 * fed from outside: the engine's commits (`watchEngine`), the pool's stats (`watchPool`), the
 * HTTP middleware (`http`). Labels are bounded sets (stage, status, code, route template, method,
 * HTTP status), never an order or a user.
 */

export interface PoolStats {
  /** Tasks waiting for a worker thread. */
  queueSize: number;
  /** Share of the threads' time spent running tasks since the pool started, 0..1. */
  utilization: number;
  threads: number;
}

const FINAL = new Set(['completed', 'failed', 'cancelled']);
/** A stage not seen before (shared, never changed). */
const UNSEEN: Readonly<SeenStage> = Object.freeze({ ended: false, attempts: 0, compensated: false });
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the metrics remember of an order between its commits, to see what changed in each. */
interface SeenStage {
  ended: boolean;
  attempts: number;
  compensated: boolean;
}

export interface ServiceMetrics {
  readonly registry: Registry;
  /** Request duration and count by route template, method and status; mount first. */
  readonly http: MiddlewareHandler;
  /** Counts what the engine commits; `parked` counts the orders parked in compensation_failed. Returns the unsubscribe. */
  watchEngine(engine: Pick<OrderEngine, 'subscribe' | 'stats'>, parked?: () => Promise<number>): () => void;
  watchPool(pool: { stats(): PoolStats }): void;
}

export function createServiceMetrics({ defaultMetrics = true }: { defaultMetrics?: boolean } = {}): ServiceMetrics {
  const registry = new Registry();
  if (defaultMetrics) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters, which promtool rejects; `nodejs_active_handles` and
    // `nodejs_active_resources` (by type) carry the same counts.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  const registers = [registry];

  const started = new Counter({ name: 'ordersaga_orders_started_total', help: 'Orders started (their first state committed).', registers });
  const finished = new Counter({
    name: 'ordersaga_orders_finished_total',
    help: 'Orders that reached a final state, by status and failure code ("none" when completed without one).',
    labelNames: ['status', 'code'] as const,
    registers,
  });
  const stageDuration = new Histogram({
    name: 'ordersaga_stage_duration_seconds',
    help: "A stage's time from its first start to its end, by stage and outcome (succeeded or failed).",
    labelNames: ['stage', 'outcome'] as const,
    buckets: SECONDS,
    registers,
  });
  const retries = new Counter({ name: 'ordersaga_stage_retries_total', help: 'Attempts of a stage after its first, by stage.', labelNames: ['stage'] as const, registers });
  const compensations = new Counter({
    name: 'ordersaga_compensations_total',
    help: 'Stages whose effect was undone (payment refunded, reservation released, …), by stage.',
    labelNames: ['stage'] as const,
    registers,
  });
  const commitSize = new Histogram({
    name: 'ordersaga_commit_batch_size',
    help: 'Order states committed together in one unit of work.',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers,
  });
  const commitDuration = new Histogram({ name: 'ordersaga_commit_duration_seconds', help: 'From the start of a commit to its being durable.', buckets: SECONDS, registers });
  const fenced = new Counter({ name: 'ordersaga_commit_fenced_total', help: 'Order states refused at commit because another owner holds a newer epoch.', registers });

  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration, by route template, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: SECONDS,
    registers,
  });
  const httpRequests = new Counter({ name: 'http_requests_total', help: 'HTTP requests, by route template, method and status.', labelNames: ['route', 'method', 'status'] as const, registers });

  // One label set per route, method and status, made once: building, validating and hashing a
  // fresh labels object on every request cost more than the observation itself.
  const httpSeries = new Map<string, { labels: { route: string; method: string; status: string } }>();
  const seriesOf = (route: string, method: string, status: number) => {
    const key = `${status} ${method} ${route}`;
    let series = httpSeries.get(key);
    if (!series) httpSeries.set(key, (series = { labels: { route, method, status: String(status) } }));
    return series;
  };
  const http: MiddlewareHandler = async function httpMetrics(c, next) {
    const start = performance.now();
    try {
      await next();
    } finally {
      const { labels } = seriesOf(routeTemplate(c), c.req.method, c.res.status);
      httpDuration.observe(labels, (performance.now() - start) / 1000);
      httpRequests.inc(labels);
    }
  };

  const seen = new Map<string, Map<StageName, SeenStage>>();

  function observe(change: OrderChange): void {
    const { view, order_id: id } = change;
    if (change.seq === 1) started.inc();
    let stages = seen.get(id);
    if (!stages) seen.set(id, (stages = new Map()));
    for (const stage of view.stages) observeStage(stage, stages, view.failure?.stage);
    if (FINAL.has(view.status)) {
      finished.inc({ status: view.status, code: view.failure?.code ?? 'none' });
      seen.delete(id);
    }
  }

  /** `failedStage`: the stage whose failure started the compensation, if any. */
  function observeStage(stage: OrderView['stages'][number], stages: Map<StageName, SeenStage>, failedStage: StageName | undefined): void {
    const before = stages.get(stage.name) ?? UNSEEN;
    // An admin retry gives a failed compensation fresh attempts: count from there.
    const counted = Math.max(stage.attempts < before.attempts ? 0 : before.attempts, 1);
    if (stage.attempts > counted) retries.inc({ stage: stage.name }, stage.attempts - counted);
    const ended = stage.ended_at !== null && (stage.status === 'succeeded' || stage.status === 'failed' || stage.status === 'compensated');
    if (ended && !before.ended && stage.started_at) {
      // One commit may hold several steps: a stage that failed and was undone in the same turn
      // shows up `compensated`, and only the order's failure tells it failed.
      const outcome = stage.status === 'failed' || (stage.status === 'compensated' && failedStage === stage.name) ? 'failed' : 'succeeded';
      stageDuration.observe({ stage: stage.name, outcome }, Math.max(0, Date.parse(stage.ended_at!) - Date.parse(stage.started_at)) / 1000);
    }
    const compensated = stage.status === 'compensated';
    if (compensated && !before.compensated) compensations.inc({ stage: stage.name });
    // Most commits leave most stages as they were: remember a stage again only when it changed.
    if (before === UNSEEN || before.attempts !== stage.attempts || before.ended !== ended || before.compensated !== compensated) {
      stages.set(stage.name, { attempts: stage.attempts, ended, compensated });
    }
  }

  return {
    registry,
    http,
    watchEngine(engine, parked) {
      new Gauge({ name: 'ordersaga_orders_live', help: 'Orders this instance is running now.', registers, collect() { this.set(engine.stats().live); } });
      if (parked) {
        new Gauge({
          name: 'ordersaga_orders_parked',
          help: 'Orders parked in compensation_failed, waiting for an admin retry (from the store).',
          registers,
          // Every order loop counts the same store: their /metrics (summed over loops) takes one count.
          aggregator: 'max',
          async collect() {
            // The store not answering must not fail the whole scrape: the count is unknown then.
            this.set(await parked().catch(() => Number.NaN));
          },
        });
      }
      return engine.subscribe((changes: readonly OrderChange[], commit: CommitInfo) => {
        // Another instance's commits are its own metrics: each instance's /metrics covers what it runs.
        if (commit.remote) return;
        commitSize.observe(commit.states + commit.fenced);
        commitDuration.observe(commit.duration_ms / 1000);
        if (commit.fenced > 0) fenced.inc(commit.fenced);
        for (const change of changes) observe(change);
      });
    },
    watchPool(pool) {
      new Gauge({ name: 'ordersaga_inventory_pool_queue_depth', help: 'Inventory tasks waiting for a worker thread.', registers, collect() { this.set(pool.stats().queueSize); } });
      new Gauge({
        name: 'ordersaga_inventory_pool_utilization_ratio',
        help: "Share of the inventory threads' time spent on tasks since the pool started (0..1).",
        registers,
        // A ratio: over several order loops (each with its pool) the mean, not the sum.
        aggregator: 'average',
        collect() {
          this.set(pool.stats().utilization);
        },
      });
      new Gauge({ name: 'ordersaga_inventory_pool_threads', help: 'Inventory worker threads.', registers, collect() { this.set(pool.stats().threads); } });
    },
  };
}

/** The route template that answered (`/api/v1/pipeline/orders/:id/status`), or `unmatched` for a 404 of no route. */
function routeTemplate(c: Parameters<MiddlewareHandler>[0]): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i]!;
    if (route.method !== 'ALL') return route.path;
  }
  return 'unmatched';
}
