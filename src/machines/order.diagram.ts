import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';

/*
 * The order machine's diagram, generated from the machine definition itself (issue #4):
 * `npm run diagram` writes docs/order-machine.mmd and docs/order-machine.json, and the
 * diagram test fails when they no longer match the machine. Never edit those files by hand.
 *
 * Everything here is a pure function of the machine: states in document order, the
 * transitions of each state by event (plain events, then done, error and other xstate
 * events, then eventless `always`, each group by name), and the candidates of one event in
 * the order the machine tries them. The same machine always gives the same text.
 */

export interface GraphInvoke {
  id: string;
  /** The actor's name in `setup({ actors })`, or `inline` for actor logic given in place. */
  src: string;
}

export interface GraphState {
  /** The state's reference as a transition target, e.g. `#order.cancellable.reserving.running`. */
  id: string;
  key: string;
  type: AnyStateNode['type'];
  /** The parent's `id`; null for the machine's root. */
  parent: string | null;
  /** The `id` of the initial child of a compound state; null otherwise. */
  initial: string | null;
  tags: string[];
  invokes: GraphInvoke[];
}

export interface GraphTransition {
  /** The `id` of the state that declares the transition. */
  source: string;
  /** The event type, e.g. `CANCEL` or `xstate.done.actor.reserveStock`; null for an eventless (`always`) transition. */
  event: string | null;
  /** The guard's name; null when the transition is not guarded. */
  guard: string | null;
  /** The target states' `id`s; empty for a transition that only runs actions. */
  targets: string[];
}

export interface MachineGraph {
  id: string;
  states: GraphState[];
  transitions: GraphTransition[];
}

/** Where `npm run diagram` writes each output, relative to the repository root. */
export const DIAGRAM_PATHS = {
  mermaid: 'docs/order-machine.mmd',
  json: 'docs/order-machine.json',
} as const;

/** The state node and its descendants, depth first, children in document order. */
export function stateNodes(machine: AnyStateMachine): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const visit = (node: AnyStateNode): void => {
    out.push(node);
    for (const child of childrenOf(node)) visit(child);
  };
  visit(machine.root);
  return out;
}

function childrenOf(node: AnyStateNode): AnyStateNode[] {
  return (Object.values(node.states) as AnyStateNode[]).sort((a, b) => a.order - b.order);
}

function ref(node: AnyStateNode): string {
  return `#${node.id}`;
}

function eventRank(eventType: string): number {
  if (eventType === '') return 4;
  if (eventType.startsWith('xstate.done.actor.')) return 1;
  if (eventType.startsWith('xstate.error.actor.')) return 2;
  if (eventType.startsWith('xstate.')) return 3;
  return 0;
}

function compareEvents(a: string, b: string): number {
  return eventRank(a) - eventRank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** A state's own transitions: by event in a fixed order, candidates of one event in priority order. */
function transitionsOf(node: AnyStateNode): AnyTransitionDefinition[] {
  const events = [...node.transitions.keys()].sort(compareEvents);
  const out: AnyTransitionDefinition[] = [];
  for (const event of events) out.push(...(node.transitions.get(event) ?? []));
  out.push(...(node.always ?? []));
  return out;
}

function guardName(guard: unknown): string | null {
  if (guard === undefined || guard === null) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    // Higher-order guards (`and`, `or`, `not`) are functions carrying their operands.
    const operands = (guard as { guards?: unknown }).guards;
    if (Array.isArray(operands)) return `${guard.name || 'inline'}(${operands.map((g) => guardName(g) ?? 'inline').join(', ')})`;
    return guard.name || 'inline';
  }
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') {
    return (guard as { type: string }).type;
  }
  return 'inline';
}

function invokesOf(node: AnyStateNode): GraphInvoke[] {
  return node.invoke.map((def) => ({ id: def.id, src: typeof def.src === 'string' ? def.src : 'inline' }));
}

/** The machine as plain data: every state node (the root first) and every transition candidate. */
export function toGraphJson(machine: AnyStateMachine): MachineGraph {
  const nodes = stateNodes(machine);
  const states = nodes.map(
    (node): GraphState => ({
      id: ref(node),
      key: node.key,
      type: node.type,
      parent: node.parent ? ref(node.parent) : null,
      initial: node.type === 'compound' && node.initial.target[0] ? ref(node.initial.target[0]) : null,
      tags: [...node.tags].sort(),
      invokes: invokesOf(node),
    }),
  );
  const transitions = nodes.flatMap((node) =>
    transitionsOf(node).map(
      (t): GraphTransition => ({
        source: ref(node),
        event: t.eventType === '' ? null : t.eventType,
        guard: guardName(t.guard),
        targets: (t.target ?? []).map(ref),
      }),
    ),
  );
  return { id: machine.id, states, transitions };
}

