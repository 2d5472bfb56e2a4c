import type { Worker } from 'node:cluster';
import type { ClusterBus, ClusterChannel } from '../store/store.ports.js';
import { isLoopMessage, type LoopMessage } from './ipc.protocol.js';

/**
 * The ClusterBus of an order loop: `publish` goes to the primary, which relays it to every
 * other live loop (order-loops.primary.ts); `subscribe` gets what the others publish. A
 * notification only wakes a member (it polls anyway), so one lost while a loop restarts
 * costs latency, never an order.
 */
export function ipcClusterBus(proc: NodeJS.Process = process): ClusterBus {
  return {
    publish(channel, payload) {
      if (!proc.connected || !proc.send) return;
      const message: LoopMessage = { ordersaga: 'bus', channel, payload };
      proc.send(message);
    },
    subscribe(handler: (channel: ClusterChannel, payload: string) => void) {
      const listener = (message: unknown) => {
        if (isLoopMessage(message) && message.ordersaga === 'bus') handler(message.channel, message.payload);
      };
      proc.on('message', listener);
      return () => void proc.off('message', listener);
    },
  };
}

/**
 * In the primary: passes a loop's bus message to every other live loop (never back to the
 * sender). A loop that just died may still be listed: what it misses, its replacement does not
 * need (it reads the store as it starts).
 */
export function relayBusMessage(message: LoopMessage & { ordersaga: 'bus' }, from: Worker, loops: Iterable<Worker | undefined>): void {
  for (const loop of loops) if (loop && loop !== from && loop.isConnected()) loop.send(message, undefined, undefined, () => undefined);
}
