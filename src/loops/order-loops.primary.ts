import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.js';
import { countersInPrimary, startClusterRateLimits } from '../http/rate-limit.store.js';
import type { Logger } from '../logger.js';
import { relayBusMessage } from './ipc.bus.js';
import { isLoopMessage, type LoopMessage } from './ipc.protocol.js';
import { LOOP_SLOT_ENV, loopInstanceId } from './loop.config.js';
import { primaryMetrics } from './metrics.relay.js';

/*
 * The primary of WORKERS order loops: node:cluster processes running the same service on the
 * same port, each one a cluster member with its own owner id and lease. The primary serves no
 * request and runs no order: it starts the loops, relays their bus messages, keeps the rate
 * limits and answers /metrics for all of them, replaces a loop that dies, and stops them all
 * on SIGTERM/SIGINT.
 */

/** A loop that lived less than this before it died counts as crashing again: its replacement waits longer. */
const STEADY_MS = 10_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** After SIGTERM, loops that are not gone this long after their own grace are killed. */
const STOP_SLACK_MS = 30_000;

interface Slot {
  worker: Worker | undefined;
  startedAt: number;
  /** Deaths in a row, each within STEADY_MS of its start. */
  crashes: number;
  timer: NodeJS.Timeout | undefined;
}

export interface OrderLoopsOptions {
  config: Config;
  logger: Logger;
  /** Logged once every loop of the first start listens (the service's 'listening' line). */
  listening: (address: { port: number }) => void;
}

/** Starts the loops and supervises them until SIGTERM/SIGINT; then exits 0 (1 if a loop failed). */
export function runOrderLoops({ config, logger, listening }: OrderLoopsOptions): void {
  // Generated once (or INSTANCE_ID): slot i is always `${base}-${i}`.
  const base = config.instanceId;
  if (countersInPrimary(config.rateLimit.storage)) startClusterRateLimits();
  const metrics = primaryMetrics();
  const slots: Slot[] = Array.from({ length: config.workers }, () => ({ worker: undefined, startedAt: 0, crashes: 0, timer: undefined }));
  let up = false;
  let stopping = false;
  let failed = false;
  const listened = new Set<number>();

  const send = (worker: Worker, message: LoopMessage) => {
    if (worker.isConnected()) worker.send(message, undefined, undefined, () => undefined);
  };

  const start = (slot: number) => {
    const s = slots[slot]!;
    s.timer = undefined;
    const worker = cluster.fork({ [LOOP_SLOT_ENV]: String(slot), INSTANCE_ID: loopInstanceId(base, slot) });
    s.worker = worker;
    s.startedAt = Date.now();
    const pid = worker.process.pid;
    worker.on('error', (err) => logger.warn({ err, loop: slot, pid }, 'order loop IPC error'));
    worker.on('message', (message: unknown) => {
      if (!isLoopMessage(message)) return;
      if (message.ordersaga === 'bus') {
        relayBusMessage(message, worker, slots.map((other) => other.worker));
      } else if (message.ordersaga === 'metrics?') {
        metrics.answer((answer) => send(worker, answer), message.id);
      }
    });
    worker.on('listening', (address) => {
      logger.info({ loop: slot, pid, instance: loopInstanceId(base, slot) }, 'order loop listening');
      listened.add(slot);
      if (!up && listened.size === slots.length) {
        up = true;
        listening({ port: address.port });
      }
    });
    worker.on('exit', (code, signal) => {
      if (s.worker === worker) s.worker = undefined;
      if (stopping) {
        if (code !== 0) failed = true;
        logger.info({ loop: slot, pid, code, signal }, 'order loop stopped');
        finishWhenAllGone();
        return;
      }
      if (!up) {
        // As a single process that cannot start: stop, saying so (the loop said why on stderr).
        logger.error({ loop: slot, pid, code, signal }, 'an order loop exited before the service started; stopping');
        failed = true;
        stop('startup');
        return;
      }
      s.crashes = Date.now() - s.startedAt < STEADY_MS ? s.crashes + 1 : 1;
      const delayMs = s.crashes <= 1 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (s.crashes - 2));
      logger.error({ loop: slot, pid, code, signal, restart_in_ms: delayMs, crashes: s.crashes }, 'order loop exited unexpectedly; starting a replacement in its slot');
      s.timer = setTimeout(() => start(slot), delayMs);
    });
  };

  const finishWhenAllGone = () => {
    if (slots.some((s) => s.worker)) return;
    logger.info({ failed }, 'every order loop stopped');
    process.exit(failed ? 1 : 0);
  };

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers: slots.length, grace_ms: config.shutdownGraceMs }, 'shutting down the order loops');
    for (const s of slots) {
      clearTimeout(s.timer);
      s.timer = undefined;
      // SIGTERM, not worker.kill(): a loop whose IPC closes exits at once, without draining.
      s.worker?.process.kill('SIGTERM');
    }
    setTimeout(() => {
      for (const s of slots) {
        if (!s.worker) continue;
        logger.error({ loop: slots.indexOf(s), pid: s.worker.process.pid }, 'order loop did not stop in time; killing it');
        failed = true;
        s.worker.process.kill('SIGKILL');
      }
    }, config.shutdownGraceMs + STOP_SLACK_MS).unref();
    finishWhenAllGone();
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  for (let slot = 0; slot < slots.length; slot++) start(slot);
}
