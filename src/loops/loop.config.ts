import type { Config } from '../config.js';

/*
 * What one order loop of several runs with. The primary starts each loop with its slot in
 * LOOP_SLOT_ENV and its owner id in INSTANCE_ID; the loop reads the rest of the
 * environment as a single process would, then takes its share of the per-service limits.
 */

/** The environment variable the primary sets on each loop process: its slot, 0..WORKERS−1. */
export const LOOP_SLOT_ENV = 'ORDERSAGA_LOOP_SLOT';

/** Slot `slot`'s owner id: the same at every start of the slot, so a replacement resumes its predecessor's orders at once. */
export function loopInstanceId(base: string, slot: number): string {
  return `${base}-${slot}`;
}

/**
 * A loop's configuration: the service's, with the limits that bound the whole service split
 * between the loops (each at least 1):
 * - MAX_LIVE_ORDERS and SSE_MAX_STREAMS: ceil(n / WORKERS) per loop, so the service holds about n;
 * - INVENTORY_THREADS: ceil(n / WORKERS) per loop's Piscina pool, so the machine runs about n
 *   inventory threads, not WORKERS × n;
 * - DATABASE_POOL_SIZE: ceil(n / WORKERS) per loop's PostgreSQL pool, so the service holds about
 *   the connections it did as one process (the server's max_connections is the service's budget);
 * - SSE_MAX_STREAMS_PER_USER stays per loop: a user's streams land on any loop, and splitting
 *   would refuse a user below the limit whenever they land unevenly; the service bounds a user
 *   at WORKERS × n (the service-wide SSE_MAX_STREAMS still holds).
 * Rate-limit counters move to the primary when neither Redis nor PostgreSQL holds them.
 */
export function loopConfig(config: Config): Config {
  const share = (n: number) => Math.max(1, Math.ceil(n / config.workers));
  return {
    ...config,
    maxLiveOrders: share(config.maxLiveOrders),
    inventoryThreads: share(config.inventoryThreads),
    database: { ...config.database, poolSize: share(config.database.poolSize) },
    sse: { ...config.sse, maxStreams: share(config.sse.maxStreams) },
    rateLimit: { ...config.rateLimit, storage: { ...config.rateLimit.storage, cluster: true } },
  };
}
