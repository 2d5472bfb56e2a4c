// The order machine's diagram from docs/order-machine.json (generated from the machine by
// `npm run diagram`), laid out by dagre. One box per step the API names (an order's `state`):
// a step's `running`/`waiting` attempts fold into the step (its retries become a loop), the
// `cancellable` group's transitions leave from each of its steps, and `compensating` is the
// hub whose planning picks the next undo.

const SVG = 'http://www.w3.org/2000/svg';
const FOLDED = new Set(['running', 'waiting', 'planning']);
const GROUPS = new Set(['cancellable']);

function eventLabel(t) {
  if (!t.event) return t.guard ? `[${t.guard}]` : '';
  const m = /^xstate\.(done|error)\.actor\.(.+)$/.exec(t.event);
  if (m) return m[2] === 'awaitDeadline' ? 'deadline' : m[1];
  return t.event;
}

/** Nodes and edges of the step-level graph. */
export function machineGraph(machine) {
  const byId = new Map(machine.states.map((s) => [s.id, s]));
  const nodeOf = (id) => {
    let s = byId.get(id);
    while (s && FOLDED.has(s.key)) s = byId.get(s.parent);
    return s && s.parent !== null && !GROUPS.has(s.key) ? s : null;
  };
  const nodes = machine.states.filter((s) => nodeOf(s.id) === s);
  const expand = (id) => {
    const s = byId.get(id);
    if (s && GROUPS.has(s.key)) return nodes.filter((n) => n.parent === s.id);
    const n = nodeOf(id);
    return n ? [n] : [];
  };
  const edges = new Map();
  const retries = new Set();
  for (const t of machine.transitions) {
    for (const from of expand(t.source)) {
      for (const targetId of t.targets) {
        for (const to of expand(targetId)) {
          // running ⇄ waiting inside one step: its retries, drawn on the step itself.
          if (from === to) {
            retries.add(from.key);
            continue;
          }
          const key = `${from.key}>${to.key}`;
          const edge = edges.get(key) ?? { from: from.key, to: to.key, labels: new Set() };
          const label = eventLabel(t);
          if (label) edge.labels.add(label);
          edges.set(key, edge);
        }
      }
    }
  }
  return {
    nodes: nodes.map((n) => ({ key: n.key, final: n.type === 'final', parked: n.tags.includes('parked'), retries: retries.has(n.key) })),
    edges: [...edges.values()].map((e) => ({ from: e.from, to: e.to, label: [...e.labels].join(', ') })),
  };
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Lays the graph out once; `draw` then lights the current state and marks the visited ones. */
export function layoutMachine(machine) {
  const graph = machineGraph(machine);
  const g = new globalThis.dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: 'TB', nodesep: 24, ranksep: 36, edgesep: 10, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) g.setNode(n.key, { width: Math.max(90, n.key.length * 7.5 + 20), height: 30, ...n });
  for (const e of graph.edges) {
    g.setEdge(e.from, e.to, { label: e.label, width: e.label.length * 5.5, height: 12, labelpos: 'c' });
  }
  globalThis.dagre.layout(g);
  return g;
}

export function drawMachine(container, g, { current, visited }) {
  const { width, height } = g.graph();
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'machine' });
  const defs = el('defs');
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' });
  marker.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow' }));
  defs.append(marker);
  svg.append(defs);
  for (const e of g.edges()) {
    const edge = g.edge(e);
    const d = edge.points.map((p, i) => `${i === 0 ? 'M' : 'L'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(' ');
    svg.append(el('path', { d, class: 'edge', 'marker-end': 'url(#arrow)' }));
    if (edge.label) svg.append(el('text', { x: edge.x, y: edge.y + 3, class: 'edge-label', 'text-anchor': 'middle' }, edge.label));
  }
  for (const key of g.nodes()) {
    const n = g.node(key);
    const classes = ['node'];
    if (n.final) classes.push('final');
    if (n.parked) classes.push('parked');
    if (visited.has(key)) classes.push('visited');
    if (key === current) classes.push('current');
    const group = el('g', { class: classes.join(' '), 'data-state': key });
    group.append(el('rect', { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: n.final ? 15 : 4 }));
    group.append(el('text', { x: n.x, y: n.y + 4, 'text-anchor': 'middle' }, n.retries ? `${key} ↻` : key));
    svg.append(group);
  }
  container.replaceChildren(svg);
}
