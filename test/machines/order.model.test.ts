/**
 * Model-based tests of the order saga (issue #4), generated with `xstate/graph`.
 *
 * The machine itself is the model: a TestModel explores it with pure transitions, and every
 * shortest path (transition mode, so every edge is taken, not just every state reached) becomes
 * one test. Each path is then completed by the shortest continuation to a final state and played
 * against a real actor of the machine whose steps are never-settling fakes, so only the path's
 * events drive it. After every step the actor must agree with the model and with the invariants
 * of the saga; at the end the compensation must have undone exactly what may have had an effect,
 * newest first. The last test fails unless the actors, between them, entered every state and took
 * every transition the definition has.
 */
import { createActor, fromPromise, type AnyEventObject, type SnapshotFrom, type StateValue } from 'xstate';
import { joinPaths, type StatePath } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import type { StepErrorCode } from '../../src/domain/errors.js';
import {
  STAGE_NAMES,
  type Notification,
  type Order,
  type Payment,
  type Reservation,
  type Shipment,
  type StageName,
} from '../../src/domain/order.js';
import { STAGE_OF_STATE, orderMachine, type OrderEvent } from '../../src/machines/order.machine.js';
import {
  CoverageRecorder,
  allTransitions,
  doneActor,
  errorActor,
  invokingTestModel,
  type EventPayloads,
} from '../support/graph-coverage.js';
import { orderInput } from '../support/machine-fakes.js';

type OrderSnapshot = SnapshotFrom<typeof orderMachine>;
type OrderPath = StatePath<OrderSnapshot, OrderEvent>;

// Two attempts per stage: enough for a retry and for running out of them, small enough for a small graph.
const MAX_ATTEMPTS = 2;
const input = orderInput({ order_id: 'ord_model', retry: { max_attempts: MAX_ATTEMPTS, base_ms: 1, max_delay_ms: 5 } });

// ---------------------------------------------------------------------------
// What the steps return and throw
// ---------------------------------------------------------------------------

const ORDER: Order = {
  id: input.order_id,
  user_id: input.user_id,
  items: input.request.items.map((item) => ({ ...item, unit_price_cents: 500 })),
  total_cents: 1000,
  currency: 'USD',
  created_at: input.created_at,
};
const RESERVATION: Reservation = { order_id: input.order_id, status: 'reserved', items: input.request.items };
const PAYMENT: Payment = { payment_id: 'ch_model', order_id: input.order_id, status: 'captured', amount_cents: 1000, refunded_cents: 0 };
const SHIPMENT: Shipment = { shipment_id: 'shp_model', order_id: input.order_id, carrier: 'fake', tracking_number: 'T1', country: 'DE' };
const NOTIFICATIONS: Notification[] = [
  { notification_id: 'ntf_model', order_id: input.order_id, kind: 'order_confirmation', recipient: input.user_id, created_at: input.created_at },
];

const stepError = (actorId: string, code: StepErrorCode) => errorActor(actorId, { code, message: `${actorId} failed with ${code}` });

/**
 * Every event the model may send, with payloads. Each variant is its own edge, so forward steps
 * offer a transient code (retried, then exhausted) and one that is final at once; the codes that
 * prove a step had no effect are among them, so compensation is explored with and without undo.
 */
const payloads: EventPayloads = {
  'xstate.done.actor.awaitDeadline': [doneActor('awaitDeadline', undefined)],
  'xstate.done.actor.awaitRetry': [doneActor('awaitRetry', undefined)],
  'xstate.done.actor.placeOrder': [doneActor('placeOrder', ORDER)],
  'xstate.error.actor.placeOrder': [stepError('placeOrder', 'storage_busy'), stepError('placeOrder', 'unknown_sku')],
  'xstate.done.actor.reserveStock': [doneActor('reserveStock', RESERVATION)],
  'xstate.error.actor.reserveStock': [stepError('reserveStock', 'worker_crashed'), stepError('reserveStock', 'insufficient_stock')],
  'xstate.done.actor.capturePayment': [doneActor('capturePayment', PAYMENT)],
  'xstate.error.actor.capturePayment': [
    stepError('capturePayment', 'payment_unavailable'),
    stepError('capturePayment', 'payment_declined'),
  ],
  'xstate.done.actor.shipOrder': [doneActor('shipOrder', SHIPMENT)],
  'xstate.error.actor.shipOrder': [stepError('shipOrder', 'carrier_unavailable'), stepError('shipOrder', 'fulfillment_failed')],
  'xstate.done.actor.sendNotifications': [doneActor('sendNotifications', NOTIFICATIONS)],
  'xstate.error.actor.sendNotifications': [stepError('sendNotifications', 'notification_failed')],
  'xstate.done.actor.refundPayment': [doneActor('refundPayment', { ...PAYMENT, status: 'refunded', refunded_cents: 1000 })],
  'xstate.error.actor.refundPayment': [stepError('refundPayment', 'payment_unavailable')],
  'xstate.done.actor.releaseStock': [doneActor('releaseStock', { ...RESERVATION, status: 'released' })],
  'xstate.error.actor.releaseStock': [stepError('releaseStock', 'storage_busy')],
  'xstate.done.actor.cancelOrder': [doneActor('cancelOrder', undefined)],
  'xstate.error.actor.cancelOrder': [stepError('cancelOrder', 'storage_busy')],
};

