import { createRoute, z } from '@hono/zod-openapi';
import type { AuditStore } from '../store/store.ports.js';
import { AUDITED_ROUTES } from './audit.middleware.js';
import { requireRole } from './auth.middleware.js';
import { apiResponses, bearerSecurity, json, openApiApp, problems } from './openapi.js';

export const AUDIT_ACTIONS = AUDITED_ROUTES.map((r) => r.action) as [string, ...string[]];

export const auditQuerySchema = z
  .strictObject({
    limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: 'Entries per page (1–100).', example: 20 }),
    cursor: z
      .string()
      .regex(/^aud_[0-9A-HJKMNP-TV-Z]{26}$/, 'a cursor from a previous page')
      .optional()
      .openapi({ description: "The previous page's `next_cursor`: entries older than it." }),
    action: z.enum(AUDIT_ACTIONS).optional().openapi({ description: 'Only this action.' }),
    actor: z.string().min(1).max(128).optional().openapi({ description: "Only this user's actions (the token's `sub`)." }),
  })
  .openapi('AuditQuery');

export const auditEntrySchema = z
  .object({
    id: z.string().openapi({ example: 'aud_01JD6Z5V0Q2W6YV7K3X0G8M4TA' }),
    at: z.string().openapi({ description: 'When the answer was known (server time, ISO 8601).' }),
    actor: z.string().openapi({ description: "The token's `sub`." }),
    role: z.string(),
    issuer: z.string().nullable().openapi({ description: "The token's `iss`, when it has one." }),
    action: z.enum(AUDIT_ACTIONS),
    target: z.string().openapi({ description: 'A SKU, an order id, or the user an order was placed for.' }),
    address: z.string().nullable().openapi({ description: 'The client address (see TRUST_PROXY).' }),
    request_id: z.string().nullable(),
    status: z.number().int().openapi({ description: 'The HTTP status answered.' }),
    code: z.string().nullable().openapi({ description: 'The problem code when the action was refused or failed.' }),
    details: z.record(z.string(), z.unknown()).nullable().openapi({ description: 'The request fields that matter; never a token.' }),
  })
  .openapi('AuditEntry');

export const auditPageSchema = z.object({ items: z.array(auditEntrySchema), next_cursor: z.string().nullable() }).openapi('AuditPage');

const listAudit = createRoute({
  method: 'get',
  path: '/',
  summary: 'The audit log: admin actions, newest first',
  description:
    'Every inventory change, compensation retry and order placed for another user, refused ones included: who, what, when, from which address, and how it ended. Admins only.',
  operationId: 'listAudit',
  tags: ['audit'],
  security: bearerSecurity,
  middleware: [requireRole('admin')] as const,
  request: { query: auditQuerySchema },
  responses: apiResponses({ 200: json('A page of entries, newest first.', auditPageSchema), ...problems('validation_failed', 'forbidden') }),
});

/** `/api/v1/audit`: the audit log, for admins. */
export function auditRoutes({ audit }: { audit: AuditStore }) {
  // A bad query is `validation_failed` with every problem by path, as the orders list answers it.
  const routes = openApiApp();

  routes.openapi(listAudit, async (c) => {
    const query = c.req.valid('query');
    const entries = await audit.list({
      limit: query.limit + 1,
      ...(query.cursor ? { before: query.cursor } : {}),
      ...(query.action ? { action: query.action } : {}),
      ...(query.actor ? { actor: query.actor } : {}),
    });
    const page = entries.slice(0, query.limit);
    return c.json({ items: page, next_cursor: entries.length > query.limit ? page.at(-1)!.id : null }, 200);
  });

  return routes;
}
