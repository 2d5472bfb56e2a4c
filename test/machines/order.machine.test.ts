import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { retryDelayMs } from '../../src/machines/order.machine.js';
import { pipelineStatus, stateName } from '../../src/machines/order.status.js';
import { fakeMachine, orderInput, runToSettled } from '../support/machine-fakes.js';

const stageStatuses = (actor: any) =>
  Object.fromEntries(Object.values(actor.getSnapshot().context.stages).map((s: any) => [s.name, s.status]));

describe('order machine, forward path', () => {
  it('runs placing, reserving, paying, fulfilling and notifying, then completes', async () => {
    const { machine, calls } = fakeMachine();
    const actor = await runToSettled(machine);
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('completed');
    expect(calls).toEqual(['placeOrder', 'reserveStock', 'capturePayment', 'shipOrder', 'sendNotifications']);
    expect(stageStatuses(actor)).toEqual({
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
    expect(snap.context.payment?.amount_cents).toBe(1000);
    expect(snap.context.finished_at).not.toBeNull();
  });

  it('retries a transient failure with backoff and records the attempts and last error', async () => {
    const { machine, calls } = fakeMachine({ capturePayment: ['payment_unavailable', 'payment_unavailable', 'ok'] });
    const actor = await runToSettled(machine);
    const payment = actor.getSnapshot().context.stages.payment;
    expect(actor.getSnapshot().value).toBe('completed');
    expect(calls.filter((c) => c === 'capturePayment')).toHaveLength(3);
    expect(payment.attempts).toBe(3);
    expect(payment.error?.code).toBe('payment_unavailable');
  });

  it('does not retry a terminal failure', async () => {
    const { machine, calls } = fakeMachine({ capturePayment: ['payment_declined'] });
    await runToSettled(machine);
    expect(calls.filter((c) => c === 'capturePayment')).toHaveLength(1);
  });

  it('completes a shipped order whose notifications fail, recording the error without undoing anything', async () => {
    const { machine, calls } = fakeMachine({ sendNotifications: ['notification_failed'] });
    const actor = await runToSettled(machine);
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('completed');
    expect(calls).not.toContain('refundPayment');
    expect(calls).not.toContain('releaseStock');
    expect(snap.context.stages.notification).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'notification_failed' } });
    expect(snap.context.errors).toEqual([{ stage: 'notification', code: 'notification_failed', message: expect.any(String) }]);
    expect(pipelineStatus(snap)).toBe('completed');
  });
});

