import type { StepError } from './errors.js';

/** What a client asks for. Prices are never taken from the client. */
export interface OrderRequest {
  items: OrderItemRequest[];
  payment: { token: string };
  shipping: ShippingAddress;
}

export interface OrderItemRequest {
  sku: string;
  quantity: number;
}

export interface ShippingAddress {
  name: string;
  line1: string;
  city: string;
  postal_code: string;
  /** ISO 3166-1 alpha-2, upper case. */
  country: string;
}

export interface OrderLine {
  sku: string;
  quantity: number;
  unit_price_cents: number;
}

/** The placed order: the request priced from the catalog. */
export interface Order {
  id: string;
  user_id: string;
  items: OrderLine[];
  total_cents: number;
  currency: string;
  created_at: string;
}

export type ReservationStatus = 'reserved' | 'released' | 'committed';

export interface Reservation {
  order_id: string;
  status: ReservationStatus;
  items: OrderItemRequest[];
}

export type PaymentStatus = 'captured' | 'refunded' | 'declined' | 'voided';

export interface Payment {
  payment_id: string;
  order_id: string;
  status: PaymentStatus;
  amount_cents: number;
  refunded_cents: number;
}

export interface Shipment {
  shipment_id: string;
  order_id: string;
  carrier: string;
  tracking_number: string;
  country: string;
}

export type NotificationKind = 'order_confirmation' | 'payment_receipt' | 'shipment';

export interface Notification {
  notification_id: string;
  order_id: string;
  kind: NotificationKind;
  recipient: string;
  created_at: string;
}

/** Forward stages first, then the compensations in the order they run. */
export const STAGE_NAMES = [
  'placement',
  'reservation',
  'payment',
  'fulfillment',
  'notification',
  'refund',
  'release',
  'cancellation',
] as const;

export type StageName = (typeof STAGE_NAMES)[number];

export type StageStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'compensated' | 'skipped';

export interface StageRecord {
  name: StageName;
  status: StageStatus;
  started_at: string | null;
  ended_at: string | null;
  attempts: number;
  error: StepError | null;
}

/** How a stage retries transient failures; kept in each order so a restart keeps the policy it started with. */
export interface RetryPolicy {
  max_attempts: number;
  base_ms: number;
  max_delay_ms: number;
}

/** The stage and error that sent the order into compensation. */
export interface OrderFailure {
  stage: StageName;
  code: StepError['code'];
  message: string;
}

/** The pipeline outcome as the API reports it. */
export const PIPELINE_STATUSES = ['processing', 'completed', 'failed', 'cancelled', 'compensation_failed'] as const;
export type PipelineStatus = (typeof PIPELINE_STATUSES)[number];
