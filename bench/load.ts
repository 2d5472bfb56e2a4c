/**
 * Load generation with autocannon's programmatic API, plus per-request-kind latency and
 * status accounting (autocannon's own histogram has no p95 and mixes the requests of a
 * chained sequence).
 */
import autocannon from 'autocannon';

/** A request of a sequence, tagged with the kind it is reported under (e.g. "post", "status"). */
export interface TaggedRequest extends autocannon.Request {
  kind: string;
}

export interface LoadOptions {
  url: string;
  connections: number;
  durationSec: number;
  requests: TaggedRequest[];
  /** Requests per second over all connections (open-ish loop), for the soak. */
  overallRate?: number;
  /** Seconds before a request counts as timed out; above SYNC_WAIT_MS so the server answers first. */
  timeoutSec?: number;
  /** Counts responses as they arrive (for progress output while the run goes on). */
  progress?: { responses: number };
}

export interface KindStats {
  count: number;
  statuses: Record<string, number>;
  latencies: number[];
}

export interface LoadResult {
  start: Date;
  finish: Date;
  durationSec: number;
  kinds: Record<string, KindStats>;
  errors: number;
  timeouts: number;
  resets: number;
  totalResponses: number;
  /** The bench process's own CPU over the run (100 % = one core). */
  loadgenCpuPct: number;
  raw: Pick<autocannon.Result, 'requests' | 'latency' | 'throughput' | 'non2xx' | 'statusCodeStats' | 'errors' | 'timeouts'>;
}

interface ClientInternals {
  requestIterator: { currentRequestIndex: number };
}

export function runLoad(o: LoadOptions): Promise<LoadResult> {
  const kinds: Record<string, KindStats> = {};
  for (const r of o.requests) kinds[r.kind] ??= { count: 0, statuses: {}, latencies: [] };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        duration: o.durationSec,
        requests: o.requests,
        timeout: o.timeoutSec ?? 30,
        ...(o.overallRate ? { overallRate: o.overallRate } : {}),
      },
      (err, result) => {
        if (err) return reject(err);
        const cpu = process.cpuUsage(cpu0);
        const wallMs = performance.now() - t0;
        resolve({
          start: result.start,
          finish: result.finish,
          durationSec: (result.finish.getTime() - result.start.getTime()) / 1000,
          kinds,
          errors: result.errors,
          timeouts: result.timeouts,
          resets: result.resets,
          totalResponses: Object.values(kinds).reduce((n, k) => n + k.count, 0),
          loadgenCpuPct: ((cpu.user + cpu.system) / 1000 / wallMs) * 100,
          raw: {
            requests: result.requests,
            latency: result.latency,
            throughput: result.throughput,
            non2xx: result.non2xx,
            statusCodeStats: result.statusCodeStats,
            errors: result.errors,
            timeouts: result.timeouts,
          },
        });
      },
    );
    // With pipelining 1 the client's current request is the one just answered: the
    // 'response' event fires before the client moves on to the next request.
    instance.on('response', (client, statusCode, _bytes, responseTime) => {
      const index = (client as unknown as ClientInternals).requestIterator.currentRequestIndex;
      const stats = kinds[o.requests[index]?.kind ?? 'unknown'] ?? (kinds.unknown = { count: 0, statuses: {}, latencies: [] });
      stats.count++;
      stats.statuses[statusCode] = (stats.statuses[statusCode] ?? 0) + 1;
      stats.latencies.push(responseTime);
      if (o.progress) o.progress.responses++;
    });
  });
}

/**
 * The same load spread over several instances: the connections divided between the URLs
 * (as a load balancer with keep-alive pins each connection to one instance), one
 * autocannon per URL running at the same time, and the results merged.
 */
export async function runLoadSpread(o: LoadOptions, urls: readonly string[]): Promise<LoadResult> {
  if (urls.length <= 1) return runLoad({ ...o, url: urls[0] ?? o.url });
  const share = (i: number) => Math.floor(o.connections / urls.length) + (i < o.connections % urls.length ? 1 : 0);
  const parts = await Promise.all(
    urls.map((url, i) =>
      runLoad({ ...o, url, connections: Math.max(1, share(i)), ...(o.overallRate ? { overallRate: o.overallRate / urls.length } : {}) }),
    ),
  );
  const kinds: Record<string, KindStats> = {};
  for (const part of parts) {
    for (const [kind, k] of Object.entries(part.kinds)) {
      const into = (kinds[kind] ??= { count: 0, statuses: {}, latencies: [] });
      into.count += k.count;
      for (const [status, n] of Object.entries(k.statuses)) into.statuses[status] = (into.statuses[status] ?? 0) + n;
      for (const l of k.latencies) into.latencies.push(l);
    }
  }
  const start = new Date(Math.min(...parts.map((p) => p.start.getTime())));
  const finish = new Date(Math.max(...parts.map((p) => p.finish.getTime())));
  const sum = (f: (p: LoadResult) => number) => parts.reduce((n, p) => n + f(p), 0);
  return {
    start,
    finish,
    durationSec: (finish.getTime() - start.getTime()) / 1000,
    kinds,
    errors: sum((p) => p.errors),
    timeouts: sum((p) => p.timeouts),
    resets: sum((p) => p.resets),
    totalResponses: sum((p) => p.totalResponses),
    // process.cpuUsage is per process: each part measured the whole bench process.
    loadgenCpuPct: Math.max(...parts.map((p) => p.loadgenCpuPct)),
    raw: parts[0]!.raw,
  };
}

// --- statistics ---------------------------------------------------------------------------

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function summarise(latencies: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(latencies).sort();
  const arr = Array.from(sorted);
  const r2 = (n: number) => Math.round(n * 100) / 100;
  return {
    count: arr.length,
    mean: r2(arr.reduce((a, b) => a + b, 0) / Math.max(1, arr.length)),
    p50: r2(percentile(arr, 50)),
    p95: r2(percentile(arr, 95)),
    p99: r2(percentile(arr, 99)),
    max: r2(arr.at(-1) ?? NaN),
  };
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}
