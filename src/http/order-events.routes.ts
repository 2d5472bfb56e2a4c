import { createRoute, z } from '@hono/zod-openapi';
import { apiResponses, bearerSecurity, json, openApiApp, problems } from './openapi.js';
import type { Context } from 'hono';
import { OrderError } from '../domain/errors.js';
import { ORDER_ID_PATTERN } from '../domain/ids.js';
import type { OrderChange, OrderEngine } from '../orders/order.engine.js';
import { orderViewSchema, pipelineStatusSchema, type OrderView } from '../orders/order.view.js';
import type { AuthUser } from './auth.middleware.js';
import { OrderStreams, type StreamTicket } from './order-streams.js';
import { problemFor, problemResponse } from './problem.js';

/*
 * `/api/v1/pipeline/…`: an order's live status as Server-Sent Events, its change history, and a
 * feed of every visible order's changes for the /ui page.
 *
 * The page's orders table listens to that feed instead of polling the list: one stream per open
 * page, and a change is on screen as soon as it is committed, where polling would either lag or
 * cost a list query per page per second whether anything changed or not.
 */

export interface OrderEventsRoutesDeps {
  engine: OrderEngine;
  /** The open streams; absent (tests of the HTTP layer alone), a default with the standard limits. */
  streams?: OrderStreams;
}

/** Final states: the stream ends after one of these. `compensation_failed` is parked, not final: an admin may retry it. */
const FINAL = new Set<OrderView['status']>(['completed', 'failed', 'cancelled']);
const HISTORY_PAGE = 200;

/** Each change is serialised once, however many streams send it (they share the change object). */
const serialised = new WeakMap<OrderChange, string>();
function viewJson(change: OrderChange): string {
  let json = serialised.get(change);
  if (json === undefined) serialised.set(change, (json = JSON.stringify(change.view)));
  return json;
}

const orderIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, description: 'An order id (`ord_…`); anything else is 404, as for an unknown order.' }),
});

const eventStreamHeaders = z.object({
  'last-event-id': z
    .string()
    .optional()
    .openapi({ description: 'Resume: the `id` of the last event received; the changes after it are sent first. A non-negative integer.' }),
});

const changeSchema = z
  .object({
    seq: z.int().openapi({ description: 'The change sequence number: 1 for the first state, one more per commit.' }),
    at: z.string().openapi({ description: 'When the change was committed (ISO 8601).' }),
    state: z.string(),
    status: pipelineStatusSchema,
    stages: orderViewSchema.shape.stages,
    failure: orderViewSchema.shape.failure,
  })
  .openapi('OrderChange');

const historyQuery = z.object({
  after: z.coerce.number().int().min(0).default(0).openapi({ description: 'Only changes with `seq` above this (a `next_after` from a previous page).' }),
  limit: z.coerce.number().int().min(1).max(HISTORY_PAGE).default(50),
});

const sseContent = {
  'text/event-stream': {
    schema: z.string().openapi({
      description: 'Server-Sent Events: `event: state`, `id: <seq>`, `data: <OrderView JSON>` per committed change; `: keep-alive` comments between.',
    }),
  },
};

const eventsRoute = createRoute({
  method: 'get',
  path: '/orders/{id}/events',
  operationId: 'streamOrderEvents',
  summary: "An order's live status (Server-Sent Events)",
  description:
    "Starts with the order's current state (or, with `Last-Event-ID`, the changes after it), then sends each committed change as it happens, and ends after a final state (`completed`, `failed`, `cancelled`). A parked order (`compensation_failed`) keeps its stream open, since an admin may retry it. Owner or admin.",
  security: bearerSecurity,
  request: { params: orderIdParam, headers: eventStreamHeaders },
  responses: apiResponses({
    200: { description: 'The event stream', content: sseContent },
    204: { description: 'Nothing left to send: resumed at or after the final state (EventSource clients stop reconnecting on a 204)' },
    ...problems('invalid_last_event_id', 'not_found', 'too_many_streams', 'streams_unavailable', 'shutting_down'),
  }),
});

const feedRoute = createRoute({
  method: 'get',
  path: '/events',
  operationId: 'streamOrdersFeed',
  summary: 'Changes of every order the caller may see (Server-Sent Events)',
  description:
    "Each committed change of the caller's orders (an admin's: every order) as `event: change` with `data: {order_id, seq, at, view}`, until the client disconnects or the service shuts down. No replay: load the list first (after connecting) and apply the changes newer than what it showed.",
  security: bearerSecurity,
  responses: apiResponses({
    200: { description: 'The event stream', content: sseContent },
    ...problems('too_many_streams', 'streams_unavailable', 'shutting_down'),
  }),
});

const historyRoute = createRoute({
  method: 'get',
  path: '/orders/{id}/history',
  operationId: 'getOrderHistory',
  summary: "An order's committed changes, oldest first",
  description: 'What the event stream replays from: each committed change with its sequence number, time, state, status and stage records. Owner or admin.',
  security: bearerSecurity,
  request: { params: orderIdParam, query: historyQuery },
  responses: apiResponses({
    200: json('One page of changes; `next_after` is null on the last page', z.object({ items: z.array(changeSchema), next_after: z.int().nullable() }).openapi('OrderHistory')),
    ...problems('validation_failed', 'not_found'),
  }),
});

