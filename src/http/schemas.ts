import type { Context } from 'hono';
import { z } from 'zod';
import { OrderError } from '../domain/errors.js';
import { ORDER_ID_PATTERN } from '../domain/ids.js';
import { PIPELINE_STATUSES } from '../domain/order.js';
import { readBody } from './body.middleware.js';
import { IDEMPOTENCY_KEY_PATTERN } from './idempotency.js';

const text = (max: number) => z.string().trim().min(1).max(max);
export const skuSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-", starting with a letter or digit');

export const orderRequestSchema = z.strictObject({
  items: z
    .array(z.strictObject({ sku: skuSchema, quantity: z.int().min(1).max(1000) }))
    .min(1)
    .max(100)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      items.forEach((item, i) => {
        if (seen.has(item.sku)) ctx.addIssue({ code: 'custom', path: [i, 'sku'], message: `duplicate SKU ${item.sku}; send one line per SKU` });
        seen.add(item.sku);
      });
    }),
  payment: z.strictObject({ token: text(128) }),
  shipping: z.strictObject({
    name: text(200),
    line1: text(200),
    city: text(100),
    postal_code: text(32),
    country: z.string().regex(/^[A-Z]{2}$/, 'an ISO 3166-1 alpha-2 code in upper case, e.g. "DE"'),
  }),
  user_id: text(128).optional(),
});
export type OrderRequestBody = z.infer<typeof orderRequestSchema>;

export const productSchema = z.strictObject({
  name: text(200),
  price_cents: z.int().min(0).max(100_000_000),
  available: z.int().min(0).max(1_000_000_000),
});

export const listQuerySchema = z.strictObject({
  status: z.enum(PIPELINE_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().regex(/^ord_[0-9A-Z]{26}$/, 'a cursor from a previous page').optional(),
});

/** `/orders/{id}`: any other text is answered 404, like an order that does not exist. */
export const orderIdParams = z.object({ id: z.string().regex(ORDER_ID_PATTERN).describe('An order id, `ord_` and a ULID.') });
/** `/inventory/{sku}`. */
export const skuParams = z.object({ sku: skuSchema });

/** The headers order creation reads (idempotency.ts checks the key against the same pattern). */
export const createOrderHeaders = z.object({
  'Idempotency-Key': z
    .string()
    .regex(IDEMPOTENCY_KEY_PATTERN)
    .optional()
    .describe('1–255 printable ASCII characters. The same caller, key and body get the first answer again, and no new order.'),
});

/** What the asynchronous create answers at once. */
export const acceptedOrderSchema = z.object({
  order_id: z.string(),
  status: z.enum(PIPELINE_STATUSES),
  status_url: z.string(),
});

/** A product as the API shows it. */
export const productViewSchema = z.object({
  sku: z.string(),
  name: z.string(),
  price_cents: z.int(),
  available: z.int(),
  reserved: z.int(),
  sold: z.int(),
});

/** Parses with a schema or throws `validation_failed` listing every problem by JSON Pointer path. */
export function validate<T>(schema: z.ZodType<T>, value: unknown, root = ''): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = result.error.issues.map((issue) => ({
    path: `${root}/${issue.path.map(String).join('/')}`.replace(/\/$/, '') || '/',
    message: issue.message,
  }));
  throw new OrderError('validation_failed', `The request is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, {
    details: { errors },
  });
}

/** The JSON body, or a clear 415/400: never a 500 for what a client sent. */
export async function readJson(c: Context): Promise<unknown> {
  const type = c.req.header('Content-Type') ?? '';
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type)) {
    throw new OrderError('unsupported_media_type', 'Send the body as JSON with "Content-Type: application/json".');
  }
  const raw = await readBody(c);
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new OrderError('malformed_json', `The body is not valid JSON: ${(err as Error).message}`);
  }
}
