import { AggregatorRegistry, Registry } from 'prom-client';
import { isLoopMessage, type LoopMessage } from './ipc.protocol.js';

/*
 * /metrics over every order loop. Each loop answers prom-client's requests with its own
 * registry (`AggregatorRegistry.setRegistries`); a loop asked for /metrics asks the primary,
 * which collects all loops' registries (`clusterMetrics`, summing counters and histograms,
 * gauges by their `aggregator`) and answers with one exposition.
 */

/** How long a loop waits for the primary (prom-client gives up on a silent loop after 5 s). */
const ANSWER_TIMEOUT_MS = 6_000;

/**
 * In a loop: makes it answer the primary's metrics requests (prom-client adds that listener
 * when an AggregatorRegistry is made in a worker) with nothing until `serve` names its registry.
 */
export function loopMetrics(proc: NodeJS.Process = process): { serve(registry: Registry): void; exposition: Pick<Registry, 'metrics' | 'contentType'> } {
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([]);
  let next = 0;
  const waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  proc.on('message', (message: unknown) => {
    if (!isLoopMessage(message) || message.ordersaga !== 'metrics') return;
    const w = waiting.get(message.id);
    if (!w) return;
    waiting.delete(message.id);
    clearTimeout(w.timer);
    if (message.text !== undefined) w.resolve(message.text);
    else w.reject(new Error(`metrics of the order loops: ${message.error ?? 'no answer'}`));
  });
  return {
    serve: (registry) => AggregatorRegistry.setRegistries([registry]),
    exposition: {
      contentType: Registry.PROMETHEUS_CONTENT_TYPE,
      metrics: () =>
        new Promise<string>((resolve, reject) => {
          const id = next++;
          const timer = setTimeout(() => {
            waiting.delete(id);
            reject(new Error('metrics of the order loops: the primary did not answer'));
          }, ANSWER_TIMEOUT_MS);
          waiting.set(id, { resolve, reject, timer });
          const ask: LoopMessage = { ordersaga: 'metrics?', id };
          proc.send!(ask);
        }),
    },
  };
}

/** In the primary: the aggregator every loop's /metrics is answered from. Make it before the first fork. */
export function primaryMetrics(): { answer(send: (message: LoopMessage) => void, id: number): void } {
  const aggregator = new AggregatorRegistry();
  return {
    answer(send, id) {
      aggregator.clusterMetrics().then(
        (text) => send({ ordersaga: 'metrics', id, text }),
        (err: Error) => send({ ordersaga: 'metrics', id, error: err.message }),
      );
    },
  };
}
