import { setTimeout as sleep } from 'node:timers/promises';
import { OrderError } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import type { Payment } from '../domain/order.js';
import type { ChargeRecord, PaymentLedger } from '../store/store.ports.js';

export interface CaptureRequest {
  order_id: string;
  amount_cents: number;
  currency: string;
  token: string;
  /** Same key, same charge: a retried or re-run capture never charges twice. */
  idempotency_key: string;
}

export interface RefundRequest {
  order_id: string;
  idempotency_key: string;
}

/** A card payment provider. Failures are `OrderError`s: `payment_declined` (terminal) or `payment_unavailable` (transient). */
export interface PaymentGateway {
  capture(request: CaptureRequest, signal?: AbortSignal): Promise<Payment>;
  /** Refunds the order's charge in full; voids the order if nothing was captured, so a late capture is refused. */
  refund(request: RefundRequest): Promise<Payment>;
}

export interface SimulatedGatewayOptions {
  /** How long `tok_slow` takes to approve. */
  slowMs: number;
}

/**
 * The built-in gateway, for demos and tests. Card tokens:
 * `tok_visa` approves; `tok_declined`, `tok_insufficient_funds` and unknown tokens decline;
 * `tok_gateway_error` is always unavailable (transient); `tok_slow` approves after `slowMs`.
 */
export class SimulatedPaymentGateway implements PaymentGateway {
  constructor(
    private readonly ledger: PaymentLedger,
    private readonly options: SimulatedGatewayOptions,
  ) {}

  async capture(request: CaptureRequest, signal?: AbortSignal): Promise<Payment> {
    const existing = await this.ledger.findCharge(request.order_id);
    if (existing) return settle(existing);

    switch (request.token) {
      case 'tok_gateway_error':
        throw new OrderError('payment_unavailable', 'the payment gateway is unavailable');
      case 'tok_slow':
        await sleep(this.options.slowMs, undefined, { signal });
        break;
      case 'tok_visa':
        break;
      default: {
        const declineCode = request.token === 'tok_insufficient_funds' ? 'insufficient_funds' : request.token === 'tok_declined' ? 'card_declined' : 'invalid_token';
        const declined = await this.ledger.recordCharge({
          payment_id: newId('ch'),
          order_id: request.order_id,
          idempotency_key: request.idempotency_key,
          status: 'declined',
          amount_cents: request.amount_cents,
          refunded_cents: 0,
          decline_code: declineCode,
        });
        return settle(declined);
      }
    }
    const charge = await this.ledger.recordCharge({
      payment_id: newId('ch'),
      order_id: request.order_id,
      idempotency_key: request.idempotency_key,
      status: 'captured',
      amount_cents: request.amount_cents,
      refunded_cents: 0,
      decline_code: null,
    });
    return settle(charge);
  }

  async refund(request: RefundRequest): Promise<Payment> {
    return toPayment(await this.ledger.refundOrder(request.order_id, request.idempotency_key));
  }
}

/** What a stored charge means for the capture step. */
function settle(charge: ChargeRecord): Payment {
  switch (charge.status) {
    case 'declined':
      throw new OrderError('payment_declined', `the card was declined (${charge.decline_code ?? 'declined'})`, {
        details: { decline_code: charge.decline_code },
      });
    case 'voided':
    case 'refunded':
      throw new OrderError('order_cancelled', `payment for order ${charge.order_id} was voided before it was captured`);
    case 'captured':
      return toPayment(charge);
  }
}

function toPayment(charge: ChargeRecord): Payment {
  const { decline_code: _ignored, ...payment } = charge;
  return payment;
}
