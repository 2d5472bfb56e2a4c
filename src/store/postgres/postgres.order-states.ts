import { OrderError } from '../../domain/errors.js';
import type { Logger } from '../../logger.js';
import type { OrderView } from '../../orders/order.view.js';
import type { OrderStateStore, OrderStateWrite, StoredOrder } from '../store.ports.js';
import { isBusy, run, type Pool } from './postgres.database.js';
import { plans } from './postgres.plans.js';

type StoredRow = Omit<StoredOrder, 'view'> & { view: string };

const toStored = (row: StoredRow): StoredOrder => ({ ...row, view: JSON.parse(row.view) as OrderView });

export interface PostgresOrderStatesOptions {
  logger: Logger;
  /** How long a commit that meets contention or a lost connection is retried before giving up. */
  commitRetryMs?: number;
  /** Called when a commit could not be made at all (default: exit, so that recovery resumes from the last commit). */
  onFatal?: (err: unknown) => void;
}

/**
 * Order states in `order_snapshots` (one row per order: its latest snapshot, its view and
 * the fence) and every committed change in `order_changes`.
 *
 * The unit of work: at the end of the turn (`setImmediate`), `collect()` hands over the
 * states of that turn and one statement writes them all, each conditional on its
 * `(owner, epoch)`, with their history rows; it is its own transaction. Unlike SQLite's
 * group commit, the steps' effects are not in it: each effect commits on its own, before
 * its step resolves, so it is durable before any state that records it (see
 * postgres.stores.ts).
 */
export function createPostgresOrderStates(pool: Pool, options: PostgresOrderStatesOptions): OrderStateStore {
  const retryMs = options.commitRetryMs ?? 5000;
  const onFatal = options.onFatal ?? (() => process.exit(1));

  async function writeChunk(rows: readonly OrderStateWrite[]): Promise<Set<string>> {
    const values = rows.flatMap((s) => [
      s.order_id,
      s.user_id,
      s.status,
      s.state,
      s.snapshot,
      JSON.stringify(s.view),
      s.seq,
      s.owner,
      s.epoch,
      s.created_at,
      s.updated_at,
    ]);
    const deadline = Date.now() + retryMs;
    for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
      try {
        const written = new Set((await run<{ order_id: string }>(pool, plans.commitStates(rows.length), values)).map((r) => r.order_id));
        return new Set(rows.filter((s) => !written.has(s.order_id)).map((s) => s.order_id));
      } catch (err) {
        // Running the statement again is safe even if the failed one did commit: same
        // owner and epoch write the same row again, and history rows are kept once.
        // `run` has mapped contention (deadlocks included) to storage_busy already.
        const busy = isBusy(err) || (err instanceof OrderError && err.code === 'storage_busy');
        if (!busy || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }

  async function write(states: readonly OrderStateWrite[]): Promise<Set<string>> {
    // One row per order, the latest; sorted, so that concurrent writers lock rows in one order.
    const latest = new Map<string, OrderStateWrite>();
    for (const s of states) latest.set(s.order_id, s);
    const rows = [...latest.values()].sort((a, b) => (a.order_id < b.order_id ? -1 : a.order_id > b.order_id ? 1 : 0));
    const fenced = new Set<string>();
    // A turn past the statement's size is several statements, each atomic on its own; every
    // state still commits only with its history row.
    for (let i = 0; i < rows.length; i += plans.MAX_STATES_PER_STATEMENT) {
      for (const id of await writeChunk(rows.slice(i, i + plans.MAX_STATES_PER_STATEMENT))) fenced.add(id);
    }
    return fenced;
  }

  return {
    async commitTurn(collect) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const states = collect();
      if (states.length === 0) return { fenced: new Set<string>() };
      try {
        return { fenced: await write(states) };
      } catch (err) {
        // The engine has run ahead of the database: as on SQLite, stop, and let recovery
        // resume every order from its last committed state.
        options.logger.fatal({ err }, 'committing to PostgreSQL failed; exiting so that recovery resumes from the last commit');
        onFatal(err);
        throw err;
      }
    },
    async getView(orderId) {
      const [row] = await run<{ view: string }>(pool, plans.getView, [orderId]);
      return row ? (JSON.parse(row.view) as OrderView) : null;
    },
    async listViews(query) {
      const plan = plans.listViews({ user: query.user_id !== undefined, status: query.status !== undefined, before: query.before !== undefined });
      const params: Array<string | number> = [];
      if (query.user_id !== undefined) params.push(query.user_id);
      if (query.status !== undefined) params.push(query.status);
      if (query.before !== undefined) params.push(query.before);
      params.push(query.limit);
      return (await run<{ view: string }>(pool, plan, params)).map((r) => JSON.parse(r.view) as OrderView);
    },
    async listChanges(orderId, afterSeq, limit) {
      const rows = await run<{ order_id: string; seq: number; at: string; view: string }>(pool, plans.listChanges, [orderId, afterSeq, limit]);
      return rows.map((r) => ({ ...r, view: JSON.parse(r.view) as OrderView }));
    },
    async claimUnfinished(owner) {
      const rows = await run<StoredRow>(pool, plans.claimUnfinished, [owner]);
      return rows.sort((a, b) => (a.order_id < b.order_id ? -1 : 1)).map(toStored);
    },
    async claimParked(orderId, owner) {
      const [row] = await run<StoredRow>(pool, plans.claimParked, [owner, orderId]);
      return row ? toStored(row) : null;
    },
    async listMissingViews() {
      // Every state stored here has its view (the column is NOT NULL): nothing to upgrade.
      return [];
    },
    async saveViews(views) {
      for (const view of views) await run(pool, plans.saveView, [view.order_id, JSON.stringify(view)]);
    },
  };
}
