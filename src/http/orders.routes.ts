import { Hono, type Context } from 'hono';
import { OrderError, type ErrorCode } from '../domain/errors.js';
import { ORDER_ID_PATTERN } from '../domain/ids.js';
import type { OrderRequest } from '../domain/order.js';
import type { OrderEngine } from '../orders/order.engine.js';
import type { OrderView } from '../orders/order.view.js';
import { requireRole, type AuthUser } from './auth.middleware.js';
import type { Idempotent } from './idempotency.js';
import { problemFor, problemResponse } from './problem.js';
import { listQuerySchema, orderRequestSchema, readJson, validate } from './schemas.js';

export interface OrdersRoutesDeps {
  engine: OrderEngine;
  /** How long the synchronous endpoint waits for a final state. */
  syncWaitMs: number;
  idempotent: Idempotent;
}

const statusUrl = (orderId: string) => `/api/v1/pipeline/orders/${orderId}/status`;

/** `/api/v1/pipeline/orders…`: create (sync and async), status, cancel, list. */
export function ordersRoutes({ engine, syncWaitMs, idempotent }: OrdersRoutesDeps) {
  const routes = new Hono();

  async function readOrder(c: Context): Promise<{ user_id: string; request: OrderRequest }> {
    const body = validate(orderRequestSchema, await readJson(c));
    const user = c.var.user;
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

  routes.post('/orders', async (c) => {
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

  routes.post('/orders/async', async (c) => {
    const order = await readOrder(c);
    return idempotent(c, 'POST /orders/async', order, async (orderId, resume) => {
      const view = await startOrder(orderId, resume, order);
      const url = statusUrl(view.order_id);
      return c.json({ order_id: view.order_id, status: view.status, status_url: url }, 202, { Location: url });
    });
  });

  routes.get('/orders/:id/status', async (c) => c.json(await findVisible(c.req.param('id'), c.var.user)));

  routes.post('/orders/:id/cancel', async (c) => {
    const view = await findVisible(c.req.param('id'), c.var.user);
    if (view.status !== 'processing') {
      throw new OrderError('invalid_transition', `Order ${view.order_id} is ${view.status} and can no longer be cancelled.`);
    }
    return c.json(await engine.cancel(view.order_id), 202, { Location: statusUrl(view.order_id) });
  });

  routes.post('/orders/:id/retry', requireRole('admin'), async (c) => {
    const view = await findVisible(c.req.param('id'), c.var.user);
    return c.json(await engine.retry(view.order_id), 202, { Location: statusUrl(view.order_id) });
  });

  routes.get('/orders', async (c) => {
    const query = validate(listQuerySchema, c.req.query(), '?');
    const user = c.var.user;
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
