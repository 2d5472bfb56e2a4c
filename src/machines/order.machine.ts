import {
  assign,
  fromPromise,
  setup,
  type ActorLogic,
  type AnyActorRef,
  type EventObject,
  type OutputFrom,
  type PromiseSnapshot,
} from 'xstate';
import { isTransientCode, toStepError, type StepError } from '../domain/errors.js';
import {
  STAGE_NAMES,
  type Notification,
  type Order,
  type OrderFailure,
  type OrderItemRequest,
  type OrderRequest,
  type Payment,
  type Reservation,
  type RetryPolicy,
  type ShippingAddress,
  type Shipment,
  type StageName,
  type StageRecord,
} from '../domain/order.js';

/*
 * The order saga. This file imports only xstate and src/domain, so the Stately
 * editor, the graph tests and the diagram script can load it on its own.
 *
 * Durability rules the shape follows:
 * - Every actor is named in `setup({ actors })`: only named actors persist, and
 *   `provide()` swaps them by the same name (real steps in production, fakes in tests).
 * - No `after` timers: XState does not restore them from a snapshot
 *   (statelyai/xstate#5331). Retry waits and the order deadline keep their due time in
 *   context and wait in an invoked timer actor (`sleepUntil`), which is started again
 *   when a snapshot is restored — so the wait is re-armed for whatever time is left.
 * - State ids are persisted: renaming a state strands the snapshots that are in it.
 * - An invoked step that was running when the process died runs again on restore, so
 *   every step is idempotent by (order id, step) in the layer that implements it.
 */

export interface OrderInput {
  order_id: string;
  user_id: string;
  request: OrderRequest;
  created_at: string;
  /** Past this instant an unshipped order is compensated with `pipeline_timeout`. */
  deadline_at: string;
  retry: RetryPolicy;
}

export interface OrderContext extends OrderInput {
  order: Order | null;
  reservation: Reservation | null;
  payment: Payment | null;
  shipment: Shipment | null;
  notifications: Notification[];
  stages: Record<StageName, StageRecord>;
  /** Every failure, in the order it happened (terminal ones and the notification error). */
  errors: Array<{ stage: StageName; code: StepError['code']; message: string }>;
  /** What sent the order into compensation; null while it is going forward or completed. */
  failure: OrderFailure | null;
  cancel_requested: boolean;
  /** Due time of the retry the order is waiting for, if any. */
  retry_at: string | null;
  finished_at: string | null;
}

export type OrderEvent = { type: 'CANCEL' } | { type: 'RETRY' };

export interface PlaceOrderInput {
  order_id: string;
  user_id: string;
  request: OrderRequest;
  created_at: string;
}
export interface StockInput {
  order_id: string;
  items: OrderItemRequest[];
}
export interface CapturePaymentInput {
  order_id: string;
  user_id: string;
  amount_cents: number;
  currency: string;
  token: string;
}
export interface RefundPaymentInput {
  order_id: string;
}
export interface ShipOrderInput {
  order_id: string;
  items: OrderItemRequest[];
  shipping: ShippingAddress;
}
export interface SendNotificationsInput {
  order_id: string;
  user_id: string;
  order: Order;
  payment: Payment | null;
  shipment: Shipment | null;
}
export interface CancelOrderInput {
  order_id: string;
  user_id: string;
  request: OrderRequest;
  created_at: string;
  reason: 'cancelled' | 'failed';
}
export interface WaitInput {
  until: string;
}

function notProvided(name: string) {
  return async (): Promise<never> => {
    throw new Error(`order machine: actor "${name}" was not provided; wire it with orderMachine.provide({ actors })`);
  };
}

type SleepSnapshot = PromiseSnapshot<void, WaitInput>;
const timers = new WeakMap<AnyActorRef, ReturnType<typeof setTimeout>>();

/**
 * Done at `until`, or at once when that has passed (after a restart, say). Like a promise
 * actor that resolves then, persisted and restored the same way, but a plain timer: every
 * order has a deadline stopped early, and a promise actor's stop aborts an AbortController.
 */
