/**
 * Model-based testing helpers for xstate 5.33 machines that invoke actors, built on `xstate/graph`.
 *
 * - `createTestModel()` refuses machines with `invoke` ("Invocations on test machines are not
 *   supported"), so `invokingTestModel()` builds `new TestModel(machine, options)` itself and
 *   wires what createTestModel would have: event discovery (with payloads), state identity and
 *   the state matcher.
 * - The transition universe is read from the machine definition (every state node × event type ×
 *   candidate index, `always` included); `CoverageRecorder` records the transitions a real actor
 *   took from `@xstate.microstep` inspection events, so a gate can fail on anything not exercised.
 *
 * Nothing here knows a particular machine.
 */
import type {
  AnyEventObject,
  AnyMachineSnapshot,
  AnyStateMachine,
  AnyStateNode,
  AnyTransitionDefinition,
  EventFromLogic,
  InputFrom,
  InspectionEvent,
  SnapshotFrom,
} from 'xstate';
import { TestModel, getStateNodes } from 'xstate/graph';

// ---------------------------------------------------------------------------
// Events offered by the model
// ---------------------------------------------------------------------------

/** Payload variants per event type (without `type`); each variant becomes its own graph edge. */
export type EventPayloads = Record<string, ReadonlyArray<Record<string, unknown>>>;

/** The event types the active state nodes (and their ancestors) have transitions for. */
export function ownEventTypes(snapshot: AnyMachineSnapshot): string[] {
  return [...new Set((snapshot._nodes as AnyStateNode[]).flatMap((node) => node.ownEvents))];
}

/**
 * The model's `events` option: every event the current snapshot reacts to, expanded into the
 * declared payload variants. `xstate.done.state.*` is raised internally when a final child is
 * reached, so it is never offered (sending it from outside makes impossible paths). Actor
 * done/error events and wildcards must have declared payloads: a bare `{ type }` would be a
 * done event without output or an error event without error.
 */
export function modelEvents(payloads: EventPayloads) {
  return (snapshot: AnyMachineSnapshot): AnyEventObject[] =>
    ownEventTypes(snapshot).flatMap((type) => {
      if (type.startsWith('xstate.done.state.')) return [];
      const variants = payloads[type];
      if (variants) return variants.map((payload) => ({ ...payload, type }));
      if (/^xstate\.(done|error)\.actor\./.test(type) || type.includes('*')) {
        throw new Error(`model: no payload variants declared for "${type}"`);
      }
      return [{ type }];
    });
}

/** A done event exactly as xstate creates it for an invoked child. */
export const doneActor = (actorId: string, output: unknown) => ({ output, actorId });
/** An error event exactly as xstate creates it for an invoked child. */
export const errorActor = (actorId: string, error: unknown) => ({ error, actorId });

// ---------------------------------------------------------------------------
// TestModel for machines with invoke
// ---------------------------------------------------------------------------

export interface InvokingModelOptions<TMachine extends AnyStateMachine> {
  input: InputFrom<TMachine>;
  payloads: EventPayloads;
  /**
   * State identity: the value plus whatever the guards read. Leave out timestamps and anything
   * no guard reads, or the graph grows without finding new behaviour; leave out something a guard
   * reads, and branches behind that guard are silently never explored.
   */
  project: (snapshot: SnapshotFrom<TMachine>) => unknown;
  limit?: number;
}

/**
 * A TestModel in "transition" mode (like createTestModel's serialisation): a vertex is the
 * projected snapshot plus the event and the source value that led to it. Shortest paths to every
 * vertex then take every edge of the explored graph (each (state, event variant) pair), not only
 * reach every state. Deduplication keeps only paths that are not a prefix of another.
 */
export function invokingTestModel<TMachine extends AnyStateMachine>(machine: TMachine, options: InvokingModelOptions<TMachine>) {
  type TSnapshot = SnapshotFrom<TMachine>;
  const serializeState = (snapshot: TSnapshot, event: AnyEventObject | undefined, prev?: TSnapshot): string => {
    const base = JSON.stringify(options.project(snapshot));
    if (!event || !prev) return base;
    return `${base} via ${JSON.stringify(event)} from ${JSON.stringify((prev as AnyMachineSnapshot).value)}`;
  };
  // `new TestModel()` skips createTestModel's defaults: events [] and JSON.stringify(snapshot)
  // as identity, so both are given here.
  return new TestModel<TSnapshot, EventFromLogic<TMachine>, InputFrom<TMachine>>(machine as never, {
    input: options.input,
    limit: options.limit ?? 100_000,
    events: modelEvents(options.payloads) as never,
    serializeState: serializeState as never,
    stateMatcher: (snapshot: TSnapshot, key: string) =>
      key === '*'
        ? false
        : key.startsWith('#')
          ? (snapshot as AnyMachineSnapshot)._nodes.includes(machine.getStateNodeById(key))
          : (snapshot as AnyMachineSnapshot).matches(key as never),
  });
}