export function orderEventsRoutes({ engine, streams = new OrderStreams({ engine, heartbeatMs: 15_000, maxStreams: 500, maxStreamsPerUser: 10 }) }: OrderEventsRoutesDeps) {
  const routes = openApiApp();

  /** The order if it exists and the caller may see it; otherwise 404, never revealing that it exists. */
  async function findVisible(id: string, user: AuthUser): Promise<OrderView> {
    const view = ORDER_ID_PATTERN.test(id) ? await engine.get(id) : null;
    if (!view || (user.role !== 'admin' && view.user_id !== user.id)) throw new OrderError('not_found', `Order ${id} not found.`);
    return view;
  }

  /** A place for one more stream, or the problem refusing it; a full or draining instance says when to come back. */
  function admit(c: Context): StreamTicket | Response {
    try {
      return streams.admit(c.get('user').id, c.get('tokenValidUntil'));
    } catch (err) {
      if (err instanceof OrderError && (err.code === 'shutting_down' || err.code === 'streams_unavailable')) {
        return problemResponse(c, problemFor(err.code, err.message), { 'Retry-After': '5' });
      }
      throw err;
    }
  }

  /** Every change after `afterSeq`, page by page. */
  async function changesAfter(orderId: string, afterSeq: number, each: (change: OrderChange) => void): Promise<void> {
    for (let after = afterSeq; ; ) {
      const page = await engine.history(orderId, after, HISTORY_PAGE);
      for (const change of page) each(change);
      if (page.length < HISTORY_PAGE) return;
      after = page.at(-1)!.seq;
    }
  }

  routes.openapi(eventsRoute, async (c) => {
    const { id } = c.req.valid('param');
    const resumeFrom = parseLastEventId(c.req.header('Last-Event-ID'));
    await findVisible(id, c.get('user'));
    const ticket = admit(c);
    if (ticket instanceof Response) return ticket;
    let sent: number;
    try {
      sent = await streamOrder(ticket, id, resumeFrom);
    } catch (err) {
      ticket.writer.close();
      throw err;
    }
    if (sent === 0 && ticket.writer.isClosed) return c.body(null, 204);
    return sseResponse(ticket);
  });

  /**
   * Subscribes first and buffers, then reads what is stored (the current state, or the changes
   * after `resumeFrom`), then sends the buffer: every change is sent once, in `seq` order, none
   * lost between the read and the subscription. A gap in what arrives live (a change another
   * instance committed and this one was not told of) is filled from the history.
   */
  async function streamOrder({ writer, watch }: StreamTicket, orderId: string, resumeFrom: number | null): Promise<number> {
    let lastSeq = resumeFrom ?? 0;
    let sent = 0;
    let buffer: OrderChange[] | null = [];
    let chain = Promise.resolve();
    const send = (change: OrderChange) => {
      if (writer.isClosed || change.seq <= lastSeq) return;
      writer.event('state', viewJson(change), change.seq);
      lastSeq = change.seq;
      sent++;
      if (FINAL.has(change.view.status)) writer.close();
    };
    const deliver = (change: OrderChange) => {
      chain = chain
        .then(async () => {
          if (writer.isClosed || change.seq <= lastSeq) return;
          if (change.seq > lastSeq + 1) await changesAfter(orderId, lastSeq, (c) => c.seq < change.seq && send(c));
          send(change);
        })
        .catch(() => writer.close()); // the client reconnects with Last-Event-ID
    };
    watch(orderId, (change) => (buffer ? buffer.push(change) : deliver(change)));

    const current = await engine.get(orderId);
    if (resumeFrom === null) {
      let latest: OrderChange | undefined;
      await changesAfter(orderId, 0, (change) => (latest = change));
      if (latest) send(latest);
      else if (current) {
        writer.event('state', JSON.stringify(current)); // no history kept: the state alone, without an id
        sent++;
      }
    } else {
      await changesAfter(orderId, resumeFrom, send);
    }
    const pending = buffer;
    buffer = null;
    for (const change of pending) deliver(change);
    await chain;
    // Resumed at or past the final state: nothing more will ever be sent.
    if (current && FINAL.has(current.status)) writer.close();
    return sent;
  }

  routes.openapi(feedRoute, async (c) => {
    const user = c.get('user');
    const ticket = admit(c);
    if (ticket instanceof Response) return ticket;
    ticket.watch(null, (change) => {
      if (user.role === 'admin' || change.view.user_id === user.id) {
        ticket.writer.event('change', `{"order_id":${JSON.stringify(change.order_id)},"seq":${change.seq},"at":${JSON.stringify(change.at)},"view":${viewJson(change)}}`);
      }
    });
    return sseResponse(ticket);
  });

  routes.openapi(historyRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { after, limit } = c.req.valid('query');
    await findVisible(id, c.get('user'));
    const changes = await engine.history(id, after, limit + 1);
    const page = changes.slice(0, limit).map(({ seq, at, view }) => ({ seq, at, state: view.state, status: view.status, stages: view.stages, failure: view.failure }));
    return c.json({ items: page, next_after: changes.length > limit ? page.at(-1)!.seq : null }, 200);
  });

  return routes;
}

/** `Last-Event-ID`: absent, or the `seq` of a change (a non-negative integer). */
function parseLastEventId(value: string | undefined): number | null {
  if (value === undefined) return null;
  const trimmed = value.trim();
  if (!/^\d{1,15}$/.test(trimmed)) {
    throw new OrderError('invalid_last_event_id', 'Last-Event-ID must be the id of an event of this stream: a non-negative integer.');
  }
  return Number(trimmed);
}

function sseResponse({ writer }: StreamTicket): Response {
  return new Response(writer.body, {
    status: 200,
    headers: {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // nginx and similar proxies would otherwise hold events back in their buffers.
      'X-Accel-Buffering': 'no',
    },
  });
}
