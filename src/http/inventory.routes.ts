import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { OrderError } from '../domain/errors.js';
import type { CatalogStore, Product } from '../store/store.ports.js';
import { requireRole } from './auth.middleware.js';
import { apiResponses, bearerSecurity, documented, json, problems } from './openapi.js';
import { productSchema, productViewSchema, readJson, skuParams, skuSchema, validate } from './schemas.js';

const view = ({ sku, name, price_cents, available, reserved, sold }: Product) => ({ sku, name, price_cents, available, reserved, sold });

const listProducts = createRoute({
  method: 'get',
  path: '/',
  operationId: 'listProducts',
  tags: ['inventory'],
  summary: 'The catalog and its stock',
  security: bearerSecurity,
  responses: apiResponses({ 200: json('Every product.', z.object({ items: z.array(productViewSchema) })) }),
});

const getProduct = createRoute({
  method: 'get',
  path: '/{sku}',
  operationId: 'getProduct',
  tags: ['inventory'],
  summary: 'One product and its stock',
  security: bearerSecurity,
  request: { params: skuParams },
  responses: apiResponses({ 200: json('The product.', productViewSchema), ...problems('not_found') }),
});

const putProduct = createRoute({
  method: 'put',
  path: '/{sku}',
  operationId: 'putProduct',
  tags: ['inventory'],
  summary: 'Create or update a product (admin)',
  description: 'Setting `available` adds (or removes) stock; reserved and sold stock stay as they are.',
  security: bearerSecurity,
  request: { params: skuParams, body: { content: { 'application/json': { schema: productSchema } }, required: true } },
  responses: apiResponses(
    {
      200: json('Updated.', productViewSchema),
      201: json('Created.', productViewSchema),
      ...problems('validation_failed', 'malformed_json', 'unsupported_media_type', 'forbidden'),
    },
    { changes: true },
  ),
});

/** `/api/v1/inventory…`: the catalog and its stock. Anyone signed in reads; admins write. */
export function inventoryRoutes({ catalog }: { catalog: CatalogStore }): OpenAPIHono {
  const routes = new OpenAPIHono();

  documented(routes, listProducts, async (c) => c.json({ items: (await catalog.listProducts()).map(view) }));

  documented(routes, getProduct, async (c) => {
    const sku = c.req.param('sku')!;
    const product = skuSchema.safeParse(sku).success ? await catalog.getProduct(sku) : null;
    if (!product) throw new OrderError('not_found', `Product ${sku} not found.`);
    return c.json(view(product));
  });

  documented(routes, putProduct, requireRole('admin'), async (c) => {
    const sku = validate(skuSchema, c.req.param('sku'), '/sku');
    const body = validate(productSchema, await readJson(c));
    const { product, created } = await catalog.upsertProduct({ sku, ...body });
    return c.json(view(product), created ? 201 : 200);
  });

  return routes;
}
