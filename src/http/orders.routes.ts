import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { OrderError, type ErrorCode } from '../domain/errors.js';
import { ORDER_ID_PATTERN } from '../domain/ids.js';
import type { OrderRequest } from '../domain/order.js';
import type { OrderEngine } from '../orders/order.engine.js';
import type { OrderView } from '../orders/order.view.js';
import { requireRole, type AuthUser } from './auth.middleware.js';
import type { Idempotent } from './idempotency.js';
import { apiResponses, bearerSecurity, documented, HEADERS, json, ORDER_OUTCOME_CODES, OrderViewDoc, problems, withHeaders } from './openapi.js';
import { problemFor, problemResponse } from './problem.js';
import { acceptedOrderSchema, createOrderHeaders, listQuerySchema, orderIdParams, orderRequestSchema, readJson, validate } from './schemas.js';

export interface OrdersRoutesDeps {
  engine: OrderEngine;
  /** How long the synchronous endpoint waits for a final state. */
  syncWaitMs: number;
  idempotent: Idempotent;
}

const statusUrl = (orderId: string) => `/api/v1/pipeline/orders/${orderId}/status`;

const orderBody = { content: { 'application/json': { schema: orderRequestSchema } }, required: true };
/** Refusals of what a create request sends, before any order exists. */
const CREATE_REFUSALS: ErrorCode[] = ['validation_failed', 'malformed_json', 'unsupported_media_type', 'forbidden', 'idempotency_key_reused', 'overloaded', 'shutting_down'];
const created = { ...HEADERS.location, ...HEADERS.idempotentReplayed };
const optionalLocation = { Location: { ...HEADERS.location.Location, required: false } };

const createSync = createRoute({
  method: 'post',
  path: '/orders',
  operationId: 'placeOrder',
  tags: ['orders'],
  summary: 'Place an order and wait for its result',
  description: 'Creates the order and waits up to `SYNC_WAIT_MS` for a final state: `201` completed, a problem for a failed, cancelled or parked order (it carries `order_id` and `order`), `202` if it is still running.',
  security: bearerSecurity,
  request: { headers: createOrderHeaders, body: orderBody },
  responses: apiResponses(
    [
      {
        201: json('Completed.', OrderViewDoc, created),
        202: json('Still running when `SYNC_WAIT_MS` passed; poll `Location`.', OrderViewDoc, created),
      },
      withHeaders(problems(...ORDER_OUTCOME_CODES), { ...optionalLocation, ...HEADERS.idempotentReplayed }),
      problems(...CREATE_REFUSALS),
    ],
    { changes: true },
  ),
});

const createAsync = createRoute({
  method: 'post',
  path: '/orders/async',
  operationId: 'placeOrderAsync',
  tags: ['orders'],
  summary: 'Place an order without waiting',
  security: bearerSecurity,
  request: { headers: createOrderHeaders, body: orderBody },
  responses: apiResponses({ 202: json('Accepted; poll `status_url`.', acceptedOrderSchema, created), ...problems(...CREATE_REFUSALS) }, { changes: true }),
});

const getStatus = createRoute({
  method: 'get',
  path: '/orders/{id}/status',
  operationId: 'getOrderStatus',
  tags: ['orders'],
  summary: "An order's pipeline result",
  description: 'The owner or an admin; anyone else gets `404`, as for an order that does not exist.',
  security: bearerSecurity,
  request: { params: orderIdParams },
  responses: apiResponses({ 200: json('The committed view.', OrderViewDoc), ...problems('not_found') }),
});

const cancelOrder = createRoute({
  method: 'post',
  path: '/orders/{id}/cancel',
  operationId: 'cancelOrder',
  tags: ['orders'],
  summary: 'Cancel an order until it ships',
  security: bearerSecurity,
  request: { params: orderIdParams },
  responses: apiResponses({ 202: json('CANCEL sent; the committed result.', OrderViewDoc, HEADERS.location), ...problems('not_found', 'invalid_transition') }, { changes: true }),
});

const retryOrder = createRoute({
  method: 'post',
  path: '/orders/{id}/retry',
  operationId: 'retryOrder',
  tags: ['orders'],
  summary: 'Resume an order parked in compensation_failed (admin)',
  security: bearerSecurity,
  request: { params: orderIdParams },
  responses: apiResponses({ 202: json('Resumed; the committed result.', OrderViewDoc, HEADERS.location), ...problems('forbidden', 'not_found', 'invalid_transition') }, { changes: true }),
});

