import type { ClusterChannel } from '../store/store.ports.js';

/*
 * The messages between the primary and its order loops over node:cluster IPC, besides the
 * ones rate-limiter-flexible and prom-client send on the same channel (each library ignores
 * what is not its own, as these do: every message here has `ordersaga`).
 */

export type LoopMessage =
  /** A loop → primary: relay to every other loop. Primary → a loop: another loop published it. */
  | { ordersaga: 'bus'; channel: ClusterChannel; payload: string }
  /** A loop → primary: the whole service's metrics, please. */
  | { ordersaga: 'metrics?'; id: number }
  /** Primary → the loop that asked: the aggregated exposition, or why there is none. */
  | { ordersaga: 'metrics'; id: number; text?: string; error?: string };

export function isLoopMessage(message: unknown): message is LoopMessage {
  return typeof message === 'object' && message !== null && typeof (message as { ordersaga?: unknown }).ordersaga === 'string';
}