/** A label Mermaid accepts as is: no quotes, braces, semicolons, `#` entities or HTML. */
function label(text: string): string {
  return text.replace(/[^\w .:,()[\]*+\-/@!?=]/g, '_');
}

/** The short form of an event for an arrow: `done: reserveStock`, `error: capturePayment`, `always`. */
export function eventLabel(eventType: string): string {
  if (eventType === '') return 'always';
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) return `${actor[1]}: ${actor[2]}`;
  const done = /^xstate\.done\.state\.(.+)$/.exec(eventType);
  if (done) return `done: ${done[1]}`;
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}`;
  return eventType;
}

/**
 * Mermaid ids: the state's path below the root joined with `_` (`cancellable_reserving_running`),
 * since many states share a key (`running`, `waiting`). Throws if two states would share one.
 */
function mermaidIds(machine: AnyStateMachine): Map<AnyStateNode, string> {
  const ids = new Map<AnyStateNode, string>();
  const owners = new Map<string, string>();
  for (const node of stateNodes(machine)) {
    if (node === machine.root) continue;
    const id = node.path.join('_').replace(/[^A-Za-z0-9_]/g, '_');
    const owner = owners.get(id);
    if (owner !== undefined) throw new Error(`diagram: states #${owner} and #${node.id} would share the Mermaid id "${id}"`);
    owners.set(id, node.id);
    ids.set(node, id);
  }
  return ids;
}

/** A Mermaid `stateDiagram-v2` of the machine: nested states, initial and final arrows, invokes, then every transition. */
export function toMermaid(machine: AnyStateMachine): string {
  const ids = mermaidIds(machine);
  const mid = (node: AnyStateNode): string => {
    const id = ids.get(node);
    if (id === undefined) throw new Error(`diagram: no Mermaid id for #${node.id} (a transition to the machine root?)`);
    return id;
  };
  const notes = (node: AnyStateNode): string[] => [
    ...invokesOf(node).map((inv) => `invoke ${inv.src}`),
    ...[...node.tags].sort().map((tag) => `tag ${tag}`),
  ];

  const lines: string[] = [
    'stateDiagram-v2',
    `    %% Generated from the "${label(machine.id)}" machine by \`npm run diagram\`. Do not edit by hand.`,
  ];

  const block = (parent: AnyStateNode, depth: number): void => {
    const pad = '    '.repeat(depth);
    const children = childrenOf(parent);
    if (parent.type === 'compound') {
      for (const target of parent.initial.target) lines.push(`${pad}[*] --> ${mid(target)}`);
    }
    children.forEach((child, i) => {
      if (parent.type === 'parallel' && i > 0) lines.push(`${pad}--`);
      const id = mid(child);
      lines.push(`${pad}state "${label(child.key)}" as ${id}`);
      if (childrenOf(child).length > 0) {
        lines.push(`${pad}state ${id} {`);
        block(child, depth + 1);
        lines.push(`${pad}}`);
        for (const note of notes(child)) lines.push(`${pad}note right of ${id} : ${label(note)}`);
      } else {
        for (const note of notes(child)) lines.push(`${pad}${id} : ${label(note)}`);
      }
    });
    for (const child of children) {
      if (child.type === 'final') lines.push(`${pad}${mid(child)} --> [*]`);
    }
  };
  block(machine.root, 1);

  // Transitions go at the top level: an arrow inside a composite block would pull a state
  // from elsewhere into that composite.
  for (const node of stateNodes(machine)) {
    for (const t of transitionsOf(node)) {
      const guard = guardName(t.guard);
      const text = label(guard === null ? eventLabel(t.eventType) : `${eventLabel(t.eventType)} [${guard}]`);
      // A transition without a target only runs actions: drawn as a loop on its source.
      for (const target of t.target?.length ? t.target : [node]) lines.push(`    ${mid(node)} --> ${mid(target)} : ${text}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The generated files by path relative to the repository root, exactly as they are written. */
export function diagramFiles(machine: AnyStateMachine): Record<string, string> {
  return {
    [DIAGRAM_PATHS.mermaid]: toMermaid(machine),
    [DIAGRAM_PATHS.json]: `${JSON.stringify(toGraphJson(machine), null, 2)}\n`,
  };
}

const README_START = '<!-- diagram:start -->';
const README_END = '<!-- diagram:end -->';

/** The README with its diagram block (between the diagram markers) replaced by `mermaid`. */
export function embedInReadme(readme: string, mermaid: string): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`README.md needs ${README_START} … ${README_END} markers around the diagram`);
  const block = `${README_START}\nGenerated from \`src/machines/order.machine.ts\` by \`npm run diagram\` (also \`docs/order-machine.mmd\`, \`docs/order-machine.json\`).\n\n\`\`\`mermaid\n${mermaid.trimEnd()}\n\`\`\`\n`;
  return readme.slice(0, start) + block + readme.slice(end);
}
