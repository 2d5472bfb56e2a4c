import type { ClusterBus, ClusterChannel } from '../../src/store/store.ports.js';

/**
 * `count` connected `ClusterBus` members in one process, as the primary's IPC relay connects
 * the order loops: what one publishes reaches every other member (never itself), on a later
 * turn of the event loop, as a message over IPC would. `sent` counts what was published.
 */
export function memoryBus(count: number): ClusterBus[] & { sent: Array<{ from: number; channel: ClusterChannel; payload: string }> } {
  const handlers: Array<Set<(channel: ClusterChannel, payload: string) => void>> = Array.from({ length: count }, () => new Set());
  const sent: Array<{ from: number; channel: ClusterChannel; payload: string }> = [];
  const members = handlers.map(
    (own, from): ClusterBus => ({
      publish(channel, payload) {
        sent.push({ from, channel, payload });
        for (const other of handlers) {
          if (other === own) continue;
          for (const handler of [...other]) setImmediate(() => other.has(handler) && handler(channel, payload));
        }
      },
      subscribe(handler) {
        own.add(handler);
        return () => void own.delete(handler);
      },
    }),
  );
  return Object.assign(members, { sent });
}