// The event type is a promise actor's, so tests can provide promise actors in its place.
export const sleepUntil: ActorLogic<SleepSnapshot, { type: string; [k: string]: unknown }, WaitInput> = {
  getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input }),
  start(snapshot, { self }) {
    if (snapshot.status !== 'active') return;
    const ms = Date.parse(snapshot.input!.until) - Date.now();
    timers.set(
      self,
      setTimeout(() => self.send({ type: 'wake' }), ms > 0 ? ms : 0),
    );
  },
  transition(snapshot, event, { self }) {
    if (snapshot.status !== 'active') return snapshot;
    if (event.type === 'wake') return { ...snapshot, status: 'done', input: undefined };
    if (event.type === 'xstate.stop') {
      clearTimeout(timers.get(self));
      timers.delete(self);
      return { ...snapshot, status: 'stopped', input: undefined };
    }
    return snapshot;
  },
  getPersistedSnapshot: (snapshot) => snapshot,
  restoreSnapshot: (snapshot) => snapshot as SleepSnapshot,
};

/** Codes that prove a step had no effect, so there is nothing to undo. */
const NO_EFFECT_CODES: Partial<Record<StageName, ReadonlySet<string>>> = {
  reservation: new Set(['insufficient_stock', 'unknown_sku', 'reservation_released']),
  payment: new Set(['payment_declined']),
};

export function initialStages(): Record<StageName, StageRecord> {
  const stages = {} as Record<StageName, StageRecord>;
  for (const name of STAGE_NAMES) {
    stages[name] = { name, status: 'pending', started_at: null, ended_at: null, attempts: 0, error: null };
  }
  return stages;
}

function patchStage(context: OrderContext, stage: StageName, patch: Partial<StageRecord>): Record<StageName, StageRecord> {
  return { ...context.stages, [stage]: { ...context.stages[stage], ...patch } };
}

/** A stage whose effect may exist: it succeeded, or it was cut off or failed without proof of no effect. */
function mayHaveEffect(context: OrderContext, stage: StageName, compensation: StageName): boolean {
  if (context.stages[compensation].status === 'succeeded') return false;
  const record = context.stages[stage];
  if (record.status === 'succeeded' || record.status === 'running') return true;
  if (record.status !== 'failed') return false;
  return !(record.error && NO_EFFECT_CODES[stage]?.has(record.error.code));
}

/** Exponential backoff with equal jitter: half the delay fixed, half random. */
export function retryDelayMs(policy: RetryPolicy, attempt: number, random: number = Math.random()): number {
  const exp = Math.min(policy.max_delay_ms, policy.base_ms * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (exp / 2) * random);
}

