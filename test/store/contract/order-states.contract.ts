import { describe, expect, it } from 'vitest';
import { orderId, stateWrite, withStore as withFreshStore, type HarnessFactory, type StoreHarness } from './harness.js';

/** What every `OrderStateStore` must do: the unit of work, the fence, views and claims. */
export function orderStatesContract(makeStore: HarnessFactory) {
  const withStore = (test: (h: StoreHarness) => Promise<void>) => withFreshStore(makeStore, test);

  describe('order states', () => {
    it(
      'commits a turn of states, which then read back as their views',
      withStore(async ({ stores: { states } }) => {
        const a = stateWrite(orderId(), { owner: 'o1', epoch: 1, seq: 1 });
        const b = stateWrite(orderId(), { owner: 'o1', epoch: 1, seq: 1 }, { state: 'reserving' });
        const result = await states.commitTurn(() => [a, b]);
        expect([...result.fenced]).toEqual([]);
        expect(await states.getView(a.order_id)).toEqual(a.view);
        expect(await states.getView(b.order_id)).toEqual(b.view);
        expect(await states.getView(orderId())).toBeNull();
      }),
    );

    it(
      'calls collect once, at commit time, and commits nothing when it returns nothing',
      withStore(async ({ stores: { states } }) => {
        const id = orderId();
        let calls = 0;
        let late = false;
        const committed = states.commitTurn(() => {
          calls++;
          return late ? [stateWrite(id, { owner: 'o1', epoch: 1, seq: 1 })] : [];
        });
        late = true; // decided after commitTurn was called, before the turn ends
        await committed;
        expect(calls).toBe(1);
        expect((await states.getView(id))?.order_id).toBe(id);
        await states.commitTurn(() => []);
      }),
    );

    it(
      'lets the owner holding the epoch update the state, and refuses a write from another owner or an older epoch',
      withStore(async ({ stores: { states } }) => {
        const id = orderId();
        await states.commitTurn(() => [stateWrite(id, { owner: 'o1', epoch: 1, seq: 1 })]);
        await states.commitTurn(() => [stateWrite(id, { owner: 'o1', epoch: 1, seq: 2 }, { state: 'reserving' })]);
        expect((await states.getView(id))?.state).toBe('reserving');

        const other = orderId();
        const { fenced } = await states.commitTurn(() => [
          stateWrite(id, { owner: 'o2', epoch: 1, seq: 3 }, { state: 'paying' }),
          stateWrite(id, { owner: 'o1', epoch: 0, seq: 3 }, { state: 'paying' }),
          stateWrite(other, { owner: 'o2', epoch: 1, seq: 1 }),
        ]);
        expect([...fenced]).toEqual([id]);
        expect((await states.getView(id))?.state).toBe('reserving');
        expect((await states.getView(other))?.order_id).toBe(other); // the rest of the unit commits
      }),
    );

    it(
      'takes over unfinished orders with a new epoch, after which the old owner is fenced off',
      withStore(async ({ stores: { states } }) => {
        const running = orderId();
        const done = orderId();
        await states.commitTurn(() => [
          stateWrite(running, { owner: 'old', epoch: 1, seq: 4 }, { state: 'paying' }),
          stateWrite(done, { owner: 'old', epoch: 1, seq: 9 }, { status: 'completed', state: 'completed' }),
        ]);
        const claimed = await states.claimUnfinished('new');
        expect(claimed.map((o) => o.order_id)).toContain(running);
        expect(claimed.map((o) => o.order_id)).not.toContain(done);
        const mine = claimed.find((o) => o.order_id === running)!;
        expect(mine).toMatchObject({ owner: 'new', epoch: 2, seq: 4, status: 'processing', user_id: 'alice' });
        expect(mine.view.state).toBe('paying');
        expect(JSON.parse(mine.snapshot)).toMatchObject({ context: { order_id: running } });

        const stale = await states.commitTurn(() => [stateWrite(running, { owner: 'old', epoch: 1, seq: 5 }, { state: 'fulfilling' })]);
        expect([...stale.fenced]).toEqual([running]);
        const fresh = await states.commitTurn(() => [stateWrite(running, { owner: 'new', epoch: 2, seq: 5 }, { state: 'fulfilling' })]);
        expect([...fresh.fenced]).toEqual([]);
        expect((await states.getView(running))?.state).toBe('fulfilling');
      }),
    );

    it(
      'claims a parked order for a retry, and nothing else',
      withStore(async ({ stores: { states } }) => {
        const parked = orderId();
        const running = orderId();
        await states.commitTurn(() => [
          stateWrite(parked, { owner: 'o1', epoch: 3, seq: 7 }, { status: 'compensation_failed', state: 'compensationFailed' }),
          stateWrite(running, { owner: 'o1', epoch: 1, seq: 2 }),
        ]);
        expect(await states.claimParked(running, 'o2')).toBeNull();
        expect(await states.claimParked(orderId(), 'o2')).toBeNull();
        expect(await states.claimParked(parked, 'o2')).toMatchObject({ order_id: parked, owner: 'o2', epoch: 4, seq: 7, status: 'compensation_failed' });
      }),
    );

    it(
      'lists views newest first, by user and status, before a cursor',
      withStore(async ({ stores: { states } }) => {
        const ids = Array.from({ length: 5 }, orderId);
        await states.commitTurn(() =>
          ids.map((id, i) =>
            stateWrite(id, { owner: 'o1', epoch: 1, seq: 1 }, { user_id: i % 2 ? 'bob' : 'carol', ...(i === 4 ? { status: 'completed', state: 'completed' } : {}) }),
          ),
        );
        const mine = (views: Array<{ order_id: string }>) => views.map((v) => v.order_id).filter((id) => ids.includes(id));
        expect(mine(await states.listViews({ limit: 100 }))).toEqual([...ids].reverse());
        expect(mine(await states.listViews({ user_id: 'carol', limit: 100 }))).toEqual([ids[4], ids[2], ids[0]]);
        expect(mine(await states.listViews({ user_id: 'carol', status: 'completed', limit: 100 }))).toEqual([ids[4]]);
        expect(mine(await states.listViews({ before: ids[3], limit: 2 }))).toEqual([ids[2], ids[1]]);
      }),
    );

    it(
      'keeps every committed change as history, in order, and none of the refused ones',
      withStore(async ({ stores: { states } }) => {
        const id = orderId();
        for (const [seq, state] of [[1, 'placing'], [2, 'reserving'], [3, 'paying']] as const) {
          await states.commitTurn(() => [stateWrite(id, { owner: 'o1', epoch: 1, seq }, { state })]);
        }
        await states.commitTurn(() => [stateWrite(id, { owner: 'o2', epoch: 1, seq: 4 }, { state: 'fulfilling' })]);
        const all = await states.listChanges(id, 0, 100);
        expect(all.map((c) => [c.seq, c.view.state])).toEqual([[1, 'placing'], [2, 'reserving'], [3, 'paying']]);
        expect(all.every((c) => c.order_id === id && c.at === c.view.updated_at)).toBe(true);
        expect((await states.listChanges(id, 1, 1)).map((c) => c.seq)).toEqual([2]);
        expect(await states.listChanges(orderId(), 0, 100)).toEqual([]);
      }),
    );
  });
}
