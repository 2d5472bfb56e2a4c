import { STATUS_CODES } from 'node:http';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { OrderError, type ErrorCode } from '../domain/errors.js';

/** An RFC 9457 problem document, with our stable `code` and optional extensions. */
export interface Problem {
  type: string;
  title: string;
  status: ContentfulStatusCode;
  detail: string;
  code: ErrorCode;
  instance?: string;
  request_id?: string;
  errors?: Array<{ path: string; message: string }>;
  [extension: string]: unknown;
}

const STATUS: Record<ErrorCode, [ContentfulStatusCode, string]> = {
  validation_failed: [400, 'Request validation failed'],
  malformed_json: [400, 'Malformed JSON body'],
  unsupported_media_type: [415, 'Unsupported media type'],
  unauthorized: [401, 'Authentication required'],
  token_expired: [401, 'Token expired'],
  forbidden: [403, 'Forbidden'],
  not_found: [404, 'Not found'],
  payload_too_large: [413, 'Payload too large'],
  rate_limited: [429, 'Too many requests'],
  invalid_transition: [409, 'Invalid transition'],
  shutting_down: [503, 'Shutting down'],
  overloaded: [503, 'Too many orders in progress'],
  internal_error: [500, 'Internal server error'],
  compensation_failed: [502, 'Compensation failed'],
  idempotency_key_reused: [422, 'Idempotency key reused'],
  auth_unavailable: [503, 'Token keys unavailable'],
  not_ready: [503, 'Not ready'],
  invalid_last_event_id: [400, 'Invalid Last-Event-ID'],
  too_many_streams: [429, 'Too many open streams'],
  streams_unavailable: [503, 'No stream capacity'],
  malformed_request: [400, 'Malformed HTTP request'],
  missing_host: [400, 'Host header missing'],
  invalid_request_target: [400, 'Invalid request target'],
  headers_too_large: [431, 'Request header fields too large'],
  request_timeout: [408, 'Request timeout'],
  expectation_failed: [417, 'Expectation failed'],
  // How a failed order answers the synchronous endpoint.
  insufficient_stock: [409, 'Insufficient stock'],
  payment_declined: [402, 'Payment declined'],
  payment_unavailable: [503, 'Payment unavailable'],
  fulfillment_failed: [422, 'Fulfillment failed'],
  unknown_sku: [422, 'Unknown SKU'],
  pipeline_timeout: [504, 'Order timed out'],
  order_cancelled: [409, 'Order cancelled'],
  reservation_released: [409, 'Reservation released'],
  carrier_unavailable: [503, 'Carrier unavailable'],
  notification_failed: [503, 'Notification failed'],
  worker_crashed: [503, 'Inventory unavailable'],
  storage_busy: [503, 'Storage busy'],
  step_failed: [503, 'Order step failed'],
};

/** Every code the API answers with, and its status. */
export const PROBLEM_STATUS: Readonly<Record<ErrorCode, ContentfulStatusCode>> = Object.fromEntries(
  Object.entries(STATUS).map(([code, [status]]) => [code, status]),
) as Record<ErrorCode, ContentfulStatusCode>;

/** `urn:` rather than a made-up web address: stable, and says it is not a page to fetch. */
export function problemType(code: ErrorCode): string {
  return `urn:ordersaga:problem:${code.replaceAll('_', '-')}`;
}

export function problemFor(code: ErrorCode, detail: string, extensions: Record<string, unknown> = {}): Problem {
  const [status, title] = STATUS[code];
  return { type: problemType(code), title, status, detail, code, ...extensions };
}

/**
 * Maps any error to a problem: the one place that decides what a failure looks like on
 * the wire. Unknown errors become a bare 500 with no message or stack from the error.
 */
export function toProblem(err: unknown): Problem {
  if (err instanceof OrderError) {
    const errors = err.details?.errors as Problem['errors'] | undefined;
    return problemFor(err.code, err.message, errors ? { errors } : {});
  }
  if (err instanceof HTTPException) {
    const code: ErrorCode =
      err.status === 413 ? 'payload_too_large' : err.status === 401 ? 'unauthorized' : err.status === 404 ? 'not_found' : err.status === 400 ? 'validation_failed' : 'internal_error';
    return problemFor(code, code === 'internal_error' ? 'unexpected error' : err.message || STATUS[code][1]);
  }
  return problemFor('internal_error', 'An unexpected error occurred. It has been logged with the request id.');
}

/** The body as sent: never more than the problem's own members (no stack, no error message it was not given). */
export function problemJson(problem: Problem): string {
  return JSON.stringify(problem);
}

export function problemResponse(c: Context, problem: Problem, headers: Record<string, string> = {}): Response {
  const body: Problem = { ...problem, instance: c.req.path };
  const requestId = c.get('requestId') as string | undefined;
  if (requestId) body.request_id = requestId;
  return c.json(body, problem.status, { 'Content-Type': 'application/problem+json', ...headers });
}

/** A problem as a web `Response`, for code that runs before a Hono context exists (the server's request errors). */
export function problemFetchResponse(problem: Problem, headers: Record<string, string> = {}): Response {
  return new Response(problemJson(problem), {
    status: problem.status,
    headers: { 'Content-Type': 'application/problem+json', 'X-Content-Type-Options': 'nosniff', ...headers },
  });
}

/**
 * A complete HTTP/1.1 response carrying the problem, ending with `Connection: close`, for writing
 * straight to a socket when Node's parser refused the request and there is no response object.
 */
export function problemHttpMessage(problem: Problem, headers: Record<string, string> = {}): string {
  const body = problemJson(problem);
  const lines = [
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? problem.title}`,
    'Content-Type: application/problem+json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'X-Content-Type-Options: nosniff',
    'Cache-Control: no-store',
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
