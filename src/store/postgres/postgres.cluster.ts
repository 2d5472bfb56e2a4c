import pg from 'pg';
import type { Logger } from '../../logger.js';
import type { OrderView } from '../../orders/order.view.js';
import type { ClaimedOrder, ClusterStore, InboxEvent } from '../store.ports.js';
import { run, type Pool } from './postgres.database.js';
import { plans } from './postgres.plans.js';

/** A notification's payload must stay under 8000 bytes; leave room for the instance id. */
const MAX_PAYLOAD = 7000;

const CHANNELS = { ordersaga_inbox: 'inbox', ordersaga_changes: 'changes', ordersaga_handover: 'handover' } as const;

/**
 * Leases, claims, the inbox and notifications on PostgreSQL (see ClusterStore). Every
 * statement is in postgres.plans.ts. LISTEN holds a connection of its own, outside the
 * pool, reconnected after a loss; anything missed meanwhile is found by the pollers.
 */
export function createPostgresCluster(pool: Pool, options: { url: string; logger: Logger }): ClusterStore {
  return {
    async register(instanceId, leaseMs) {
      await run(pool, plans.registerInstance, [instanceId, leaseMs]);
    },
    async renew(instanceId, leaseMs) {
      return (await run(pool, plans.renewLease, [instanceId, leaseMs])).length === 1;
    },
    async handOver(instanceId) {
      await run(pool, plans.handOver, [instanceId]);
    },
    async claimOrphaned(instanceId, limit) {
      const rows = await run<Omit<ClaimedOrder, 'view'> & { view: string }>(pool, plans.claimOrphaned, [instanceId, limit]);
      return rows.sort((a, b) => (a.order_id < b.order_id ? -1 : 1)).map((r) => ({ ...r, view: JSON.parse(r.view) as OrderView }));
    },
    async announce(instanceId) {
      await run(pool, plans.announce, [instanceId]);
    },
    async othersLive(instanceId) {
      return (await run<{ n: number }>(pool, plans.othersLive, [instanceId]))[0]!.n;
    },
    async postEvent(orderId, kind) {
      return (await run<{ id: number }>(pool, plans.postEvent, [orderId, kind]))[0]!.id;
    },
    async pendingEvents(owner) {
      return run<InboxEvent>(pool, plans.pendingEvents, [owner]);
    },
    async settleEvent(id, status, body) {
      await run(pool, plans.settleEvent, [id, status, body]);
    },
    async getEvent(id) {
      const [row] = await run<{ applied: boolean; result_status: number | null; result_body: string | null }>(pool, plans.getEvent, [id]);
      return row ? { applied: row.applied, status: row.result_status, body: row.result_body } : null;
    },
    async notifyChanges(instanceId, changes) {
      let payload = instanceId;
      const sends: Promise<unknown>[] = [];
      for (const { order_id, seq } of changes) {
        const item = ` ${order_id}:${seq}`;
        if (payload.length + item.length > MAX_PAYLOAD) {
          sends.push(run(pool, plans.notifyChanges, [payload]));
          payload = instanceId;
        }
        payload += item;
      }
      if (payload !== instanceId) sends.push(run(pool, plans.notifyChanges, [payload]));
      await Promise.all(sends);
    },
    async changesAt(pairs) {
      if (pairs.length === 0) return [];
      const rows = await run<{ order_id: string; seq: number; view: string }>(pool, plans.changesAt, [pairs.map((p) => p.order_id), pairs.map((p) => p.seq)]);
      return rows.map((r) => ({ order_id: r.order_id, seq: r.seq, at: '', view: JSON.parse(r.view) as OrderView }));
    },
    async purge() {
      return (await run<{ events: number; instances: number }>(pool, plans.purgeCluster, []))[0]!;
    },
    async listen(onNotify) {
      let client: pg.Client | null = null;
      let closed = false;
      let retry: NodeJS.Timeout | undefined;
      const connect = async (): Promise<void> => {
        const c = new pg.Client({ connectionString: options.url, application_name: 'ordersaga-listen', keepAlive: true });
        let lost = false;
        const reconnect = (err?: Error) => {
          if (lost) return;
          lost = true;
          if (client === c) client = null;
          if (closed) return;
          options.logger.warn({ err }, 'the LISTEN connection was lost; reconnecting (polling covers the gap)');
          c.end().catch(() => undefined);
          retry = setTimeout(() => void connect().catch(() => undefined), 1000);
        };
        c.on('error', reconnect);
        // A connection the server closed without an error (a restart, a terminated backend).
        c.on('end', () => reconnect());
        c.on('notification', (n) => {
          const channel = CHANNELS[n.channel as keyof typeof CHANNELS];
          if (channel) onNotify(channel, n.payload ?? '');
        });
        try {
          await c.connect();
          await c.query(Object.keys(CHANNELS).map((ch) => `LISTEN ${ch}`).join('; '));
          client = c;
          if (closed) await c.end();
        } catch (err) {
          reconnect(err as Error);
          throw err;
        }
      };
      await connect().catch((err: unknown) => options.logger.warn({ err }, 'LISTEN failed; relying on polling until it reconnects'));
      return {
        async close() {
          closed = true;
          clearTimeout(retry);
          await client?.end().catch(() => undefined);
        },
      };
    },
  };
}