const listOrders = createRoute({
  method: 'get',
  path: '/orders',
  operationId: 'listOrders',
  tags: ['orders'],
  summary: 'Orders, newest first (a user sees their own, an admin all)',
  security: bearerSecurity,
  request: { query: listQuerySchema },
  responses: apiResponses({
    200: json('A page; pass `next_cursor` as `cursor` for the next.', z.object({ items: z.array(OrderViewDoc), next_cursor: z.string().nullable() })),
    ...problems('validation_failed'),
  }),
});

/** `/api/v1/pipeline/orders…`: create (sync and async), status, cancel, retry, list. */
export function ordersRoutes({ engine, syncWaitMs, idempotent }: OrdersRoutesDeps): OpenAPIHono {
  const routes = new OpenAPIHono();

  async function readOrder(c: Context): Promise<{ user_id: string; request: OrderRequest }> {
    const body = validate(orderRequestSchema, await readJson(c));
    const user = c.get('user');
    const userId = body.user_id ?? user.id;
    if (userId !== user.id && user.role !== 'admin') {
      throw new OrderError('forbidden', 'Only an admin may place an order for another user.');
    }
    const { user_id: _ignored, ...request } = body;
    return { user_id: userId, request };
  }

  /** Starts the order under this id; when resuming a claimed key, first looks for the order it may have started. */
  async function startOrder(orderId: string, resume: boolean, order: { user_id: string; request: OrderRequest }): Promise<OrderView> {
    const existing = resume ? await engine.get(orderId) : null;
    return existing ?? (await engine.submit({ order_id: orderId, ...order }));
  }

  /** The order if it exists and the caller may see it; otherwise 404, never revealing that it exists. */
  async function findVisible(id: string, user: AuthUser): Promise<OrderView> {
    const view = ORDER_ID_PATTERN.test(id) ? await engine.get(id) : null;
    if (!view || (user.role !== 'admin' && view.user_id !== user.id)) {
      throw new OrderError('not_found', `Order ${id} not found.`);
    }
    return view;
  }

  documented(routes, createSync, async (c) => {
    const order = await readOrder(c);
    return idempotent(c, 'POST /orders', order, async (orderId, resume) => {
      await startOrder(orderId, resume, order);
      const { settled, view } = await engine.waitUntilSettled(orderId, syncWaitMs);
      return syncAnswer(c, settled, view);
    });
  });

  function syncAnswer(c: Context, settled: boolean, view: OrderView): Response {
    const location = { Location: statusUrl(view.order_id) };
    if (!settled) return c.json(view, 202, location);
    if (view.status === 'completed') return c.json(view, 201, location);
    const code: ErrorCode =
      view.status === 'cancelled'
        ? 'order_cancelled'
        : view.status === 'compensation_failed'
          ? 'compensation_failed'
          : (view.failure?.code ?? 'step_failed');
    const detail = view.failure ? `Order ${view.order_id} ${view.status} at ${view.failure.stage}: ${view.failure.message}` : `Order ${view.order_id} ${view.status}.`;
    return problemResponse(c, problemFor(code, detail, { order_id: view.order_id, order: view }), location);
  }

  documented(routes, createAsync, async (c) => {
    const order = await readOrder(c);
    return idempotent(c, 'POST /orders/async', order, async (orderId, resume) => {
      const view = await startOrder(orderId, resume, order);
      const url = statusUrl(view.order_id);
      return c.json({ order_id: view.order_id, status: view.status, status_url: url }, 202, { Location: url });
    });
  });

  documented(routes, getStatus, async (c) => c.json(await findVisible(c.req.param('id')!, c.get('user'))));

  documented(routes, cancelOrder, async (c) => {
    const view = await findVisible(c.req.param('id')!, c.get('user'));
    if (view.status !== 'processing') {
      throw new OrderError('invalid_transition', `Order ${view.order_id} is ${view.status} and can no longer be cancelled.`);
    }
    return c.json(await engine.cancel(view.order_id), 202, { Location: statusUrl(view.order_id) });
  });

  documented(routes, retryOrder, requireRole('admin'), async (c) => {
    const view = await findVisible(c.req.param('id')!, c.get('user'));
    return c.json(await engine.retry(view.order_id), 202, { Location: statusUrl(view.order_id) });
  });

  documented(routes, listOrders, async (c) => {
    const query = validate(listQuerySchema, c.req.query(), '?');
    const user = c.get('user');
    const views = await engine.list({
      limit: query.limit + 1,
      ...(user.role === 'admin' ? {} : { user_id: user.id }),
      ...(query.status ? { status: query.status } : {}),
      ...(query.cursor ? { before: query.cursor } : {}),
    });
    const page = views.slice(0, query.limit);
    return c.json({ items: page, next_cursor: views.length > query.limit ? page.at(-1)!.order_id : null });
  });

  return routes;
}