/**
 * State identity: the value plus what the guards read — the cancel flag, each stage's status,
 * the attempts of the stage that is running (canRetry, canRetryCompensation) and the error code
 * of a failed stage (needsRefund / needsRelease look for proof of no effect). Timestamps,
 * outputs and the attempts of finished stages are left out: no guard reads them.
 */
function project(snapshot: OrderSnapshot) {
  const { context } = snapshot;
  return {
    value: snapshot.value,
    cancel_requested: context.cancel_requested,
    stages: STAGE_NAMES.map((name) => {
      const record = context.stages[name];
      return [
        record.status,
        record.status === 'running' ? record.attempts : null,
        record.status === 'failed' ? (record.error?.code ?? null) : null,
      ];
    }),
  };
}

const model = invokingTestModel(orderMachine, { input, payloads, project });

// ---------------------------------------------------------------------------
// Paths: shortest paths to every vertex, each completed to a final state
// ---------------------------------------------------------------------------

const isFinal = (snapshot: OrderSnapshot) => snapshot.status === 'done';

/** The path, followed by the shortest way from its last state to a final one (mostly successes). */
function completed(path: OrderPath): OrderPath {
  if (isFinal(path.state)) return path;
  const tails = model.getShortestPaths({ fromState: path.state, toState: isFinal, allowDuplicatePaths: true });
  if (!tails.length) throw new Error(`model: no final state is reachable from ${JSON.stringify(path.state.value)}`);
  const tail = tails.reduce((best, candidate) => (candidate.weight < best.weight ? candidate : best));
  return joinPaths(path, tail);
}

const paths = model.getShortestPaths().map(completed);

// ---------------------------------------------------------------------------
// Describing a path in words
// ---------------------------------------------------------------------------

const STEP_WORDS: Record<string, [done: string, failing: string]> = {
  placeOrder: ['the order is placed', 'placing the order fails'],
  reserveStock: ['stock is reserved', 'reserving stock fails'],
  capturePayment: ['the payment is captured', 'capturing the payment fails'],
  shipOrder: ['the order ships', 'shipping fails'],
  sendNotifications: ['the notifications are sent', 'sending the notifications fails'],
  refundPayment: ['the payment is refunded', 'the refund fails'],
  releaseStock: ['the stock is released', 'releasing the stock fails'],
  cancelOrder: ['the order is closed', 'closing the order fails'],
  awaitRetry: ['the retry wait ends', ''],
  awaitDeadline: ['the deadline passes', ''],
};

const STATE_WORDS: Record<string, string> = {
  placing: 'placing the order',
  reserving: 'reserving stock',
  paying: 'capturing the payment',
};

/** The atomic state's path, e.g. ['cancellable', 'paying', 'waiting']. */
function statePath(value: StateValue): string[] {
  const out: string[] = [];
  let node: StateValue = value;
  while (typeof node !== 'string') {
    const [key, child] = Object.entries(node)[0]!;
    out.push(key);
    node = child as StateValue;
  }
  out.push(node);
  return out;
}

function while_(value: StateValue): string {
  const [, stage, sub] = statePath(value);
  const doing = STATE_WORDS[stage ?? ''] ?? stage ?? '';
  return sub === 'waiting' ? `waiting to retry ${doing}` : doing;
}

function phrase(event: AnyEventObject, from: StateValue): string {
  if (event.type === 'CANCEL') return `the customer cancels while ${while_(from)}`;
  if (event.type === 'RETRY') return 'an admin retries the compensation';
  const match = /^xstate\.(done|error)\.actor\.(.+)$/.exec(event.type);
  const words = match && STEP_WORDS[match[2]!];
  if (!match || !words) return event.type;
  if (match[2] === 'awaitDeadline') return `the deadline passes while ${while_(from)}`;
  return match[1] === 'done' ? words[0] : `${words[1]} with ${(event.error as { code: string }).code}`;
}

