import { Hono, type Context } from 'hono';
import { OrderError, type ErrorCode } from '../domain/errors.js';
import { ORDER_ID_PATTERN } from '../domain/ids.js';
import type { OrderRequest } from '../domain/order.js';
import type { OrderRuntime } from '../actors/order-runtime.js';
import type { OrderContext } from '../machines/order.machine.js';
import type { SnapshotRecord, SnapshotStore } from '../store/ports.js';
import { requireRole, type AuthUser } from './auth.middleware.js';
import type { Idempotent } from './idempotency.js';
import { toPipelineResult } from './order-view.js';
import { problemFor, problemResponse } from './problem.js';
import { listQuerySchema, orderRequestSchema, readJson, validate } from './schemas.js';

export interface OrdersRoutesDeps {
  runtime: OrderRuntime;
  snapshots: SnapshotStore;
  /** How long the synchronous endpoint waits for a final state. */
  syncWaitMs: number;
  idempotent: Idempotent;
}

const statusUrl = (orderId: string) => `/api/v1/pipeline/orders/${orderId}/status`;

/** `/api/v1/pipeline/orders…`: create (sync and async), status, cancel, list. */
export function ordersRoutes({ runtime, snapshots, syncWaitMs, idempotent }: OrdersRoutesDeps) {
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
  async function startOrder(orderId: string, resume: boolean, order: { user_id: string; request: OrderRequest }): Promise<SnapshotRecord> {
    const existing = resume ? await runtime.get(orderId) : null;
    return existing ?? (await runtime.submit({ order_id: orderId, ...order }));
  }

  /** The order if it exists and the caller may see it; otherwise 404, never revealing that it exists. */
  async function findVisible(id: string, user: AuthUser): Promise<SnapshotRecord> {
    const record = ORDER_ID_PATTERN.test(id) ? await runtime.get(id) : null;
    if (!record || (user.role !== 'admin' && record.user_id !== user.id)) {
      throw new OrderError('not_found', `Order ${id} not found.`);
    }
    return record;
  }

  routes.post('/orders', async (c) => {
    const order = await readOrder(c);
    return idempotent(c, 'POST /orders', order, async (orderId, resume) => {
      await startOrder(orderId, resume, order);
      const { settled, record, context } = await runtime.waitForSettled(orderId, syncWaitMs);
      return syncAnswer(c, settled, record, context);
    });
  });

  function syncAnswer(c: Context, settled: boolean, record: SnapshotRecord, context?: OrderContext): Response {
    const result = toPipelineResult(record, context);
    const location = { Location: statusUrl(record.order_id) };
    if (!settled) return c.json(result, 202, location);
    if (record.status === 'completed') return c.json(result, 201, location);
    const code: ErrorCode =
      record.status === 'cancelled' ? 'order_cancelled' : record.status === 'compensation_failed' ? 'compensation_failed' : (result.failure?.code ?? 'step_failed');
    const detail = result.failure ? `Order ${record.order_id} ${record.status} at ${result.failure.stage}: ${result.failure.message}` : `Order ${record.order_id} ${record.status}.`;
    return problemResponse(c, problemFor(code, detail, { order_id: record.order_id, order: result }), location);
  }

  routes.post('/orders/async', async (c) => {
    const order = await readOrder(c);
    return idempotent(c, 'POST /orders/async', order, async (orderId, resume) => {
      const record = await startOrder(orderId, resume, order);
      const url = statusUrl(record.order_id);
      return c.json({ order_id: record.order_id, status: record.status, status_url: url }, 202, { Location: url });
    });
  });

  routes.get('/orders/:id/status', async (c) => {
    const record = await findVisible(c.req.param('id'), c.var.user);
    return c.json(toPipelineResult(record));
  });

  routes.post('/orders/:id/cancel', async (c) => {
    const record = await findVisible(c.req.param('id'), c.var.user);
    if (record.status !== 'processing') {
      throw new OrderError('invalid_transition', `Order ${record.order_id} is ${record.status} and can no longer be cancelled.`);
    }
    const updated = await runtime.cancel(record.order_id);
    return c.json(toPipelineResult(updated), 202, { Location: statusUrl(record.order_id) });
  });

  routes.post('/orders/:id/retry', requireRole('admin'), async (c) => {
    const record = await findVisible(c.req.param('id'), c.var.user);
    const updated = await runtime.retry(record.order_id);
    return c.json(toPipelineResult(updated), 202, { Location: statusUrl(record.order_id) });
  });

  routes.get('/orders', async (c) => {
    const query = validate(listQuerySchema, c.req.query(), '?');
    const user = c.var.user;
    const records = await snapshots.list({
      limit: query.limit + 1,
      ...(user.role === 'admin' ? {} : { user_id: user.id }),
      ...(query.status ? { status: query.status } : {}),
      ...(query.cursor ? { before: query.cursor } : {}),
    });
    const page = records.slice(0, query.limit);
    return c.json({
      items: page.map((r) => toPipelineResult(r)),
      next_cursor: records.length > query.limit ? page.at(-1)!.order_id : null,
    });
  });

  return routes;
}
