import type { OrderView } from '../../orders/order.view.js';
import type { ClaimedOrder, ClusterBus, ClusterStore, InboxEvent, StoredOrder } from '../store.ports.js';
import type { GroupCommit } from './group-commit.js';
import type { Db } from './sqlite.database.js';
import { LIVE_OWNER } from './sqlite.order-states.js';

/** A notification's payload stays under 8000 bytes, as on PostgreSQL (where NOTIFY requires it). */
const MAX_PAYLOAD = 7000;

const DAY_MS = 86_400_000;

type StoredRow = Omit<StoredOrder, 'view'> & { view: string };

/**
 * Leases, claims, the inbox and notifications for several processes (order loops) sharing
 * one SQLite file, with the semantics of postgres.cluster.ts (read its plans for the why).
 *
 * - Clock: `Date.now()` in epoch ms. Every process on one SQLite file runs on one machine,
 *   so no process compares its clock with another machine's.
 * - Atomicity: SQLite has one writer at a time. Every write here (a lease, a claim, an
 *   event) runs in a `BEGIN IMMEDIATE` transaction of its own (`GroupCommit.writeNow`),
 *   so its reads and writes see the latest commit and nobody writes in between: a claim
 *   needs no row locks, and a fenced effect (checked inside its own write transaction, see
 *   sqlite.fence.ts) can never interleave with a change of owner.
 * - Notifications: published on the `ClusterBus` (relayed by the primary process) after the
 *   rows they announce have committed. They only wake; every reader also polls.
 */
