import type { CatalogStore, ProductInput } from './store.ports.js';

export const DEMO_CATALOG: readonly ProductInput[] = [
  { sku: 'SKU-TSHIRT', name: 'Organic cotton T-shirt', price_cents: 1999, available: 500 },
  { sku: 'SKU-MUG', name: 'Stoneware mug', price_cents: 1250, available: 300 },
  { sku: 'SKU-HOODIE', name: 'Zip hoodie', price_cents: 4900, available: 200 },
  { sku: 'SKU-POSTER', name: 'Limited poster (signed)', price_cents: 3500, available: 3 },
];

/** Gives an empty catalog the demo products; leaves a catalog with anything in it alone. */
export async function seedDemoCatalog(catalog: CatalogStore): Promise<boolean> {
  if ((await catalog.listProducts()).length > 0) return false;
  for (const product of DEMO_CATALOG) await catalog.upsertProduct(product);
  return true;
}