const OUTCOME: Record<string, string> = {
  completed: 'completes the order',
  failed: 'fails the order',
  cancelled: 'cancels the order',
};

function describePath(path: OrderPath): string {
  const phrases = path.steps.slice(1).map((step, i) => phrase(step.event, path.steps[i]!.state.value));
  const last = phrases.pop();
  const events = phrases.length ? `${phrases.join(', ')} and ${last}` : (last ?? 'nothing happens');
  return `${OUTCOME[String(path.state.value)] ?? `ends in ${JSON.stringify(path.state.value)}`} when ${events}`;
}

// ---------------------------------------------------------------------------
// Running a path against a real actor
// ---------------------------------------------------------------------------

interface Call {
  src: string;
  input: any;
}
interface Sent {
  from: StateValue;
  event: AnyEventObject;
  to: StateValue;
  /** How many steps had been invoked before this event. */
  callsBefore: number;
}

/** Steps that never settle: only the events of the path move the actor. They record how they were invoked. */
function neverSettling(calls: Call[]) {
  const fake = (src: string) =>
    fromPromise<any, any>(({ input }) => {
      calls.push({ src, input });
      return new Promise<never>(() => {});
    });
  return {
    placeOrder: fake('placeOrder'),
    reserveStock: fake('reserveStock'),
    capturePayment: fake('capturePayment'),
    shipOrder: fake('shipOrder'),
    sendNotifications: fake('sendNotifications'),
    refundPayment: fake('refundPayment'),
    releaseStock: fake('releaseStock'),
    cancelOrder: fake('cancelOrder'),
    awaitRetry: fake('awaitRetry'),
    awaitDeadline: fake('awaitDeadline'),
  };
}

const coverage = new CoverageRecorder();
/** (state value, event) pairs the actors were sent, to compare with those the model offers. */
const exercisedPairs = new Set<string>();
const pairKey = (from: StateValue, event: AnyEventObject) => `${JSON.stringify(from)} ${JSON.stringify(event)}`;

const EVENT_TYPES = ['xstate.init', ...new Set(allTransitions(orderMachine).map((t) => t.eventType).filter(Boolean))];

