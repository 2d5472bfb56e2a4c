import { fromPromise } from 'xstate';
import { OrderError, toStepError } from '../domain/errors.js';
import type { Order, Payment, StageName } from '../domain/order.js';
import type { Carrier } from '../gateways/carrier.gateway.js';
import type { Notifier } from '../gateways/notifier.gateway.js';
import type { PaymentGateway } from '../gateways/payment.gateway.js';
import type { Logger } from '../logger.js';
import type {
  CancelOrderInput,
  CapturePaymentInput,
  PlaceOrderInput,
  RefundPaymentInput,
  SendNotificationsInput,
  ShipOrderInput,
  StockInput,
} from '../machines/order.machine.js';
import { runFenced, type Fence } from '../store/fence.js';
import type { CatalogStore, Inventory, OrderRecordStore } from '../store/store.ports.js';

export interface OrderActorDeps {
  catalog: CatalogStore;
  orders: OrderRecordStore;
  inventory: Inventory;
  payments: PaymentGateway;
  carrier: Carrier;
  notifier: Notifier;
  logger: Logger;
  /**
   * The fence a step's effects are written under, found by its order actor's system (the
   * engine's `fenceOf`). Stores shared by several instances refuse a stale one.
   */
  fenceOf?: (system: unknown) => Fence | undefined;
}

/**
 * The real implementations of the order machine's actors, wired with
 * `orderMachine.provide({ actors: createOrderActors(deps) })`. Each step sits next to
 * its undo. Every one is idempotent by (order id, step): a snapshot restored after a
 * crash runs the step that was in flight again, and that must not reserve, charge,
 * ship or notify twice.
 */
export function createOrderActors(deps: OrderActorDeps) {
  const { logger } = deps;

  /** Logs a step's outcome with its order and stage; compensations are logged as such. */
  function step<I extends { order_id: string }, O>(stage: StageName, run: (input: I, signal: AbortSignal) => Promise<O>) {
    const compensation = stage === 'refund' || stage === 'release' || stage === 'cancellation';
    return fromPromise<O, I>(async ({ input, signal, system }) => {
      const fields = { order_id: input.order_id, stage, compensation };
      const debug = logger.isLevelEnabled('debug');
      if (debug) logger.debug(fields, 'stage started');
      // Bound now, when the step starts: a step outliving its actor keeps quoting that actor's epoch.
      const fence = deps.fenceOf?.(system);
      try {
        const output = await runFenced(fence, () => run(input, signal));
        if (compensation) logger.info(fields, 'compensation done');
        else if (debug) logger.debug(fields, 'stage succeeded');
        return output;
      } catch (err) {
        const { code, message } = toStepError(err);
        if (!signal.aborted) logger.warn({ ...fields, code, err: message }, compensation ? 'compensation failed' : 'stage failed');
        throw err;
      }
    });
  }

  return {
    // --- placement, undone by cancelOrder -------------------------------------------
    placeOrder: step<PlaceOrderInput, Order>('placement', async (input) => {
      const skus = input.request.items.map((i) => i.sku);
      const products = await deps.catalog.findProducts(skus);
      const unknown = skus.filter((sku) => !products.has(sku));
      if (unknown.length > 0) {
        throw new OrderError('unknown_sku', `unknown SKU: ${unknown.join(', ')}`, { details: { skus: unknown } });
      }
      // Prices come from the catalog, never from the client.
      const items = input.request.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unit_price_cents: products.get(i.sku)!.price_cents }));
      const order: Order = {
        id: input.order_id,
        user_id: input.user_id,
        items,
        total_cents: items.reduce((sum, i) => sum + i.quantity * i.unit_price_cents, 0),
        currency: 'USD',
        created_at: input.created_at,
      };
      return deps.orders.place(order, input.request.shipping);
    }),
    cancelOrder: step<CancelOrderInput, void>('cancellation', async (input) => {
      await deps.orders.close(input.order_id, input.reason, input);
    }),

    // --- reservation (on the worker pool), undone by releaseStock ---------------------
    reserveStock: step<StockInput, Awaited<ReturnType<Inventory['reserve']>>>('reservation', (input) =>
      deps.inventory.reserve(input.order_id, input.items),
    ),
    releaseStock: step<StockInput, Awaited<ReturnType<Inventory['release']>>>('release', (input) => deps.inventory.release(input.order_id)),

    // --- payment, undone by refundPayment ---------------------------------------------
    capturePayment: step<CapturePaymentInput, Awaited<ReturnType<PaymentGateway['capture']>>>('payment', (input, signal) =>
      deps.payments.capture(
        {
          order_id: input.order_id,
          amount_cents: input.amount_cents,
          currency: input.currency,
          token: input.token,
          idempotency_key: `${input.order_id}:capture`,
        },
        signal,
      ),
    ),
    refundPayment: step<RefundPaymentInput, Payment | null>('refund', (input) =>
      deps.payments.refund({ order_id: input.order_id, idempotency_key: `${input.order_id}:refund` }),
    ),

    // --- fulfilment: ship, then the reserved stock becomes sold (no undo: shipped is shipped)
    shipOrder: step<ShipOrderInput, Awaited<ReturnType<Carrier['createShipment']>>>('fulfillment', async (input) => {
      const shipment = await deps.carrier.createShipment({
        order_id: input.order_id,
        items: input.items,
        shipping: input.shipping,
        idempotency_key: `${input.order_id}:ship`,
      });
      await deps.inventory.sell(input.order_id); // sold stock and `shipped` commit with the shipment
      return shipment;
    }),

    // --- notification (failure is recorded, never undoes the shipped order) -----------
    sendNotifications: step<SendNotificationsInput, Awaited<ReturnType<Notifier['send']>>[]>('notification', async (input) => {
      const base = { order_id: input.order_id, recipient: input.user_id };
      const sent = [];
      sent.push(
        await deps.notifier.send({
          ...base,
          kind: 'order_confirmation',
          idempotency_key: `${input.order_id}:notify:order_confirmation`,
          payload: { total_cents: input.order.total_cents, currency: input.order.currency, items: input.order.items },
        }),
      );
      if (input.payment) {
        sent.push(
          await deps.notifier.send({
            ...base,
            kind: 'payment_receipt',
            idempotency_key: `${input.order_id}:notify:payment_receipt`,
            payload: { payment_id: input.payment.payment_id, amount_cents: input.payment.amount_cents },
          }),
        );
      }
      if (input.shipment) {
        sent.push(
          await deps.notifier.send({
            ...base,
            kind: 'shipment',
            idempotency_key: `${input.order_id}:notify:shipment`,
            payload: { shipment_id: input.shipment.shipment_id, tracking_number: input.shipment.tracking_number },
          }),
        );
      }
      return sent;
    }),
  };
}

export type OrderActors = ReturnType<typeof createOrderActors>;
