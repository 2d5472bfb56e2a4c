/**
 * The benchmark scenarios: what each sends (autocannon request sequences built per request
 * with setupRequest), which catalog it needs and which answers are expected outcomes.
 */
import type { TaggedRequest } from './load.js';

export type CatalogKind = 'plenty' | 'scarce';

export interface ScenarioContext {
  /** User tokens, spread over the load (one user per request, chosen at random). */
  tokens: readonly string[];
  skus: readonly string[];
  /** Counts of the `status` member in status-poll bodies (async scenario), filled during the run. */
  bodyStatuses: Record<string, number>;
}

export interface Scenario {
  name: string;
  description: string;
  connections: number;
  catalog: CatalogKind;
  /** The kind whose latency is the scenario's headline (the order-creating request). */
  primaryKind: string;
  /** Per kind, the HTTP statuses that are expected outcomes; anything else counts as an error. */
  expected: Record<string, readonly number[]>;
  requests(ctx: ScenarioContext): TaggedRequest[];
}

export const PLENTY_SKUS = 200;
export const SCARCE_SKUS = 50;
/** Units per SKU in the scarce catalog (restocked to this after the warm-up). */
export const SCARCE_STOCK = 4;

export const SHIPPING = { name: 'Bench User', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' };

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

/** `k` distinct SKUs at random. */
function pickDistinct(skus: readonly string[], k: number): string[] {
  if (k >= skus.length) return [...skus];
  const chosen = new Set<string>();
  while (chosen.size < k) chosen.add(pick(skus));
  return [...chosen];
}

export function orderBody(skus: readonly string[], itemsPerOrder: number, paymentToken: string): string {
  return JSON.stringify({
    items: pickDistinct(skus, itemsPerOrder).map((sku) => ({ sku, quantity: 1 })),
    payment: { token: paymentToken },
    shipping: SHIPPING,
  });
}

const jsonHeaders = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

/** One synchronous create per request: POST /api/v1/pipeline/orders. */
function syncOrder(itemsPerOrder: number, paymentToken: () => string) {
  return (ctx: ScenarioContext): TaggedRequest[] => [
    {
      kind: 'create',
      method: 'POST',
      path: '/api/v1/pipeline/orders',
      setupRequest: (req) => ({
        ...req,
        headers: jsonHeaders(pick(ctx.tokens)),
        body: orderBody(ctx.skus, itemsPerOrder, paymentToken()),
      }),
    },
  ];
}

const visa = () => 'tok_visa';

interface AsyncContext {
  token?: string;
  statusUrl?: string;
}

/** POST …/orders/async, then GET its status_url with the same user's token. */
function asyncPoll(ctx: ScenarioContext): TaggedRequest[] {
  return [
    {
      kind: 'create',
      method: 'POST',
      path: '/api/v1/pipeline/orders/async',
      setupRequest: (req, context) => {
        const c = context as AsyncContext;
        c.token = pick(ctx.tokens);
        c.statusUrl = undefined;
        return { ...req, headers: jsonHeaders(c.token), body: orderBody(ctx.skus, 2, 'tok_visa') };
      },
      onResponse: (status, body, context) => {
        if (status !== 202) return;
        const m = /"status_url":"([^"]+)"/.exec(body);
        if (m) (context as AsyncContext).statusUrl = m[1];
      },
    },
    {
      kind: 'status',
      method: 'GET',
      path: '/',
      // No status_url (the create failed): returning nothing restarts the sequence.
      setupRequest: (req, context) => {
        const c = context as AsyncContext;
        if (!c.statusUrl || !c.token) return undefined as unknown as typeof req;
        return { ...req, method: 'GET', path: c.statusUrl, headers: { authorization: `Bearer ${c.token}` }, body: undefined };
      },
      onResponse: (status, body) => {
        if (status !== 200) return;
        const s = /"status":"([a-z_]+)"/.exec(body)?.[1] ?? 'unparsed';
        ctx.bodyStatuses[s] = (ctx.bodyStatuses[s] ?? 0) + 1;
      },
    },
  ];
}

const sync = (name: string, connections: number, description: string): Scenario => ({
  name,
  description,
  connections,
  catalog: 'plenty',
  primaryKind: 'create',
  expected: { create: [201] },
  requests: syncOrder(2, visa),
});

export const SCENARIOS: readonly Scenario[] = [
  sync('sync-c1', 1, 'sync create, 2 items, tok_visa, 1 connection'),
  sync('sync-c10', 10, 'sync create, 2 items, tok_visa, 10 connections'),
  sync('sync-c50', 50, 'sync create, 2 items, tok_visa, 50 connections'),
  sync('sync-c200', 200, 'sync create, 2 items, tok_visa, 200 connections'),
  {
    name: 'async-poll',
    description: 'POST …/orders/async then GET its status_url, 2 items, 50 connections',
    connections: 50,
    catalog: 'plenty',
    primaryKind: 'create',
    expected: { create: [202], status: [200] },
    requests: asyncPoll,
  },
  ...([1, 10, 50] as const).map(
    (n): Scenario => ({
      name: `items-${n}`,
      description: `sync create, ${n} distinct SKU${n > 1 ? 's' : ''} per order, 50 connections`,
      connections: 50,
      catalog: 'plenty',
      primaryKind: 'create',
      expected: { create: [201] },
      requests: syncOrder(n, visa),
    }),
  ),
  {
    name: 'declined-10pct',
    description: 'sync create, 2 items, 10 % tok_declined (402 expected), 50 connections',
    connections: 50,
    catalog: 'plenty',
    primaryKind: 'create',
    expected: { create: [201, 402] },
    requests: syncOrder(2, () => (Math.random() < 0.1 ? 'tok_declined' : 'tok_visa')),
  },
  {
    name: 'scarce-stock',
    description: `sync create, 2 items from ${SCARCE_SKUS} SKUs with ${SCARCE_STOCK} units each: mostly 409 insufficient_stock, 50 connections`,
    connections: 50,
    catalog: 'scarce',
    primaryKind: 'create',
    expected: { create: [201, 409] },
    requests: syncOrder(2, visa),
  },
];

/** The soak: sync creates at a fixed overall rate. */
export const SOAK: Scenario = { ...sync('soak', 100, 'sync create, 2 items, tok_visa, fixed overall rate'), connections: 100 };