async function runPath(path: OrderPath) {
  const calls: Call[] = [];
  const sent: Sent[] = [];
  /** Forward stages in the order they became 'compensated'. */
  const compensated: StageName[] = [];
  const actor = createActor(orderMachine.provide({ actors: neverSettling(calls) }), { input, inspect: coverage.inspect });
  actor.subscribe((snapshot) => {
    for (const name of STAGE_NAMES) {
      if (snapshot.context.stages[name].status === 'compensated' && !compensated.includes(name)) compensated.push(name);
    }
  });

  const events = Object.fromEntries(
    EVENT_TYPES.map((type) => [
      type,
      ({ event }: { event: AnyEventObject }) => {
        if (type === 'xstate.init') return void actor.start();
        const from = actor.getSnapshot().value;
        const callsBefore = calls.length;
        exercisedPairs.add(pairKey(from, event));
        // xstate 5.33 takes xstate.done.actor.* / xstate.error.actor.* from outside like the child's own.
        actor.send(event as never);
        sent.push({ from, event, to: actor.getSnapshot().value, callsBefore });
      },
    ]),
  );

  try {
    await model.testPath(path, {
      events: events as never,
      states: { '*': (expected) => checkStep(actor.getSnapshot(), expected) },
    });
    const end = actor.getSnapshot();
    expect(end.value).toEqual(path.state.value);
    checkOutcome(end, sent, calls, compensated);
  } finally {
    actor.stop();
  }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

const FORWARD_STATES = ['placing', 'reserving', 'paying', 'fulfilling', 'notifying'] as const;
const FORWARD_STAGES = ['placement', 'reservation', 'payment', 'fulfillment', 'notification'] as const;
const COMPENSATIONS = ['refund', 'release', 'cancellation'] as const;

const withStatus = (snapshot: OrderSnapshot, names: readonly StageName[], status: string) =>
  names.filter((name) => snapshot.context.stages[name].status === status);

/** After every step: the actor is where the model is, and its stage records agree with that state. */
function checkStep(actual: OrderSnapshot, expected: OrderSnapshot) {
  expect(actual.value).toEqual(expected.value);
  expect(actual.status).toBe(expected.status);
  expect(project(actual)).toEqual(project(expected));
  // the steps alive are the ones the model has invoked (awaitDeadline only while cancellable, etc.)
  expect(Object.keys(actual.children).sort()).toEqual(Object.keys(expected.children).sort());

  const { context } = actual;
  const path = statePath(actual.value);
  const [top] = path;
  const atomic = path.at(-1)!;
  const running = withStatus(actual, STAGE_NAMES, 'running');
  /** The state of the stage being worked on, e.g. 'paying' for { cancellable: { paying: 'waiting' } }. */
  const stageState = atomic === 'running' || atomic === 'waiting' ? path.at(-2) : undefined;

  if (stageState) {
    // working on a stage: that stage, and only it, is running, within its attempts
    const current = STAGE_OF_STATE[stageState as keyof typeof STAGE_OF_STATE];
    expect(running).toEqual([current]);
    expect(context.stages[current].attempts).toBeGreaterThanOrEqual(1);
    expect(context.stages[current].attempts).toBeLessThanOrEqual(MAX_ATTEMPTS);
    if (atomic === 'waiting') {
      expect(context.retry_at).not.toBeNull();
      expect(context.stages[current].error).not.toBeNull();
    }
  } else {
    expect(running).toEqual([]);
  }

  const forwardIndex = FORWARD_STATES.indexOf(stageState as (typeof FORWARD_STATES)[number]);
  if (forwardIndex >= 0) {
    // going forward: everything before succeeded, nothing after started, nothing failed or undone
    expect(FORWARD_STAGES.slice(0, forwardIndex).every((name) => context.stages[name].status === 'succeeded')).toBe(true);
    expect(withStatus(actual, FORWARD_STAGES.slice(forwardIndex + 1), 'pending')).toEqual(FORWARD_STAGES.slice(forwardIndex + 1));
    expect(withStatus(actual, COMPENSATIONS, 'pending')).toEqual([...COMPENSATIONS]);
    expect(context.failure).toBeNull();
    expect(context.cancel_requested).toBe(false);
  }

  if (top === 'compensating' || top === 'compensationFailed' || top === 'failed' || top === 'cancelled') {
    // one forward stage failed, the recorded cause (it turns 'compensated' once its effect is undone)
    expect(context.failure).not.toBeNull();
    const cause = context.failure!.stage;
    expect(withStatus(actual, FORWARD_STAGES, 'failed')).toEqual(context.stages[cause].status === 'failed' ? [cause] : []);
    expect(['failed', 'compensated']).toContain(context.stages[cause].status);
  }

  switch (top) {
    case 'completed':
      expect(FORWARD_STAGES.slice(0, 4).map((name) => context.stages[name].status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
      expect(['succeeded', 'failed']).toContain(context.stages.notification.status);
      expect(withStatus(actual, COMPENSATIONS, 'skipped')).toEqual([...COMPENSATIONS]);
      expect(context.failure).toBeNull();
      expect(context.finished_at).not.toBeNull();
      break;
    case 'failed':
    case 'cancelled':
      expect(context.stages.cancellation.status).toBe('succeeded');
      expect(withStatus(actual, STAGE_NAMES, 'pending')).toEqual([]);
      expect(context.cancel_requested).toBe(top === 'cancelled');
      expect(context.finished_at).not.toBeNull();
      break;
    case 'compensationFailed':
      expect(actual.hasTag('parked')).toBe(true);
      expect(withStatus(actual, COMPENSATIONS, 'failed')).toHaveLength(1);
      break;
  }
}

/** Codes that prove a forward step had no effect, so there is nothing to undo (the saga's contract). */
const NO_EFFECT: Record<string, ReadonlySet<string>> = {
  reserveStock: new Set(['insufficient_stock', 'unknown_sku', 'reservation_released']),
  capturePayment: new Set(['payment_declined']),
};

/**
 * Whether each undoable step may have had an effect when the order went into compensation,
 * worked out from the events alone: it succeeded, or it failed without a code proving no effect,
 * or the customer or the deadline cut it off while it was running or waiting to retry.
 */
function effectsAtFailure(sent: Sent[]) {
  const effect = { reserveStock: false, capturePayment: false };
  const stateOf = { reserveStock: 'reserving', capturePayment: 'paying' } as const;
  let cause: Sent | undefined;
  for (const sentEvent of sent) {
    const { from, event, to } = sentEvent;
    for (const step of ['reserveStock', 'capturePayment'] as const) {
      if (event.type === `xstate.done.actor.${step}`) effect[step] = true;
      if (event.type === `xstate.error.actor.${step}`) effect[step] = !NO_EFFECT[step]!.has((event.error as { code: string }).code);
      if ((event.type === 'CANCEL' || event.type === 'xstate.done.actor.awaitDeadline') && statePath(from)[1] === stateOf[step]) {
        effect[step] = true;
      }
    }
    if (statePath(to)[0] === 'compensating' || statePath(to)[0] === 'compensationFailed') {
      cause = sentEvent;
      break;
    }
  }
  return { cause, refund: effect.capturePayment, release: effect.reserveStock };
}

/** At the end of the path: what was undone, in which order, and how the order ended. */
function checkOutcome(end: OrderSnapshot, sent: Sent[], calls: Call[], compensated: StageName[]) {
  const { context } = end;
  const undoCalls = calls.filter((c) => c.src === 'refundPayment' || c.src === 'releaseStock' || c.src === 'cancelOrder');
  // retries and an admin RETRY call the same undo again; what matters is the order of distinct undos
  const undos = undoCalls.map((c) => c.src).filter((src, i, all) => src !== all[i - 1]);
  const { cause, refund, release } = effectsAtFailure(sent);

  if (!cause) {
    expect(end.value).toBe('completed');
    expect(undos).toEqual([]);
    const notified = sent.filter((s) => s.event.type.endsWith('.actor.sendNotifications')).at(-1);
    expect(context.stages.notification.status).toBe(notified?.event.type.startsWith('xstate.done') ? 'succeeded' : 'failed');
    expect(calls.find((c) => c.src === 'capturePayment')?.input.amount_cents).toBe(ORDER.total_cents);
    return;
  }

  // newest effect first: refund, then release, then close the order — and nothing that had no effect
  const expectedUndos = [...(refund ? ['refundPayment'] : []), ...(release ? ['releaseStock'] : []), 'cancelOrder'];
  expect(['failed', 'cancelled']).toContain(end.value);
  expect(undos).toEqual(expectedUndos);
  expect(compensated).toEqual([...(refund ? ['payment'] : []), ...(release ? ['reservation'] : [])]);
  expect(context.stages.payment.status === 'compensated').toBe(refund);
  expect(context.stages.refund.status).toBe(refund ? 'succeeded' : 'skipped');
  expect(context.stages.reservation.status === 'compensated').toBe(release);
  expect(context.stages.release.status).toBe(release ? 'succeeded' : 'skipped');
  // no undo ran before the failure
  expect(calls.slice(0, cause.callsBefore).filter((c) => undoCalls.includes(c))).toEqual([]);

  // how it ended follows from what caused the failure
  const cancelledByCustomer = cause.event.type === 'CANCEL';
  expect(end.value).toBe(cancelledByCustomer ? 'cancelled' : 'failed');
  const expectedCode =
    cause.event.type === 'CANCEL'
      ? 'order_cancelled'
      : cause.event.type === 'xstate.done.actor.awaitDeadline'
        ? 'pipeline_timeout'
        : (cause.event.error as { code: string }).code;
  expect(context.failure?.code).toBe(expectedCode);
  for (const c of calls.filter((c) => c.src === 'cancelOrder')) expect(c.input.reason).toBe(cancelledByCustomer ? 'cancelled' : 'failed');
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

const cases = paths.map((path) => ({ name: describePath(path), path, ran: false }));

describe(`order machine, model-based (${cases.length} generated paths)`, () => {
  for (const c of cases) {
    it(c.name, async () => {
      c.ran = true;
      await runPath(c.path);
    });
  }

  // Keep last: it judges what the paths above exercised.
  it('exercises every state, every transition and every event the model offers in each state', async () => {
    // paths left out by a name filter still count: play them here
    for (const c of cases) if (!c.ran) await runPath(c.path);

    const report = coverage.report(orderMachine);
    console.log(`order machine: ${report.summary}`);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions.map((t) => t.key)).toEqual([]);

    // every (state, event variant) edge of the model, e.g. CANCEL and the deadline from each cancellable state
    const offered = new Set<string>();
    for (const vertex of Object.values(model.getAdjacencyMap())) {
      const edges = Object.values(vertex.transitions) as Array<{ event: AnyEventObject }>;
      for (const { event } of edges) offered.add(pairKey(vertex.state.value, event));
    }
    expect([...offered].filter((pair) => !exercisedPairs.has(pair))).toEqual([]);
  });
});
