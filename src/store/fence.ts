import { AsyncLocalStorage } from 'node:async_hooks';
import { OrderError } from '../domain/errors.js';

/**
 * Who may write an order's effects: the owner and the epoch under which the step making
 * them started. Bound once per step run (not looked up by order id at write time), so a
 * step left running by an actor that has since been dropped and claimed again keeps
 * quoting its own, stale epoch and is refused.
 */
export interface Fence {
  owner: string;
  epoch: number;
  /** Told when the store refused a write under this fence: the engine drops the actor at once. */
  refused(orderId: string): void;
}

/*
 * The fence travels with the step's async context rather than through every port's
 * signature: gateways and the carrier call the stores on the step's behalf and need not
 * know about ownership. Every store reads it: PostgreSQL in the effect's statement, SQLite
 * inside the effect's write transaction. It is set only when a cluster is in use (several
 * instances on PostgreSQL, several order loops on one SQLite file); a lone process runs
 * its steps unfenced.
 */
const current = new AsyncLocalStorage<Fence>();

/** Runs `fn` (a step) with its effects fenced by `fence`; without one, unfenced. */
export function runFenced<T>(fence: Fence | undefined, fn: () => Promise<T>): Promise<T> {
  return fence ? current.run(fence, fn) : fn();
}

/** The fence of the step this call is made for, if any. */
export function currentFence(): Fence | undefined {
  return current.getStore();
}

/** What a write refused by its fence throws (after telling the engine). Nobody sees it: the actor is gone by then. */
export function staleEpoch(orderId: string, fence: Fence): OrderError {
  fence.refused(orderId);
  return new OrderError('step_failed', `stale_epoch: order ${orderId} is no longer owned by ${fence.owner} at epoch ${fence.epoch}`, {
    details: { reason: 'stale_epoch' },
  });
}

/** The fence as statement parameters: owner (null: unfenced) and epoch. */
export function fenceParams(fence: Fence | undefined): [string | null, number] {
  return fence ? [fence.owner, fence.epoch] : [null, 0];
}