describe('order machine, compensation', () => {
  it('fails an order with an unknown SKU at placement and only closes it', async () => {
    const { machine, calls } = fakeMachine({ placeOrder: ['unknown_sku'] });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(calls).toEqual(['placeOrder', 'cancelOrder']);
    expect(actor.getSnapshot().context.failure).toMatchObject({ stage: 'placement', code: 'unknown_sku' });
  });

  it('does not release stock that was never reserved when reservation fails for lack of stock', async () => {
    const { machine, calls } = fakeMachine({ reserveStock: ['insufficient_stock'] });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(calls).toEqual(['placeOrder', 'reserveStock', 'cancelOrder']);
    expect(stageStatuses(actor)).toMatchObject({ reservation: 'failed', release: 'skipped', refund: 'skipped', cancellation: 'succeeded' });
  });

  it('releases the reservation but refunds nothing when the card is declined', async () => {
    const { machine, calls } = fakeMachine({ capturePayment: ['payment_declined'] });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(calls).toEqual(['placeOrder', 'reserveStock', 'capturePayment', 'releaseStock', 'cancelOrder']);
    expect(stageStatuses(actor)).toMatchObject({ reservation: 'compensated', payment: 'failed', refund: 'skipped', release: 'succeeded' });
  });

  it('refunds (voids) and releases when the gateway stays unavailable, since a capture may have happened', async () => {
    const { machine, calls } = fakeMachine({ capturePayment: ['payment_unavailable'] });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(calls.slice(-3)).toEqual(['refundPayment', 'releaseStock', 'cancelOrder']);
    expect(actor.getSnapshot().context.failure).toMatchObject({ stage: 'payment', code: 'payment_unavailable' });
  });

  it('undoes in reverse order when the carrier refuses: refund, then release, then cancel', async () => {
    const { machine, calls } = fakeMachine({ shipOrder: ['fulfillment_failed'] });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(calls).toEqual(['placeOrder', 'reserveStock', 'capturePayment', 'shipOrder', 'refundPayment', 'releaseStock', 'cancelOrder']);
    expect(stageStatuses(actor)).toMatchObject({
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

  it('times out an unshipped order at its deadline and compensates it with pipeline_timeout', async () => {
    const { machine, calls } = fakeMachine({ capturePayment: ['hang'] }, { deadline: 'now' });
    const actor = await runToSettled(machine);
    expect(actor.getSnapshot().value).toBe('failed');
    expect(actor.getSnapshot().context.failure).toMatchObject({ stage: 'payment', code: 'pipeline_timeout' });
    expect(calls.slice(-3)).toEqual(['refundPayment', 'releaseStock', 'cancelOrder']);
  });

  it('parks the order in compensationFailed when an undo keeps failing, and an admin RETRY finishes it', async () => {
    const { machine, calls } = fakeMachine({ shipOrder: ['fulfillment_failed'], refundPayment: ['payment_unavailable', 'payment_unavailable', 'payment_unavailable', 'ok'] });
    const actor = await runToSettled(machine);
    let snap = actor.getSnapshot();
    expect(snap.value).toBe('compensationFailed');
    expect(snap.status).toBe('active');
    expect(pipelineStatus(snap)).toBe('compensation_failed');
    expect(snap.context.stages.refund).toMatchObject({ status: 'failed', attempts: 3 });
    expect(calls).not.toContain('releaseStock');

    const done = new Promise<void>((resolve) => actor.subscribe((s) => s.status === 'done' && resolve()));
    actor.send({ type: 'RETRY' });
    await done;
    snap = actor.getSnapshot();
    expect(snap.value).toBe('failed');
    expect(calls.slice(-3)).toEqual(['refundPayment', 'releaseStock', 'cancelOrder']);
    expect(snap.context.stages.refund.status).toBe('succeeded');
  });
});

describe('order machine, CANCEL', () => {
  for (const [state, step, expected] of [
    ['placing', 'placeOrder', ['placeOrder', 'cancelOrder']],
    ['reserving', 'reserveStock', ['placeOrder', 'reserveStock', 'releaseStock', 'cancelOrder']],
    ['paying', 'capturePayment', ['placeOrder', 'reserveStock', 'capturePayment', 'refundPayment', 'releaseStock', 'cancelOrder']],
  ] as const) {
    it(`is accepted while ${state} and compensates what may have happened before ending cancelled`, async () => {
      const { machine, calls } = fakeMachine({ [step]: ['hang'] });
      const actor = createActor(machine, { input: orderInput() });
      const done = new Promise<void>((resolve) => actor.subscribe((s) => s.status === 'done' && resolve()));
      actor.start();
      await new Promise((r) => setTimeout(r, 10));
      expect(stateName(actor.getSnapshot().value as any)).toBe(state);
      expect(actor.getSnapshot().can({ type: 'CANCEL' })).toBe(true);
      actor.send({ type: 'CANCEL' });
      await done;
      const snap = actor.getSnapshot();
      expect(snap.value).toBe('cancelled');
      expect(calls).toEqual(expected);
      expect(snap.context.cancel_requested).toBe(true);
      expect(snap.context.failure?.code).toBe('order_cancelled');
    });
  }

  for (const [state, script] of [
    ['fulfilling', { shipOrder: ['hang'] }],
    ['notifying', { sendNotifications: ['hang'] }],
  ] as const) {
    it(`is rejected once the order is ${state}`, async () => {
      const { machine } = fakeMachine(script as any);
      const actor = createActor(machine, { input: orderInput() });
      actor.start();
      await new Promise((r) => setTimeout(r, 10));
      expect(stateName(actor.getSnapshot().value as any)).toBe(state);
      expect(actor.getSnapshot().can({ type: 'CANCEL' })).toBe(false);
      actor.send({ type: 'CANCEL' });
      expect(stateName(actor.getSnapshot().value as any)).toBe(state);
      actor.stop();
    });
  }
});

describe('order machine, persistence', () => {
  it('restores a snapshot taken mid-payment and runs the interrupted step again to completion', async () => {
    const first = fakeMachine({ capturePayment: ['hang'] });
    const actor = createActor(first.machine, { input: orderInput() });
    actor.start();
    await new Promise((r) => setTimeout(r, 10));
    const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
    actor.stop();
    expect(persisted.value).toEqual({ cancellable: { paying: 'running' } });

    const second = fakeMachine();
    const restored = await runToSettled(second.machine, orderInput(), { snapshot: persisted });
    expect(restored.getSnapshot().value).toBe('completed');
    // Only the step that was in flight (and the ones after it) run after the restore.
    expect(second.calls).toEqual(['capturePayment', 'shipOrder', 'sendNotifications']);
    expect(restored.getSnapshot().context.stages.payment.attempts).toBe(1);
  });
});

describe('retry backoff', () => {
  it('grows exponentially, is capped, and keeps half of each delay fixed', () => {
    const policy = { max_attempts: 5, base_ms: 100, max_delay_ms: 1000 };
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(policy, n, 0))).toEqual([50, 100, 200, 400, 500]);
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(policy, n, 1))).toEqual([100, 200, 400, 800, 1000]);
  });
});
