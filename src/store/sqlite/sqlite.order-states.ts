import type { PipelineStatus } from '../../domain/order.js';
import type { OrderQuery } from '../../orders/order.engine.js';
import type { OrderView } from '../../orders/order.view.js';
import type { OrderStateStore, OrderStateWrite, StoredOrder } from '../store.ports.js';
import type { GroupCommit } from './group-commit.js';
import type { Db } from './sqlite.database.js';

/** A stored order as SQLite returns it: the view still as JSON. */
type StoredRow = Omit<StoredOrder, 'view'> & { view: string };

const STORED = 'order_id, user_id, status, version AS seq, owner, epoch, view, snapshot';

/**
 * Whether the row's owner holds a live lease at `@now` (epoch ms): false for an owner with
 * no `instances` row. For statements on `order_snapshots`.
 */
export const LIVE_OWNER = `coalesce((SELECT i.lease_until > @now AND NOT i.stopping FROM instances i WHERE i.instance_id = order_snapshots.owner), 0)`;

const toStored = (row: StoredRow): StoredOrder => ({ ...row, view: JSON.parse(row.view) as OrderView });

/**
 * Order states in `order_snapshots`, one row per order: its latest persisted snapshot,
 * its view (JSON), and the fence (`owner`, `epoch`). A state joins the connection's group
 * commit, so it commits with the step effects of its turn.
 */
export function createSqliteOrderStates(db: Db, commits: GroupCommit): OrderStateStore {
  // Inserted, or updated only where the writer still holds the order's epoch.
  const upsert = db.prepare(
    `INSERT INTO order_snapshots (order_id, user_id, status, state, snapshot, view, version, owner, epoch, created_at, updated_at)
     VALUES (@order_id, @user_id, @status, @state, @snapshot, @view, @seq, @owner, @epoch, @created_at, @updated_at)
     ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, state = excluded.state, snapshot = excluded.snapshot,
       view = excluded.view, version = excluded.version, updated_at = excluded.updated_at
     WHERE order_snapshots.owner = excluded.owner AND order_snapshots.epoch = excluded.epoch`,
  );
  const recordChange = db.prepare('INSERT INTO order_changes (order_id, seq, at, view) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
  const changesAfter = db.prepare<[string, number, number], { order_id: string; seq: number; at: string; view: string }>(
    'SELECT order_id, seq, at, view FROM order_changes WHERE order_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  );
  const getView = db.prepare<[string], { view: string }>('SELECT view FROM order_snapshots WHERE order_id = ?');
  // The owner's own orders (a restart under the same id) and those whose owner holds no live
  // lease (see sqlite.cluster.ts). With no instances registered (one process) that is every
  // unfinished order. The write lock makes it atomic: two claimers never take one order.
  const claimUnfinished = db.prepare<[{ owner: string; now: number }], StoredRow>(
    `UPDATE order_snapshots SET owner = @owner, epoch = epoch + 1
     WHERE status = 'processing' AND (owner = @owner OR NOT ${LIVE_OWNER})
     RETURNING ${STORED}`,
  );
  const claimParked = db.prepare<[string, string], StoredRow>(
    `UPDATE order_snapshots SET owner = ?, epoch = epoch + 1 WHERE order_id = ? AND status = 'compensation_failed' RETURNING ${STORED}`,
  );
  const missingViews = db.prepare<[number], { order_id: string; status: PipelineStatus; state: string; snapshot: string; updated_at: string }>(
    'SELECT order_id, status, state, snapshot, updated_at FROM order_snapshots WHERE view IS NULL ORDER BY order_id LIMIT ?',
  );
  const setView = db.prepare('UPDATE order_snapshots SET view = ? WHERE order_id = ? AND view IS NULL');
  const firstChange = db.prepare(
    'INSERT INTO order_changes (order_id, seq, at, view) SELECT order_id, version, updated_at, view FROM order_snapshots WHERE order_id = ? ON CONFLICT DO NOTHING',
  );
  const listQueries = new Map<string, ReturnType<typeof db.prepare<unknown[], { view: string }>>>();

  function writeStates(states: readonly OrderStateWrite[]): Set<string> {
    const fenced = new Set<string>();
    for (const s of states) {
      const view = JSON.stringify(s.view);
      if (upsert.run({ ...s, view }).changes === 0) fenced.add(s.order_id);
      else recordChange.run(s.order_id, s.seq, s.updated_at, view);
    }
    return fenced;
  }

  return {
    commitTurn(collect) {
      let fenced: ReadonlySet<string> = new Set();
      return commits
        .atCommit(() => {
          const states = collect();
          if (states.length > 0) fenced = commits.write(() => writeStates(states));
        })
        .then(() => ({ fenced }));
    },
    async getView(orderId) {
      const row = getView.get(orderId);
      return row ? (JSON.parse(row.view) as OrderView) : null;
    },
    async listViews(query: OrderQuery) {
      const where: string[] = [];
      const params: Array<string | number> = [];
      if (query.user_id !== undefined) (where.push('user_id = ?'), params.push(query.user_id));
      if (query.status !== undefined) (where.push('status = ?'), params.push(query.status));
      if (query.before !== undefined) (where.push('order_id < ?'), params.push(query.before));
      const sql = `SELECT view FROM order_snapshots ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY order_id DESC LIMIT ?`;
      let statement = listQueries.get(sql);
      if (!statement) listQueries.set(sql, (statement = db.prepare(sql)));
      return statement.all(...params, query.limit).map((r) => JSON.parse(r.view) as OrderView);
    },
    async listChanges(orderId, afterSeq, limit) {
      return changesAfter.all(orderId, afterSeq, limit).map((r) => ({ ...r, view: JSON.parse(r.view) as OrderView }));
    },
    async claimUnfinished(owner) {
      const rows = await commits.writeNow(() => claimUnfinished.all({ owner, now: Date.now() }));
      return rows.sort((a, b) => (a.order_id < b.order_id ? -1 : 1)).map(toStored);
    },
    async claimParked(orderId, owner) {
      const row = commits.write(() => claimParked.get(owner, orderId));
      await commits.flush();
      return row ? toStored(row) : null;
    },
    async listMissingViews(limit) {
      return missingViews.all(limit);
    },
    async saveViews(views) {
      commits.write(() => {
        for (const view of views) {
          setView.run(JSON.stringify(view), view.order_id);
          firstChange.run(view.order_id);
        }
      });
      await commits.flush();
    },
  };
}
