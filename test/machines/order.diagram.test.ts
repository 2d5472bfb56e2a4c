import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AnyStateNode } from 'xstate';
import { diagramFiles, embedInReadme, toGraphJson, toMermaid } from '../../src/machines/order.diagram.js';
import { orderMachine } from '../../src/machines/order.machine.js';

const repoRoot = new URL('../../', import.meta.url);

/** Every state node below the root, walked here rather than with the diagram module's own walker. */
function allStates(node: AnyStateNode = orderMachine.root): AnyStateNode[] {
  return Object.values(node.states as Record<string, AnyStateNode>).flatMap((child) => [child, ...allStates(child)]);
}

/** The raw config shape the count below reads; `orderMachine.config` is the object passed to createMachine. */
interface RawStateConfig {
  on?: Record<string, unknown>;
  always?: unknown;
  after?: Record<string, unknown>;
  onDone?: unknown;
  invoke?: unknown;
  states?: Record<string, RawStateConfig>;
}

/**
 * Arrows the machine's raw config declares: one per target of each transition candidate (one for a
 * candidate without a target). Counted from the config, independently of xstate's parsed transitions
 * and of the diagram module.
 */
function countConfigArrows(config: RawStateConfig): number {
  const arrows = (candidates: unknown): number => {
    if (candidates === undefined) return 0;
    return (Array.isArray(candidates) ? candidates : [candidates]).reduce<number>((sum, candidate) => {
      const target = typeof candidate === 'string' ? candidate : (candidate as { target?: unknown }).target;
      return sum + (Array.isArray(target) ? Math.max(1, target.length) : 1);
    }, 0);
  };
  const invokes = config.invoke === undefined ? [] : Array.isArray(config.invoke) ? config.invoke : [config.invoke];
  let total = arrows(config.always) + arrows(config.onDone);
  for (const candidates of Object.values(config.on ?? {})) total += arrows(candidates);
  for (const candidates of Object.values(config.after ?? {})) total += arrows(candidates);
  for (const invoke of invokes as Array<Record<string, unknown>>) {
    total += arrows(invoke.onDone) + arrows(invoke.onError) + arrows(invoke.onSnapshot);
  }
  for (const child of Object.values(config.states ?? {})) total += countConfigArrows(child);
  return total;
}