// ---------------------------------------------------------------------------
// The universe of states and transitions, from the definition
// ---------------------------------------------------------------------------

export interface TransitionInfo {
  /** `#<source id> <event type | always>[<candidate index>]` */
  key: string;
  source: string;
  /** '' for `always` */
  eventType: string;
  index: number;
  guard: string | undefined;
  targets: string[];
}

function guardName(t: AnyTransitionDefinition): string | undefined {
  if (t.guard === undefined) return undefined;
  if (typeof t.guard === 'string') return t.guard;
  if (typeof t.guard === 'object' && t.guard !== null && 'type' in t.guard) return String(t.guard.type);
  return 'inline';
}

/**
 * A key that survives `machine.provide()`, which clones every state node: match transitions by
 * source id, event type and their index among that source's candidates, never by identity.
 */
export function transitionKey(t: AnyTransitionDefinition): string {
  const source = t.source as AnyStateNode;
  const always = !t.eventType;
  const candidates: AnyTransitionDefinition[] = always ? (source.always ?? []) : (source.transitions.get(t.eventType) ?? []);
  const index = candidates.indexOf(t);
  if (index < 0) throw new Error(`transition for "${t.eventType}" not found on #${source.id}`);
  return `#${source.id} ${always ? 'always' : t.eventType}[${index}]`;
}

/** A transition with no target and no actions is never taken in a way anyone can observe. */
const isInert = (t: AnyTransitionDefinition) => !t.target?.length && !t.actions.length && !t.reenter;

/** Every state node but the root, as `#id`. */
export function allStates(machine: AnyStateMachine): string[] {
  return getStateNodes(machine.root).map((node) => `#${node.id}`);
}

/** Every transition of every state node (root included), guarded alternatives and `always` counted one by one. */
export function allTransitions(machine: AnyStateMachine): TransitionInfo[] {
  const out: TransitionInfo[] = [];
  for (const node of [machine.root, ...getStateNodes(machine.root)]) {
    const lists: AnyTransitionDefinition[][] = [...node.transitions.values()];
    if (node.always) lists.push(node.always);
    for (const list of lists) {
      list.forEach((t, index) => {
        if (isInert(t)) return;
        out.push({
          key: transitionKey(t),
          source: `#${node.id}`,
          eventType: t.eventType,
          index,
          guard: guardName(t),
          targets: (t.target ?? []).map((target: AnyStateNode) => `#${target.id}`),
        });
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// What real actors did
// ---------------------------------------------------------------------------

export interface CoverageReport {
  /** e.g. `12/12 states, 20/20 transitions covered` */
  summary: string;
  missingStates: string[];
  missingTransitions: TransitionInfo[];
  stateCount: number;
  transitionCount: number;
}

/** Collects states entered and transitions taken by actors inspected with `recorder.inspect`. */
export class CoverageRecorder {
  readonly states = new Set<string>();
  readonly transitions = new Set<string>();

  /** Pass as `createActor(machine, { inspect: recorder.inspect })`. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.actorRef.sessionId !== event.rootId) return; // the machine under test, not its children
    if (event.type === '@xstate.microstep') {
      // one per microstep, eventless (`always`) ones included, so transient states count too
      for (const t of event._transitions) this.transitions.add(transitionKey(t));
      this.addNodes(event.snapshot as AnyMachineSnapshot);
    } else if (event.type === '@xstate.snapshot') {
      this.addNodes(event.snapshot as AnyMachineSnapshot); // the initial state
    }
  };

  private addNodes(snapshot: AnyMachineSnapshot): void {
    for (const node of snapshot._nodes as AnyStateNode[]) if (node.parent) this.states.add(`#${node.id}`);
  }

  report(machine: AnyStateMachine): CoverageReport {
    const states = allStates(machine);
    const transitions = allTransitions(machine);
    const missingStates = states.filter((s) => !this.states.has(s));
    const missingTransitions = transitions.filter((t) => !this.transitions.has(t.key));
    return {
      summary:
        `${states.length - missingStates.length}/${states.length} states, ` +
        `${transitions.length - missingTransitions.length}/${transitions.length} transitions covered`,
      missingStates,
      missingTransitions,
      stateCount: states.length,
      transitionCount: transitions.length,
    };
  }
}