// Stage timestamps are ISO strings; formatting one costs more than a transition's other work,
// and many transitions share a millisecond under load.
let lastMs = 0;
let lastIso = '';
function now(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

const actors = {
  placeOrder: fromPromise<Order, PlaceOrderInput>(notProvided('placeOrder')),
  reserveStock: fromPromise<Reservation, StockInput>(notProvided('reserveStock')),
  releaseStock: fromPromise<Reservation | null, StockInput>(notProvided('releaseStock')),
  capturePayment: fromPromise<Payment, CapturePaymentInput>(notProvided('capturePayment')),
  refundPayment: fromPromise<Payment | null, RefundPaymentInput>(notProvided('refundPayment')),
  shipOrder: fromPromise<Shipment, ShipOrderInput>(notProvided('shipOrder')),
  sendNotifications: fromPromise<Notification[], SendNotificationsInput>(notProvided('sendNotifications')),
  cancelOrder: fromPromise<void, CancelOrderInput>(notProvided('cancelOrder')),
  awaitRetry: sleepUntil,
  awaitDeadline: sleepUntil,
};
type StepActor = Exclude<keyof typeof actors, 'awaitRetry' | 'awaitDeadline'>;

/** Context fields a step's output is kept in. */
type RecordKey = 'order' | 'reservation' | 'payment' | 'shipment' | 'notifications';
/** The fields an actor's output fits, so a step cannot be told to keep its output in the wrong one. */
type RecordOf<A extends StepActor> = {
  [K in RecordKey]: OutputFrom<(typeof actors)[A]> extends OrderContext[K] ? K : never;
}[RecordKey];
type StepSpec = {
  [A in StepActor]: {
    stage: StageName;
    actor: A;
    /** Where the output goes in context. */
    record?: RecordOf<A>;
    /** The forward stage a compensation undoes, marked `compensated` when it succeeds. */
    undoes?: StageName;
  };
}[StepActor];

/**
 * Every step state (`running` ⇄ `waiting`, see `step()`), with the stage it works on and the
 * actor it invokes. The actor's name is also the invoke's id, so it names the child in snapshots.
 */
export const ORDER_STEPS = {
  placing: { stage: 'placement', actor: 'placeOrder', record: 'order' },
  reserving: { stage: 'reservation', actor: 'reserveStock', record: 'reservation' },
  paying: { stage: 'payment', actor: 'capturePayment', record: 'payment' },
  fulfilling: { stage: 'fulfillment', actor: 'shipOrder', record: 'shipment' },
  notifying: { stage: 'notification', actor: 'sendNotifications', record: 'notifications' },
  refundingPayment: { stage: 'refund', actor: 'refundPayment', record: 'payment', undoes: 'payment' },
  releasingStock: { stage: 'release', actor: 'releaseStock', record: 'reservation', undoes: 'reservation' },
  cancellingOrder: { stage: 'cancellation', actor: 'cancelOrder' },
} as const satisfies Record<string, StepSpec>;
type StepState = keyof typeof ORDER_STEPS;

/** The stage each state works on, for records, logs and the API's `stage` fields. */
export const STAGE_OF_STATE = Object.fromEntries(Object.entries(ORDER_STEPS).map(([state, { stage }]) => [state, stage])) as {
  readonly [S in StepState]: (typeof ORDER_STEPS)[S]['stage'];
};

type StageParams = { stage: StageName };

/** Guards and actions on a step's error event read the error here, so their params stay static. */
function errorOf(event: EventObject): StepError {
  return toStepError('error' in event ? event.error : undefined);
}
function outputOf(event: EventObject): unknown {
  return 'output' in event ? event.output : undefined;
}

const orderSetup = setup({
  types: {
    context: {} as OrderContext,
    events: {} as OrderEvent,
    input: {} as OrderInput,
    tags: {} as 'parked',
  },
  actors,
  guards: {
    canRetry: ({ context, event }, { stage }: StageParams) =>
      isTransientCode(errorOf(event).code) && context.stages[stage].attempts < context.retry.max_attempts,
    /** Compensations retry whatever the error: giving up on an undo is the last resort. */
    canRetryCompensation: ({ context }, { stage }: StageParams) =>
      context.stages[stage].attempts < context.retry.max_attempts,
    needsRefund: ({ context }) => mayHaveEffect(context, 'payment', 'refund'),
    needsRelease: ({ context }) => mayHaveEffect(context, 'reservation', 'release'),
    cancelRequested: ({ context }) => context.cancel_requested,
  },
  actions: {
    startStage: assign(({ context }, { stage }: StageParams) => ({
      retry_at: null,
      stages: patchStage(context, stage, {
        status: 'running',
        started_at: context.stages[stage].started_at ?? now(),
        ended_at: null,
        attempts: context.stages[stage].attempts + 1,
      }),
    })),
    /**
     * The step succeeded; its output goes to `record`, a field ORDER_STEPS checks it fits
     * (one assign per transition: they copy the context).
     */
    completeStage: assign(({ context, event }, { stage, record }: StageParams & { record?: RecordKey }) => ({
      ...(record && { [record]: outputOf(event) }),
      stages: patchStage(context, stage, { status: 'succeeded', ended_at: now() }),
    })),
    scheduleRetry: assign(({ context, event }, { stage }: StageParams) => ({
      retry_at: new Date(Date.now() + retryDelayMs(context.retry, context.stages[stage].attempts)).toISOString(),
      stages: patchStage(context, stage, { error: errorOf(event) }),
    })),
    failStage: assign(({ context, event }, { stage }: StageParams) => {
      const error = errorOf(event);
      return {
        stages: patchStage(context, stage, { status: 'failed', ended_at: now(), error }),
        errors: [...context.errors, { stage, code: error.code, message: error.message }],
        failure: context.failure ?? { stage, code: error.code, message: error.message },
      };
    }),
    /** A customer cancel or the deadline cuts the running stage off; it is then compensated like a failure. */
    interrupt: assign(({ context }, { error, cancel }: { error: StepError; cancel: boolean }) => {
      const running = STAGE_NAMES.find((name) => context.stages[name].status === 'running') ?? 'placement';
      return {
        cancel_requested: context.cancel_requested || cancel,
        retry_at: null,
        stages: patchStage(context, running, { status: 'failed', ended_at: now(), error }),
        errors: [...context.errors, { stage: running, code: error.code, message: error.message }],
        failure: context.failure ?? { stage: running, code: error.code, message: error.message },
      };
    }),
    /** The compensation `by` succeeded: `stage`'s effect is undone. A step that reports nothing keeps `record` as it was. */
    compensateStage: assign(({ context, event }, { stage, by, record }: StageParams & { by: StageName; record?: RecordKey }) => ({
      ...(record && { [record]: outputOf(event) ?? context[record] }),
      stages: {
        ...patchStage(context, by, { status: 'succeeded', ended_at: now() }),
        [stage]: { ...context.stages[stage], status: 'compensated' as const },
      },
    })),
    /** A failed notification is recorded, but a shipped order stays shipped. */
    recordNotificationError: assign(({ context, event }, { stage }: StageParams) => {
      const error = errorOf(event);
      return {
        stages: patchStage(context, stage, { status: 'failed', ended_at: now(), error }),
        errors: [...context.errors, { stage, code: error.code, message: error.message }],
      };
    }),
    /** An admin retry: give the failed compensation a fresh set of attempts. */
    reopenCompensation: assign(({ context }) => {
      const stages = { ...context.stages };
      for (const name of ['refund', 'release', 'cancellation'] as const) {
        if (stages[name].status === 'failed') stages[name] = { ...stages[name], status: 'pending', attempts: 0 };
      }
      return { stages };
    }),
    finish: assign(({ context }) => {
      const stages = { ...context.stages };
      for (const name of STAGE_NAMES) {
        if (stages[name].status === 'pending') stages[name] = { ...stages[name], status: 'skipped' };
      }
      return { stages, retry_at: null, finished_at: now() };
    }),
  },
});

type OrderStateConfig = Parameters<typeof orderSetup.createStateConfig>[0];
/** XState's invoke config for one actor: `input` typed by that actor's input. */
type StepInvoke<A extends StepActor> = Extract<NonNullable<OrderStateConfig['invoke']>, { src: A }>;
type StepActorOf<S extends StepState> = (typeof ORDER_STEPS)[S]['actor'];
/** A guarded `onDone` target; the helper adds the step's completing action. */
type StepDoneCandidate = { guard?: 'cancelRequested'; target: string };

/** What a step does once it gives up on an error, by kind of step. */
const ON_ERROR = {
  // Going forward: undo what was done.
  forward: { retry: 'canRetry', target: '#order.compensating', action: 'failStage' },
  // The order has shipped: record the error and complete anyway.
  notification: { retry: 'canRetry', target: '#order.completed', action: 'recordNotificationError' },
  // An undo that fails for good parks the order for an admin.
  compensation: { retry: 'canRetryCompensation', target: '#order.compensationFailed', action: 'failStage' },
} as const;

/**
 * A step state: `running` invokes the step's actor, `waiting` waits for `retry_at` before the next
 * attempt. On success it records the output and goes to `onDone` (the first candidate whose guard
 * passes); on an error it retries while `ON_ERROR[kind].retry` allows, then gives up.
 */
function step<S extends StepState>(
  state: S,
  kind: keyof typeof ON_ERROR,
  { input, onDone }: { input: StepInvoke<StepActorOf<S>>['input']; onDone: string | StepDoneCandidate[] },
) {
  const spec: StepSpec = ORDER_STEPS[state];
  const { stage, actor } = spec;
  const { retry, target, action } = ON_ERROR[kind];
  const done = spec.undoes
    ? ({ type: 'compensateStage', params: { stage: spec.undoes, by: stage, record: spec.record } } as const)
    : ({ type: 'completeStage', params: { stage, record: spec.record } } as const);
  const transitions = {
    onDone:
      typeof onDone === 'string' ? { target: onDone, actions: done } : onDone.map((candidate) => ({ ...candidate, actions: done })),
    onError: [
      { guard: { type: retry, params: { stage } }, target: 'waiting', actions: { type: 'scheduleRetry', params: { stage } } },
      { target, actions: { type: action, params: { stage } } },
    ],
  } satisfies Pick<StepInvoke<StepActor>, 'onDone' | 'onError'>;
  // `input` is typed by S's actor, which TS cannot match to one member of the invoke union inside
  // this generic function; the caller's `input` was checked against that actor already.
  const invoke = { id: actor, src: actor, input, ...transitions } as StepInvoke<StepActorOf<S>>;
  return {
    initial: 'running',
    states: {
      running: orderSetup.createStateConfig({ entry: { type: 'startStage', params: { stage } }, invoke }),
      waiting: orderSetup.createStateConfig({
        invoke: {
          id: 'awaitRetry',
          src: 'awaitRetry',
          input: ({ context }) => ({ until: context.retry_at ?? context.created_at }),
          onDone: 'running',
        },
      }),
    },
  } as const;
}

export const orderMachine = orderSetup.createMachine({
  id: 'order',
  context: ({ input }) => ({
    ...input,
    order: null,
    reservation: null,
    payment: null,
    shipment: null,
    notifications: [],
    stages: initialStages(),
    errors: [],
    failure: null,
    cancel_requested: false,
    retry_at: null,
    finished_at: null,
  }),
  initial: 'cancellable',
  states: {
    // Until the order ships, the customer may cancel and the deadline runs.
    cancellable: {
      invoke: {
        id: 'awaitDeadline',
        src: 'awaitDeadline',
        input: ({ context }) => ({ until: context.deadline_at }),
        onDone: {
          target: 'compensating',
          actions: {
            type: 'interrupt',
            params: { error: { code: 'pipeline_timeout', message: 'the order did not ship before its deadline' }, cancel: false },
          },
        },
      },
      on: {
        CANCEL: {
          target: 'compensating',
          actions: { type: 'interrupt', params: { error: { code: 'order_cancelled', message: 'cancelled by the customer' }, cancel: true } },
        },
      },
      initial: 'placing',
      states: {
        placing: step('placing', 'forward', {
          input: ({ context }) => ({
            order_id: context.order_id,
            user_id: context.user_id,
            request: context.request,
            created_at: context.created_at,
          }),
          onDone: '#order.cancellable.reserving',
        }),
        reserving: step('reserving', 'forward', {
          input: ({ context }) => ({ order_id: context.order_id, items: context.request.items }),
          onDone: '#order.cancellable.paying',
        }),
        paying: step('paying', 'forward', {
          input: ({ context }) => ({
            order_id: context.order_id,
            user_id: context.user_id,
            amount_cents: context.order?.total_cents ?? 0,
            currency: context.order?.currency ?? 'USD',
            token: context.request.payment.token,
          }),
          onDone: '#order.fulfilling',
        }),
      },
    },
    // Shipped goods are not taken back: from here on CANCEL is refused and no deadline applies.
    fulfilling: step('fulfilling', 'forward', {
      input: ({ context }) => ({ order_id: context.order_id, items: context.request.items, shipping: context.request.shipping }),
      onDone: '#order.notifying',
    }),
    notifying: step('notifying', 'notification', {
      input: ({ context }) => ({
        order_id: context.order_id,
        user_id: context.user_id,
        order: context.order!,
        payment: context.payment,
        shipment: context.shipment,
      }),
      onDone: '#order.completed',
    }),
    completed: { type: 'final', entry: 'finish' },
    // Undo in reverse: refund, release, cancel. `planning` picks the next undo that is still
    // needed and is re-entered after each one, so a resumed compensation skips what is done.
    compensating: {
      initial: 'planning',
      states: {
        planning: {
          always: [
            { guard: 'needsRefund', target: 'refundingPayment' },
            { guard: 'needsRelease', target: 'releasingStock' },
            { target: 'cancellingOrder' },
          ],
        },
        refundingPayment: step('refundingPayment', 'compensation', {
          input: ({ context }) => ({ order_id: context.order_id }),
          onDone: '#order.compensating.planning',
        }),
        releasingStock: step('releasingStock', 'compensation', {
          input: ({ context }) => ({ order_id: context.order_id, items: context.request.items }),
          onDone: '#order.compensating.planning',
        }),
        cancellingOrder: step('cancellingOrder', 'compensation', {
          input: ({ context }) => ({
            order_id: context.order_id,
            user_id: context.user_id,
            request: context.request,
            created_at: context.created_at,
            reason: context.cancel_requested ? ('cancelled' as const) : ('failed' as const),
          }),
          onDone: [{ guard: 'cancelRequested', target: '#order.cancelled' }, { target: '#order.failed' }],
        }),
      },
    },
    // An undo that kept failing. The actor is parked (stopped and kept in the store), never
    // silently dropped; an admin's RETRY resumes compensation, skipping what is already undone.
    compensationFailed: {
      tags: ['parked'],
      on: { RETRY: { target: 'compensating', actions: 'reopenCompensation' } },
    },
    failed: { type: 'final', entry: 'finish' },
    cancelled: { type: 'final', entry: 'finish' },
  },
});

export type OrderMachine = typeof orderMachine;
