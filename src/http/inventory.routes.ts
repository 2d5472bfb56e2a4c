import { Hono } from 'hono';
import { OrderError } from '../domain/errors.js';
import type { CatalogStore, Product } from '../store/store.ports.js';
import { requireRole } from './auth.middleware.js';
import { productSchema, readJson, skuSchema, validate } from './schemas.js';

const view = ({ sku, name, price_cents, available, reserved, sold }: Product) => ({ sku, name, price_cents, available, reserved, sold });

/** `/api/v1/inventory…`: the catalog and its stock. Anyone signed in reads; admins write. */
export function inventoryRoutes({ catalog }: { catalog: CatalogStore }) {
  const routes = new Hono();

  routes.get('/', async (c) => c.json({ items: (await catalog.listProducts()).map(view) }));

  routes.get('/:sku', async (c) => {
    const sku = c.req.param('sku');
    const product = skuSchema.safeParse(sku).success ? await catalog.getProduct(sku) : null;
    if (!product) throw new OrderError('not_found', `Product ${sku} not found.`);
    return c.json(view(product));
  });

  routes.put('/:sku', requireRole('admin'), async (c) => {
    const sku = validate(skuSchema, c.req.param('sku'), '/sku');
    const body = validate(productSchema, await readJson(c));
    const { product, created } = await catalog.upsertProduct({ sku, ...body });
    return c.json(view(product), created ? 201 : 200);
  });

  return routes;
}
