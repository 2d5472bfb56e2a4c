import { describe, expect, it } from 'vitest';
import { OrderError } from '../../../src/domain/errors.js';
import { newId } from '../../../src/domain/ids.js';
import { runFenced, type Fence } from '../../../src/store/fence.js';
import type { ClaimedOrder, ClusterChannel, ClusterStore, Inventory, Stores } from '../../../src/store/store.ports.js';
import { orderId, stateWrite } from './harness.js';

/** One member of a cluster under test: its own connection(s) to the shared database, its worker pool. */
export interface ClusterNode {
  stores: Stores;
  cluster: ClusterStore;
  /** Reserve and release through the worker pool (which carries the step's fence), sell on the main connection. */
  inventory: Inventory;
}

/** Two members on one database (PostgreSQL: two pools; SQLite: two connections to one file, a bus between them). */
export interface ClusterHarness {
  a: ClusterNode;
  b: ClusterNode;
  /** Writes an instance's lease directly: live for `ms` from the store's now (negative: already over). */
  lease(instanceId: string, ms: number, stopping?: boolean): Promise<void>;
  /** Each order's owner and epoch as committed. */
  owners(orderIds: readonly string[]): Promise<Map<string, { owner: string; epoch: number }>>;
  /** The effect rows an order has, and the SKU's reserved stock. */
  effects(orderId: string, sku: string): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export type ClusterHarnessFactory = () => Promise<ClusterHarness>;

/** What every `ClusterStore` (and the claims and fences of its stores) must do for several members on one database. */
export function clusterContract(makeCluster: ClusterHarnessFactory) {
  const withCluster = (test: (h: ClusterHarness) => Promise<void>) => async () => {
    const h = await makeCluster();
    try {
      await test(h);
    } finally {
      await h.close();
    }
  };

  /** Resolves with the first notification on `channel` that `match`es; rejects after `ms`. */
  const listenFor = async (node: ClusterNode, channel: ClusterChannel, match: (payload: string) => boolean, ms = 3000) => {
    let done!: (payload: string) => void;
    let timer: NodeJS.Timeout | undefined;
    const got = new Promise<string>((resolve, reject) => {
      done = resolve;
      timer = setTimeout(() => reject(new Error(`no ${channel} notification in ${ms} ms`)), ms);
    });
    const listener = await node.cluster.listen((ch, payload) => ch === channel && match(payload) && done(payload));
    return { got: got.finally(() => (clearTimeout(timer), listener.close())) };
  };

  describe('leases', () => {
    it(
      'renews a live lease, never revives one already over, and counts only live others',
      withCluster(async ({ a, b, lease }) => {
        await a.cluster.register('lease-a', 60_000);
        await b.cluster.register('lease-b', 60_000);
        expect(await a.cluster.renew('lease-a', 60_000)).toBe(true);
        expect(await a.cluster.othersLive('lease-a')).toBe(1);
        await lease('late', -10);
        await lease('leaving', 60_000, true);
        expect(await a.cluster.othersLive('lease-a')).toBe(1);
        expect(await a.cluster.renew('late', 60_000)).toBe(false);
        expect(await a.cluster.renew('leaving', 60_000)).toBe(false);
        expect(await a.cluster.renew('never-registered', 60_000)).toBe(false);
        await b.cluster.register('late', 60_000); // registering again starts a new lease
        expect(await a.cluster.renew('late', 60_000)).toBe(true);
        expect(await a.cluster.othersLive('lease-a')).toBe(2);
      }),
    );

    it(
      'claims nothing for an instance whose own lease has run out, and claims once it has registered again',
      withCluster(async ({ a, lease }) => {
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'gone-owner', epoch: 1, seq: 1 })]);
        await lease('late', -10);
        expect(await a.cluster.claimOrphaned('late', 10)).toEqual([]);
        expect(await a.cluster.claimOrphaned('never-registered', 10)).toEqual([]);
        await a.cluster.register('late', 60_000);
        expect((await a.cluster.claimOrphaned('late', 1000)).map((o) => o.order_id)).toEqual([id]);
      }),
    );

    it(
      "makes a handed-over instance's orders claimable at once, and tells the others",
      withCluster(async ({ a, b }) => {
        await a.cluster.register('handing', 60_000);
        await b.cluster.register('taking', 60_000);
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'handing', epoch: 2, seq: 1 })]);
        expect(await b.cluster.claimOrphaned('taking', 1000)).toEqual([]);
        const told = await listenFor(b, 'handover', (p) => p === 'handing');
        await a.cluster.handOver('handing');
        expect(await told.got).toBe('handing');
        expect(await b.cluster.othersLive('taking')).toBe(0);
        const taken = await b.cluster.claimOrphaned('taking', 1000);
        expect(taken).toHaveLength(1);
        expect(taken[0]).toMatchObject({ order_id: id, owner: 'taking', epoch: 3, prev_owner: 'handing', seq: 1, status: 'processing' });
        expect(taken[0]!.view.order_id).toBe(id);
        expect(JSON.parse(taken[0]!.snapshot)).toMatchObject({ context: { order_id: id } });
        expect(await a.cluster.renew('handing', 60_000)).toBe(false);
      }),
    );

    it(
      'wakes the others when a member announces itself',
      withCluster(async ({ a, b }) => {
        const told = await listenFor(b, 'handover', (p) => p === 'newcomer');
        await a.cluster.announce('newcomer');
        expect(await told.got).toBe('newcomer');
      }),
    );
  });

  describe('claims', () => {
    it(
      'never lets two reapers claim one order, and takes only orders of owners without a live lease',
      withCluster(async ({ a, b, lease, owners }) => {
        await a.cluster.register('reaper-a', 60_000);
        await b.cluster.register('reaper-b', 60_000);
        await lease('alive', 60_000);
        await lease('expired', -1000);
        await lease('leaving', 60_000, true);
        const byOwner = { alive: 50, expired: 100, leaving: 100, vanished: 100, 'reaper-a': 10 };
        const ids: Record<string, string[]> = {};
        for (const [owner, n] of Object.entries(byOwner)) {
          ids[owner] = Array.from({ length: n }, orderId);
          await a.stores.states.commitTurn(() => ids[owner]!.map((id) => stateWrite(id, { owner, epoch: 4, seq: 1 })));
        }
        const done = orderId(); // finished orders are never claimed
        await a.stores.states.commitTurn(() => [stateWrite(done, { owner: 'expired', epoch: 4, seq: 9 }, { status: 'completed', state: 'completed' })]);
        const claimAll = async (node: ClusterNode, me: string) => {
          const got: ClaimedOrder[] = [];
          for (;;) {
            const batch = await node.cluster.claimOrphaned(me, 7);
            expect(batch.length).toBeLessThanOrEqual(7);
            got.push(...batch.map((o) => ({ ...o, owner: me })));
            if (batch.length < 7) return got;
          }
        };
        const [byA, byB] = await Promise.all([claimAll(a, 'reaper-a'), claimAll(b, 'reaper-b')]);
        const all = [...byA, ...byB];
        expect(new Set(all.map((o) => o.order_id)).size).toBe(all.length); // nobody took an order twice
        const orphans = [...ids.expired!, ...ids.leaving!, ...ids.vanished!];
        expect(all.map((o) => o.order_id).sort()).toEqual([...orphans].sort());
        for (const o of all) {
          expect(o.epoch).toBe(5);
          expect(ids[o.prev_owner]).toContain(o.order_id);
        }
        const committed = await owners([...orphans, ...ids.alive!, ...ids['reaper-a']!, done]);
        for (const o of all) expect(committed.get(o.order_id)).toEqual({ owner: o.owner, epoch: 5 });
        for (const id of [...ids.alive!, ...ids['reaper-a']!, done]) expect(committed.get(id)?.epoch).toBe(4);
      }),
    );

    it(
      'never hands one order at one epoch to two concurrent claimUnfinished calls, and leaves it with the last one',
      withCluster(async ({ a, b, owners }) => {
        const ids = Array.from({ length: 200 }, orderId);
        await a.stores.states.commitTurn(() => ids.map((id) => stateWrite(id, { owner: 'dead', epoch: 1, seq: 1 })));
        const [byA, byB] = await Promise.all([a.stores.states.claimUnfinished('a'), b.stores.states.claimUnfinished('b')]);
        const committed = await owners(ids);
        for (const id of ids) {
          const claims = [...byA.map((o) => ({ ...o, by: 'a' })), ...byB.map((o) => ({ ...o, by: 'b' }))].filter((o) => o.order_id === id);
          expect(claims.length).toBeGreaterThanOrEqual(1);
          expect(new Set(claims.map((c) => c.epoch)).size).toBe(claims.length);
          const last = claims.reduce((x, y) => (y.epoch > x.epoch ? y : x));
          expect(committed.get(id)).toEqual({ owner: last.by, epoch: last.epoch });
        }
      }),
    );

    it(
      "leaves a live owner's orders to it in claimUnfinished, and takes its own and the dead owners'",
      withCluster(async ({ a, b, lease }) => {
        await a.cluster.register('restarting', 60_000);
        await lease('alive', 60_000);
        await lease('expired', -1000);
        const mine = orderId();
        const alive = orderId();
        const expired = orderId();
        const vanished = orderId();
        await a.stores.states.commitTurn(() => [
          stateWrite(mine, { owner: 'restarting', epoch: 3, seq: 1 }),
          stateWrite(alive, { owner: 'alive', epoch: 3, seq: 1 }),
          stateWrite(expired, { owner: 'expired', epoch: 3, seq: 1 }),
          stateWrite(vanished, { owner: 'vanished', epoch: 3, seq: 1 }),
        ]);
        const claimed = await b.stores.states.claimUnfinished('restarting');
        expect(claimed.map((o) => [o.order_id, o.owner, o.epoch])).toEqual(
          [mine, expired, vanished].sort().map((id) => [id, 'restarting', 4]),
        );
        // Once its lease is over, the order is anyone's.
        await lease('alive', -1);
        expect((await a.stores.states.claimUnfinished('other')).map((o) => o.order_id)).toContain(alive);
      }),
    );
  });

  describe('the inbox', () => {
    it(
      "stores an event for the order's owner, wakes it, and keeps the first answer",
      withCluster(async ({ a, b }) => {
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'owner-b', epoch: 1, seq: 1 })]);
        const woken = await listenFor(b, 'inbox', (p) => p === 'owner-b');
        const eventId = await a.cluster.postEvent(id, 'cancel');
        expect(await woken.got).toBe('owner-b');
        expect(await a.cluster.getEvent(eventId)).toEqual({ applied: false, status: null, body: null });
        expect(await b.cluster.pendingEvents('owner-b')).toEqual([{ id: eventId, order_id: id, kind: 'cancel' }]);
        expect(await b.cluster.pendingEvents('someone-else')).toEqual([]);
        const second = await a.cluster.postEvent(id, 'cancel');
        expect(second).toBeGreaterThan(eventId);
        expect((await b.cluster.pendingEvents('owner-b')).map((e) => e.id)).toEqual([eventId, second]);

        await b.cluster.settleEvent(eventId, 202, '{"status":"cancelling"}');
        await b.cluster.settleEvent(eventId, 409, 'too late'); // answered once
        expect(await a.cluster.getEvent(eventId)).toEqual({ applied: true, status: 202, body: '{"status":"cancelling"}' });
        expect((await b.cluster.pendingEvents('owner-b')).map((e) => e.id)).toEqual([second]);
        expect(await a.cluster.getEvent(second + 1000)).toBeNull();
      }),
    );

    it(
      "follows the order to its new owner when it is taken over before the event is applied",
      withCluster(async ({ a, b }) => {
        await b.cluster.register('heir', 60_000);
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'dead-owner', epoch: 1, seq: 1 })]);
        const eventId = await a.cluster.postEvent(id, 'cancel');
        expect(await b.cluster.pendingEvents('heir')).toEqual([]);
        expect((await b.cluster.claimOrphaned('heir', 10)).map((o) => o.order_id)).toEqual([id]);
        expect(await b.cluster.pendingEvents('heir')).toEqual([{ id: eventId, order_id: id, kind: 'cancel' }]);
      }),
    );

    it(
      'forgets nothing recent when purging',
      withCluster(async ({ a, lease }) => {
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'o', epoch: 1, seq: 1 })]);
        const eventId = await a.cluster.postEvent(id, 'cancel');
        await a.cluster.settleEvent(eventId, 202, '{}');
        await lease('recently-gone', -1000);
        expect(await a.cluster.purge()).toEqual({ events: 0, instances: 0 });
        expect((await a.cluster.getEvent(eventId))?.applied).toBe(true);
      }),
    );
  });

  describe('change notifications', () => {
    it(
      'tells the other members which orders changed, in payloads under 8000 bytes, and serves those changes',
      withCluster(async ({ a, b }) => {
        const ids = Array.from({ length: 300 }, orderId);
        await a.stores.states.commitTurn(() => ids.map((id) => stateWrite(id, { owner: 'a', epoch: 1, seq: 1 })));
        await a.stores.states.commitTurn(() => [stateWrite(ids[0]!, { owner: 'a', epoch: 1, seq: 2 }, { state: 'reserving' })]);
        const payloads: string[] = [];
        const listener = await b.cluster.listen((channel, payload) => channel === 'changes' && payloads.push(payload));
        try {
          const changes = [...ids.map((order_id) => ({ order_id, seq: 1 })), { order_id: ids[0]!, seq: 2 }];
          await a.cluster.notifyChanges('member-a', changes);
          const deadline = Date.now() + 3000;
          const told = () => payloads.flatMap((p) => p.split(' ').slice(1));
          while (told().length < changes.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          expect(payloads.length).toBeGreaterThan(1); // 301 pairs do not fit in one
          for (const p of payloads) {
            expect(p.split(' ')[0]).toBe('member-a');
            expect(Buffer.byteLength(p)).toBeLessThan(8000);
          }
          expect(told().sort()).toEqual(changes.map((c) => `${c.order_id}:${c.seq}`).sort());
        } finally {
          await listener.close();
        }
        const at = await b.cluster.changesAt([{ order_id: ids[0]!, seq: 2 }, { order_id: ids[1]!, seq: 1 }, { order_id: ids[0]!, seq: 1 }, { order_id: ids[2]!, seq: 7 }]);
        expect(at.map((c) => [c.order_id, c.seq, c.view.state])).toEqual([[ids[0], 1, 'placing'], [ids[0], 2, 'reserving'], [ids[1], 1, 'placing']]);
        expect(await b.cluster.changesAt([])).toEqual([]);
      }),
    );

    it(
      'stops delivering once the listener is closed',
      withCluster(async ({ a, b }) => {
        const seen: string[] = [];
        const listener = await b.cluster.listen((_channel, payload) => seen.push(payload));
        await listener.close();
        const control = await listenFor(b, 'handover', (p) => p === 'after-close');
        await a.cluster.announce('after-close');
        await control.got;
        expect(seen).toEqual([]);
      }),
    );
  });

  describe('effects fenced by (owner, epoch) across members', () => {
    const SKU = 'FENCE-SKU';
    const shipping = { name: 'n', line1: 'l', city: 'c', postal_code: 'p', country: 'DE' };
    const request = { items: [{ sku: SKU, quantity: 1 }], payment: { token: 'tok_visa' }, shipping };
    const fence = (owner: string, epoch: number) => {
      const refused: string[] = [];
      const f: Fence = { owner, epoch, refused: (id) => refused.push(id) };
      return { f, refused };
    };
    const effects = (node: ClusterNode, id: string) => ({
      place: () => node.stores.orders.place({ id, user_id: 'u', items: [{ sku: SKU, quantity: 1, unit_price_cents: 100 }], total_cents: 100, currency: 'USD', created_at: new Date().toISOString() }, shipping),
      close: () => node.stores.orders.close(id, 'cancelled', { user_id: 'u', request, created_at: new Date().toISOString() }),
      charge: () => node.stores.payments.recordCharge({ payment_id: newId('ch'), order_id: id, idempotency_key: `${id}:capture`, status: 'captured', amount_cents: 100, refunded_cents: 0, decline_code: null }),
      refund: () => node.stores.payments.refundOrder(id, `${id}:refund`),
      ship: () => node.stores.shipments.insert({ shipment_id: newId('sh'), order_id: id, idempotency_key: `${id}:ship`, carrier: 'c', tracking_number: 't', country: 'DE' }),
      notify: () => node.stores.notifications.insert({ notification_id: newId('n'), order_id: id, kind: 'order_confirmation', recipient: 'u', created_at: new Date().toISOString(), idempotency_key: `${id}:notify`, payload: {} }),
      sell: () => node.inventory.sell(id),
      reserve: () => node.inventory.reserve(id, request.items),
      release: () => node.inventory.release(id),
    });
    /** The effect as a step runs it (fenced), its writes committed before the next one starts. */
    const fenced = async (node: ClusterNode, f: Fence, effect: () => Promise<unknown>) => {
      try {
        return await runFenced(f, effect).then(
          () => null,
          (e: unknown) => e,
        );
      } finally {
        await node.stores.flush();
      }
    };

    it(
      "refuses every effect of a stale owner (the worker's reserve and release too) and writes nothing, then lets the owner holding the epoch write",
      withCluster(async ({ a, b, effects: rows }) => {
        await a.stores.catalog.upsertProduct({ sku: SKU, name: 'f', price_cents: 100, available: 10 });
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'holder', epoch: 7, seq: 1 })]);
        const before = await rows(id, SKU);
        for (const stale of [fence('holder', 6), fence('thief', 7)]) {
          for (const [name, effect] of Object.entries(effects(b, id))) {
            const err = await fenced(b, stale.f, effect);
            expect(err, name).toBeInstanceOf(OrderError);
            expect((err as OrderError).message, name).toMatch(/^stale_epoch/);
          }
          expect(stale.refused).toEqual(Array(9).fill(id));
        }
        expect(await rows(id, SKU)).toEqual(before);

        const holder = fence('holder', 7);
        const run = effects(a, id);
        for (const name of ['reserve', 'place', 'charge', 'ship', 'sell', 'notify'] as const) expect(await fenced(a, holder.f, run[name]), name).toBeNull();
        expect(holder.refused).toEqual([]);
        expect(await rows(id, SKU)).toMatchObject({ orders: 1, charges: 1, shipments: 1, notifications: 1, reservations: 1, reserved: 0 });
      }),
    );

    it(
      'allows effects at epoch 1 for an order with no state yet, and refuses any later epoch',
      withCluster(async ({ a, b, effects: rows }) => {
        await a.stores.catalog.upsertProduct({ sku: SKU, name: 'f', price_cents: 100, available: 10 });
        const fresh = orderId();
        const later = fence('someone', 2);
        expect(await fenced(b, later.f, effects(b, fresh).charge)).toBeInstanceOf(OrderError);
        expect(await fenced(b, later.f, effects(b, fresh).reserve)).toBeInstanceOf(OrderError);
        expect(later.refused).toEqual([fresh, fresh]);
        const first = fence('someone', 1);
        expect(await fenced(b, first.f, effects(b, fresh).charge)).toBeNull();
        expect(await fenced(b, first.f, effects(b, fresh).reserve)).toBeNull();
        expect(await rows(fresh, SKU)).toMatchObject({ charges: 1, reservations: 1, reserved: 1 });
      }),
    );

    it(
      'refuses the old owner once the order is taken over, and lets the new one write',
      withCluster(async ({ a, b, effects: rows }) => {
        await a.cluster.register('old', 60_000);
        await b.cluster.register('new', 60_000);
        await a.stores.catalog.upsertProduct({ sku: SKU, name: 'f', price_cents: 100, available: 10 });
        const id = orderId();
        await a.stores.states.commitTurn(() => [stateWrite(id, { owner: 'old', epoch: 1, seq: 1 })]);
        const old = fence('old', 1);
        expect(await fenced(a, old.f, effects(a, id).reserve)).toBeNull();
        await a.cluster.handOver('old');
        const [taken] = await b.cluster.claimOrphaned('new', 10);
        expect(taken).toMatchObject({ order_id: id, owner: 'new', epoch: 2 });
        for (const name of ['charge', 'ship', 'release'] as const) {
          expect((await fenced(a, old.f, effects(a, id)[name])) as OrderError, name).toBeInstanceOf(OrderError);
        }
        expect(old.refused).toEqual([id, id, id]);
        expect(await rows(id, SKU)).toMatchObject({ charges: 0, shipments: 0, reservations: 1, reserved: 1 });
        const heir = fence('new', 2);
        for (const name of ['charge', 'release'] as const) expect(await fenced(b, heir.f, effects(b, id)[name]), name).toBeNull();
        expect(await rows(id, SKU)).toMatchObject({ charges: 1, reservations: 1, reserved: 0 });
      }),
    );
  });
}
