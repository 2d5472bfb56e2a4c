import type { PipelineStatus } from '../domain/order.js';

/** The states that only group others or wrap a step's attempt; the API names the step instead. */
const WRAPPERS = new Set(['cancellable', 'compensating', 'running', 'waiting', 'planning']);

type StateValue = string | { [key: string]: StateValue };

/** The step an order is at, e.g. `paying` for `{ cancellable: { paying: 'running' } }`. */
export function stateName(value: StateValue): string {
  const path: string[] = [];
  let node: StateValue = value;
  while (typeof node !== 'string') {
    const [key, child] = Object.entries(node)[0] as [string, StateValue];
    path.push(key);
    node = child;
  }
  path.push(node);
  const named = path.filter((p) => !WRAPPERS.has(p));
  return named.at(-1) ?? path.at(-1)!;
}

/** The API's status for a snapshot of the order machine. */
export function pipelineStatus(snapshot: { status: string; value: StateValue }): PipelineStatus {
  if (snapshot.status === 'done' && typeof snapshot.value === 'string') {
    if (snapshot.value === 'completed' || snapshot.value === 'failed' || snapshot.value === 'cancelled') return snapshot.value;
  }
  if (snapshot.value === 'compensationFailed') return 'compensation_failed';
  return 'processing';
}

/** Final and parked orders need no live actor. */
export function isSettled(status: PipelineStatus): boolean {
  return status !== 'processing';
}