describe('order machine diagram', () => {
  const mermaid = toMermaid(orderMachine);
  const graph = toGraphJson(orderMachine);

  it('the committed docs/ files match the machine', () => {
    for (const [path, generated] of Object.entries(diagramFiles(orderMachine))) {
      let committed: string | null = null;
      try {
        committed = readFileSync(new URL(path, repoRoot), 'utf8').replace(/\r\n/g, '\n');
      } catch {
        // missing: reported by the assertion below
      }
      expect(committed, `${path} is missing or out of date with the order machine: run \`npm run diagram\` and commit the result`).toBe(
        generated,
      );
    }
  });

  it('the README embeds the same generated diagram', () => {
    const readme = readFileSync(new URL('README.md', repoRoot), 'utf8').replace(/\r\n/g, '\n');
    expect(readme, 'README.md diagram is out of date: run `npm run diagram` and commit the result').toBe(embedInReadme(readme, mermaid));
    expect(readme).toContain('```mermaid\nstateDiagram-v2');
  });

  it('is deterministic', () => {
    expect(toMermaid(orderMachine)).toBe(mermaid);
    expect(toGraphJson(orderMachine)).toEqual(graph);
  });

  it('draws one arrow per transition of the machine', () => {
    const arrows = mermaid.split('\n').filter((line) => line.includes(' --> ') && !line.includes('[*]'));
    const fromConfig = countConfigArrows(orderMachine.config as RawStateConfig);
    const fromNodes = allStates().reduce(
      (sum, node) =>
        sum +
        [...node.transitions.values(), node.always ?? []].flat().reduce((n, t) => n + Math.max(1, t.target?.length ?? 0), 0),
      0,
    );
    expect(fromConfig).toBeGreaterThan(0);
    expect(fromNodes).toBe(fromConfig);
    expect(arrows).toHaveLength(fromConfig);
    expect(graph.transitions.reduce((n, t) => n + Math.max(1, t.targets.length), 0)).toBe(fromConfig);
    for (const line of arrows) expect(line).toMatch(/^ {4}\w+ --> \w+ : \S/);
  });

  it('declares every state node once, with a unique valid id and its key as label', () => {
    const declared = [...mermaid.matchAll(/^\s*state "([^"]*)" as (\S+)$/gm)].map((m) => ({ label: m[1], id: m[2] }));
    const states = allStates();
    expect(declared).toHaveLength(states.length);
    expect(new Set(declared.map((d) => d.id)).size).toBe(declared.length);
    for (const node of states) {
      expect(declared, `state #${node.id}`).toContainEqual({ label: node.key, id: node.path.join('_') });
      expect(graph.states.map((s) => s.id)).toContain(`#${node.id}`);
    }
    for (const { id } of declared) expect(id).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
    expect(graph.states).toHaveLength(states.length + 1); // and the root
  });

  it('marks initial, final and parked states and the invoked actors', () => {
    expect(mermaid.startsWith('stateDiagram-v2\n')).toBe(true);
    expect(mermaid).toMatch(/^ {4}\[\*\] --> cancellable$/m);
    expect(mermaid).toMatch(/^ {8}\[\*\] --> cancellable_placing$/m);
    for (const final of ['completed', 'failed', 'cancelled']) expect(mermaid).toMatch(new RegExp(`^ {4}${final} --> \\[\\*\\]$`, 'm'));
    expect(mermaid).toContain('cancellable_reserving_running : invoke reserveStock');
    expect(mermaid).toContain('note right of cancellable : invoke awaitDeadline');
    expect(mermaid).toContain('compensationFailed : tag parked');
    expect(mermaid).toContain('cancellable_reserving_running --> cancellable_paying : done: reserveStock\n');
    expect(mermaid).toContain('cancellable_paying_running --> cancellable_paying_waiting : error: capturePayment [canRetry]\n');
    expect(mermaid).toContain('compensating_planning --> compensating_refundingPayment : always [needsRefund]\n');
    expect(mermaid).toContain('compensating_planning --> compensating_cancellingOrder : always\n');
    // Nothing Mermaid would reject inside a label.
    expect(mermaid).not.toMatch(/[;#]/);
    for (const line of mermaid.split('\n')) {
      if (!/^\s*(state \w+ \{|\})$/.test(line)) expect(line).not.toMatch(/[{}]/);
    }
  });

  it('lists states and transitions as data', () => {
    expect(graph.id).toBe('order');
    expect(graph.states.find((s) => s.id === '#order.cancellable.reserving.running')).toEqual({
      id: '#order.cancellable.reserving.running',
      key: 'running',
      type: 'atomic',
      parent: '#order.cancellable.reserving',
      initial: null,
      tags: [],
      invokes: [{ id: 'reserveStock', src: 'reserveStock' }],
    });
    expect(graph.states.find((s) => s.id === '#order.compensationFailed')?.tags).toEqual(['parked']);
    expect(graph.transitions.filter((t) => t.source === '#order.cancellable.paying.running')).toEqual([
      { source: '#order.cancellable.paying.running', event: 'xstate.done.actor.capturePayment', guard: null, targets: ['#order.fulfilling'] },
      {
        source: '#order.cancellable.paying.running',
        event: 'xstate.error.actor.capturePayment',
        guard: 'canRetry',
        targets: ['#order.cancellable.paying.waiting'],
      },
      { source: '#order.cancellable.paying.running', event: 'xstate.error.actor.capturePayment', guard: null, targets: ['#order.compensating'] },
    ]);
    expect(graph.transitions.filter((t) => t.event === null).map((t) => t.guard)).toEqual(['needsRefund', 'needsRelease', null]);
  });
});
