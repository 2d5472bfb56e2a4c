import { OrderError } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import type { OrderItemRequest, ShippingAddress, Shipment } from '../domain/order.js';
import type { ShipmentStore } from '../store/store.ports.js';

export interface ShipmentRequest {
  order_id: string;
  items: readonly OrderItemRequest[];
  shipping: ShippingAddress;
  idempotency_key: string;
}

/** A shipping carrier. `fulfillment_failed` is terminal (refused); `carrier_unavailable` is transient. */
export interface Carrier {
  createShipment(request: ShipmentRequest): Promise<Shipment>;
}

/** The built-in carrier: ships anywhere but Antarctica (`AQ`). */
export class SimulatedCarrier implements Carrier {
  constructor(private readonly shipments: ShipmentStore) {}

  async createShipment(request: ShipmentRequest): Promise<Shipment> {
    const existing = await this.shipments.find(request.order_id);
    if (existing) return existing;
    if (request.shipping.country === 'AQ') {
      throw new OrderError('fulfillment_failed', 'the carrier does not deliver to AQ', { details: { country: 'AQ' } });
    }
    return this.shipments.insert({
      shipment_id: newId('shp'),
      order_id: request.order_id,
      idempotency_key: request.idempotency_key,
      carrier: 'simulated-post',
      tracking_number: `SP${newId('trk').slice(-12)}`,
      country: request.shipping.country,
    });
  }
}
