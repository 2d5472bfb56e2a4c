/**
 * One error type for the whole service, discriminated by a stable string `code`
 * (jose's `ERR_JWT_EXPIRED` style). Codes, never messages or classes, are what
 * guards, retries and the HTTP mapping branch on: classes do not survive a
 * worker-thread boundary or a persisted snapshot, strings do.
 */
export const STEP_ERROR_CODES = [
  'unknown_sku',
  'insufficient_stock',
  'payment_declined',
  'payment_unavailable',
  'fulfillment_failed',
  'carrier_unavailable',
  'notification_failed',
  'reservation_released',
  'order_cancelled',
  'pipeline_timeout',
  'worker_crashed',
  'storage_busy',
  'step_failed',
] as const;

/** What a step can fail with: kept in an order's context and shown by the API. */
export type StepErrorCode = (typeof STEP_ERROR_CODES)[number];

export type ApiErrorCode =
  | 'validation_failed'
  | 'malformed_json'
  | 'unsupported_media_type'
  | 'unauthorized'
  | 'token_expired'
  | 'forbidden'
  | 'not_found'
  | 'payload_too_large'
  | 'rate_limited'
  | 'invalid_transition'
  | 'compensation_failed'
  | 'shutting_down'
  | 'overloaded'
  | 'idempotency_key_reused'
  | 'auth_unavailable'
  | 'not_ready'
  // Event streams (src/http/order-events.routes.ts).
  | 'invalid_last_event_id'
  | 'too_many_streams'
  | 'streams_unavailable'
  // Refused by the HTTP server before any route runs (src/http/server.ts).
  | 'malformed_request'
  | 'missing_host'
  | 'invalid_request_target'
  | 'headers_too_large'
  | 'request_timeout'
  | 'expectation_failed'
  | 'internal_error';

export type ErrorCode = StepErrorCode | ApiErrorCode;

/** Failures worth trying again: the same call may succeed a moment later. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'payment_unavailable',
  'carrier_unavailable',
  'notification_failed',
  'worker_crashed',
  'storage_busy',
  'step_failed',
]);

export function isTransientCode(code: string): boolean {
  return TRANSIENT_CODES.has(code);
}

export class OrderError extends Error {
  override readonly name = 'OrderError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/** The plain-JSON form of a failure, as kept in the machine's context and shown by the API. */
export interface StepError {
  code: StepErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

const STEP_CODES: ReadonlySet<string> = new Set(STEP_ERROR_CODES);

/**
 * Reduces whatever a step threw to `{ code, message }`. Unknown errors become
 * `step_failed` (transient): a bug or an outage should be retried, then
 * compensated, never silently treated as success.
 */
export function toStepError(err: unknown): StepError {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' && STEP_CODES.has(err.code)) {
    const message = 'message' in err && typeof err.message === 'string' ? err.message : err.code;
    const details = 'details' in err && isPlainRecord(err.details) ? err.details : undefined;
    return details ? { code: err.code as StepErrorCode, message, details } : { code: err.code as StepErrorCode, message };
  }
  // Stores map their own contention to `storage_busy` (see store.ports.ts); anything else is a failed step.
  return { code: 'step_failed', message: err instanceof Error ? err.message : String(err) };
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
