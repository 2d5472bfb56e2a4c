import { newId } from '../domain/ids.js';
import type { Notification, NotificationKind } from '../domain/order.js';
import type { NotificationStore } from '../store/store.ports.js';

export interface NotificationRequest {
  order_id: string;
  kind: NotificationKind;
  recipient: string;
  payload: Record<string, unknown>;
  /** One notification per key, however often the step runs. */
  idempotency_key: string;
}

/** Sends customer notifications. A failure is `notification_failed` (transient). */
export interface Notifier {
  send(request: NotificationRequest): Promise<Notification>;
}

/** The built-in notifier records each notification in the store (an outbox a mailer could drain). */
export class StoreNotifier implements Notifier {
  constructor(private readonly notifications: NotificationStore) {}

  send(request: NotificationRequest): Promise<Notification> {
    return this.notifications.insert({
      notification_id: newId('ntf'),
      order_id: request.order_id,
      kind: request.kind,
      recipient: request.recipient,
      created_at: new Date().toISOString(),
      idempotency_key: request.idempotency_key,
      payload: request.payload,
    });
  }
}
