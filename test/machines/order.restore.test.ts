/**
 * Snapshots persisted by an earlier release of the order machine (test/fixtures/snapshots, written
 * once with the fakes and committed) must restore under today's machine and run to the same end.
 * A store full of such snapshots is what a change to state ids or context would break.
 */
import { readFileSync } from 'node:fs';
import { createActor, waitFor, type Snapshot } from 'xstate';
import { describe, expect, it } from 'vitest';
import { fakeMachine, orderInput } from '../support/machine-fakes.js';

type Fixture = 'paying-running' | 'reserving-waiting' | 'refunding-running' | 'compensation-failed';

function fixture(name: Fixture): Snapshot<unknown> {
  return JSON.parse(readFileSync(new URL(`../fixtures/snapshots/${name}.json`, import.meta.url), 'utf8'));
}

/** Restores a fixture with every step faked to succeed, and runs it until it is done. */
async function restore(name: Fixture, retry = false) {
  const { machine, calls } = fakeMachine();
  // The input is ignored on restore; it is given only because the machine's type asks for it.
  const actor = createActor(machine, { snapshot: fixture(name), input: orderInput() });
  actor.start();
  if (retry) {
    expect(actor.getSnapshot().hasTag('parked')).toBe(true);
    actor.send({ type: 'RETRY' });
  }
  const snap = await waitFor(actor, (s) => s.status === 'done', { timeout: 5_000 });
  return { snap, calls, statuses: Object.fromEntries(Object.values(snap.context.stages).map((s) => [s.name, s.status])) };
}

describe('order machine, restoring persisted snapshots', () => {
  it('re-runs the payment that was in flight and completes', async () => {
    const { snap, calls, statuses } = await restore('paying-running');
    expect(snap.value).toBe('completed');
    expect(calls).toEqual(['capturePayment', 'shipOrder', 'sendNotifications']);
    expect(snap.context.order_id).toBe('ord_fixture_paying_running');
    expect(snap.context.payment).toMatchObject({ payment_id: 'ch_1', status: 'captured', amount_cents: 1000 });
    expect(snap.context.shipment).toMatchObject({ shipment_id: 'shp_1' });
    // Restoring restarts the invoked step but does not re-enter the state: still one attempt.
    expect(snap.context.stages.payment.attempts).toBe(1);
    expect(statuses).toEqual({
      placement: 'succeeded',
      reservation: 'succeeded',
      payment: 'succeeded',
      fulfillment: 'succeeded',
      notification: 'succeeded',
      refund: 'skipped',
      release: 'skipped',
      cancellation: 'skipped',
    });
    expect(snap.context.failure).toBeNull();
    expect(snap.context.errors).toEqual([]);
    expect(snap.context.finished_at).not.toBeNull();
  });

  it('resumes a retry wait in reserving, keeping the attempt count and the last error', async () => {
    expect((fixture('reserving-waiting') as any).context.retry_at).toEqual(expect.any(String));
    const { snap, calls, statuses } = await restore('reserving-waiting');
    expect(snap.value).toBe('completed');
    expect(calls).toEqual(['reserveStock', 'capturePayment', 'shipOrder', 'sendNotifications']);
    expect(snap.context.stages.reservation).toMatchObject({ status: 'succeeded', attempts: 2, error: { code: 'worker_crashed' } });
    expect(snap.context.reservation).toMatchObject({ status: 'reserved' });
    expect(snap.context.payment).toMatchObject({ status: 'captured' });
    expect(snap.context.retry_at).toBeNull();
    expect(statuses).toMatchObject({ refund: 'skipped', release: 'skipped', cancellation: 'skipped' });
  });

  it('re-runs the refund that was in flight, then releases and closes the order as failed', async () => {
    const { snap, calls, statuses } = await restore('refunding-running');
    expect(snap.value).toBe('failed');
    expect(calls).toEqual(['refundPayment', 'releaseStock', 'cancelOrder']);
    expect(snap.context.failure).toMatchObject({ stage: 'fulfillment', code: 'fulfillment_failed' });
    expect(snap.context.payment).toMatchObject({ status: 'refunded', refunded_cents: 1000 });
    expect(snap.context.reservation).toMatchObject({ status: 'released' });
    expect(statuses).toEqual({
      placement: 'succeeded',
      reservation: 'compensated',
      payment: 'compensated',
      fulfillment: 'failed',
      notification: 'skipped',
      refund: 'succeeded',
      release: 'succeeded',
      cancellation: 'succeeded',
    });
  });

  it('resumes a parked order on RETRY with fresh attempts for the failed refund', async () => {
    const { snap, calls, statuses } = await restore('compensation-failed', true);
    expect(snap.value).toBe('failed');
    expect(calls).toEqual(['refundPayment', 'releaseStock', 'cancelOrder']);
    expect(snap.context.stages.refund).toMatchObject({ status: 'succeeded', attempts: 1, error: { code: 'payment_unavailable' } });
    expect(snap.context.payment).toMatchObject({ status: 'refunded' });
    expect(snap.context.errors).toEqual([
      { stage: 'fulfillment', code: 'fulfillment_failed', message: expect.any(String) },
      { stage: 'refund', code: 'payment_unavailable', message: expect.any(String) },
    ]);
    expect(statuses).toMatchObject({ payment: 'compensated', reservation: 'compensated', refund: 'succeeded', release: 'succeeded' });
  });
});