export function createSqliteCluster(db: Db, commits: GroupCommit, bus: ClusterBus): ClusterStore {
  const register = db.prepare<[{ id: string; now: number; until: number }]>(
    `INSERT INTO instances (instance_id, started_at, lease_until, stopping) VALUES (@id, @now, @until, 0)
     ON CONFLICT (instance_id) DO UPDATE SET started_at = excluded.started_at, lease_until = excluded.lease_until, stopping = 0`,
  );
  // A lease already past (a process frozen too long) is not revived.
  const renew = db.prepare<[{ id: string; now: number; until: number }]>(
    `UPDATE instances SET lease_until = @until WHERE instance_id = @id AND NOT stopping AND lease_until > @now`,
  );
  const handOver = db.prepare<[{ id: string; now: number }]>(
    `UPDATE instances SET stopping = 1, lease_until = @now WHERE instance_id = @id`,
  );
  const othersLive = db.prepare<[{ id: string; now: number }], { n: number }>(
    `SELECT count(*) AS n FROM instances WHERE instance_id <> @id AND lease_until > @now AND NOT stopping`,
  );
  // Only while the claimer's own lease holds; orders of owners without a live lease.
  const orphaned = db.prepare<[{ id: string; now: number; limit: number }], { order_id: string; prev_owner: string }>(
    `SELECT order_id, owner AS prev_owner FROM order_snapshots
     WHERE status = 'processing' AND owner <> @id
       AND EXISTS (SELECT 1 FROM instances WHERE instance_id = @id AND lease_until > @now AND NOT stopping)
       AND NOT ${LIVE_OWNER}
     ORDER BY order_id LIMIT @limit`,
  );
  const takeOver = db.prepare<[string, string], StoredRow>(
    `UPDATE order_snapshots SET owner = ?, epoch = epoch + 1 WHERE order_id = ?
     RETURNING order_id, user_id, status, version AS seq, owner, epoch, view, snapshot`,
  );
  const ownerOf = db.prepare<[string], { owner: string }>('SELECT owner FROM order_snapshots WHERE order_id = ?');
  const postEvent = db.prepare<[string, string, number], { id: number }>(
    'INSERT INTO order_inbox (order_id, kind, created_at) VALUES (?, ?, ?) RETURNING id',
  );
  const pendingEvents = db.prepare<[string], InboxEvent>(
    `SELECT b.id, b.order_id, b.kind FROM order_inbox b JOIN order_snapshots s ON s.order_id = b.order_id
     WHERE b.applied_at IS NULL AND s.owner = ? ORDER BY b.id LIMIT 100`,
  );
  const settleEvent = db.prepare(
    'UPDATE order_inbox SET applied_at = ?, result_status = ?, result_body = ? WHERE id = ? AND applied_at IS NULL',
  );
  const getEvent = db.prepare<[number], { applied: number; result_status: number | null; result_body: string | null }>(
    'SELECT applied_at IS NOT NULL AS applied, result_status, result_body FROM order_inbox WHERE id = ?',
  );
  const changeAt = db.prepare<[string, number], { order_id: string; seq: number; at: string; view: string }>(
    'SELECT order_id, seq, at, view FROM order_changes WHERE order_id = ? AND seq = ?',
  );
  const purgeEvents = db.prepare('DELETE FROM order_inbox WHERE applied_at < ?');
  const purgeInstances = db.prepare('DELETE FROM instances WHERE lease_until < ?');

  const claim = (id: string, limit: number): ClaimedOrder[] => {
    const claimed: ClaimedOrder[] = [];
    for (const { order_id, prev_owner } of orphaned.all({ id, now: Date.now(), limit })) {
      const row = takeOver.get(id, order_id)!;
      claimed.push({ ...row, view: JSON.parse(row.view) as OrderView, prev_owner });
    }
    return claimed;
  };

  return {
    async register(instanceId, leaseMs) {
      await commits.writeNow(() => {
        const now = Date.now();
        register.run({ id: instanceId, now, until: now + leaseMs });
      });
    },
    async renew(instanceId, leaseMs) {
      return commits.writeNow(() => {
        const now = Date.now();
        return renew.run({ id: instanceId, now, until: now + leaseMs }).changes === 1;
      });
    },
    async handOver(instanceId) {
      const stopped = await commits.writeNow(() => handOver.run({ id: instanceId, now: Date.now() }).changes === 1);
      if (stopped) bus.publish('handover', instanceId);
    },
    async claimOrphaned(instanceId, limit) {
      return commits.writeNow(() => claim(instanceId, limit));
    },
    async announce(instanceId) {
      bus.publish('handover', instanceId);
    },
    async othersLive(instanceId) {
      return othersLive.get({ id: instanceId, now: Date.now() })!.n;
    },
    async postEvent(orderId, kind) {
      const { id, owner } = await commits.writeNow(() => ({
        id: postEvent.get(orderId, kind, Date.now())!.id,
        owner: ownerOf.get(orderId)?.owner ?? '',
      }));
      bus.publish('inbox', owner);
      return id;
    },
    async pendingEvents(owner) {
      return pendingEvents.all(owner);
    },
    async settleEvent(id, status, body) {
      await commits.writeNow(() => settleEvent.run(Date.now(), status, body, id));
    },
    async getEvent(id) {
      const row = getEvent.get(id);
      return row ? { applied: row.applied === 1, status: row.result_status, body: row.result_body } : null;
    },
    async notifyChanges(instanceId, changes) {
      let payload = instanceId;
      for (const { order_id, seq } of changes) {
        const item = ` ${order_id}:${seq}`;
        if (payload.length + item.length > MAX_PAYLOAD) {
          bus.publish('changes', payload);
          payload = instanceId;
        }
        payload += item;
      }
      if (payload !== instanceId) bus.publish('changes', payload);
    },
    async changesAt(pairs) {
      const found = [];
      for (const { order_id, seq } of pairs) {
        const row = changeAt.get(order_id, seq);
        if (row) found.push({ ...row, view: JSON.parse(row.view) as OrderView });
      }
      return found.sort((a, b) => (a.order_id === b.order_id ? a.seq - b.seq : a.order_id < b.order_id ? -1 : 1));
    },
    async purge() {
      return commits.writeNow(() => {
        const before = Date.now() - DAY_MS;
        return { events: purgeEvents.run(before).changes, instances: purgeInstances.run(before).changes };
      });
    },
    async listen(onNotify) {
      const unsubscribe = bus.subscribe(onNotify);
      return {
        async close() {
          unsubscribe();
        },
      };
    },
  };
}
