import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { OrderError } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import type { IdempotencyStore } from '../store/store.ports.js';

export interface IdempotencyOptions {
  store: IdempotencyStore;
  /** How long a key is remembered (at least 24 h). */
  ttlHours: number;
  /**
   * How long a request whose key another instance claimed waits for that instance's answer
   * (default 10 s, SYNC_WAIT_MS) before answering for the order itself.
   */
  waitMs?: number;
  /** Whether the order exists (committed by whichever instance): then waiting for the claimer's answer is over. */
  orderExists?: (orderId: string) => Promise<boolean>;
}

/**
 * Starts the order with this id and answers for it. `resume`: the id was claimed before a
 * crash, so the order may already exist and must not be started twice.
 */
export type OrderHandler = (orderId: string, resume: boolean) => Promise<Response>;

/** What a key may be: 1–255 printable ASCII characters (schemas.ts documents it). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7E]{1,255}$/;

/**
 * `Idempotency-Key` for order creation (IETF draft-ietf-httpapi-idempotency-key-header).
 * The key is claimed, with a pre-assigned order id and the request, before the order
 * starts; the first answer is stored and replayed with `Idempotent-Replayed: true`. The
 * same key with another request is a 422; a second request while the first is running
 * waits for the first answer. After a crash between claim and answer, a retry resumes
 * the same order id instead of creating another.
 */
export function createIdempotency({ store, ttlHours, waitMs = 10_000, orderExists }: IdempotencyOptions) {
  const inflight = new Map<string, Promise<unknown>>();

  /**
   * Polls the key until another instance has answered it, or its order exists (then this
   * instance answers for that order), or `waitMs` passes (the claimer died before it started
   * the order: this one starts it, under the claimed id, so there is still one order).
   */
  async function awaitAnswer(userId: string, key: string, orderId: string, claimedAt: string) {
    // Counted from the claim: a key claimed long ago by an instance that died is not waited for again.
    const deadline = performance.now() + Math.min(waitMs, Date.parse(claimedAt) + waitMs - Date.now());
    for (let pause = 10; ; pause = Math.min(pause * 2, 100)) {
      const stored = await store.get(userId, key);
      if (stored?.response_status != null || performance.now() > deadline || (await orderExists?.(orderId))) return stored;
      await new Promise((r) => setTimeout(r, pause));
    }
  }

  return async function idempotent(c: Context, endpoint: string, request: unknown, handle: OrderHandler): Promise<Response> {
    const key = c.req.header('Idempotency-Key');
    if (key === undefined) return handle(newId('ord'), false);
    if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
      throw new OrderError('validation_failed', 'Idempotency-Key must be 1 to 255 printable ASCII characters.', {
        details: { errors: [{ path: 'header/Idempotency-Key', message: 'must be 1 to 255 printable ASCII characters' }] },
      });
    }
    const userId = c.get('user').id;
    const requestJson = JSON.stringify(request);
    const requestHash = createHash('sha256').update(`${endpoint}\n${requestJson}`).digest('hex');
    const now = new Date();
    const { claimed, entry } = await store.claim({
      user_id: userId,
      key,
      request_hash: requestHash,
      order_id: newId('ord'),
      request: requestJson,
      response_status: null,
      response_body: null,
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + ttlHours * 3_600_000).toISOString(),
    });
    const slot = `${userId}\n${key}`;

    if (claimed) {
      const answer = (async () => {
        const res = await handle(entry.order_id, false);
        await store.complete(userId, key, res.status, await res.clone().text());
        return res;
      })();
      inflight.set(slot, answer);
      try {
        return await answer;
      } finally {
        inflight.delete(slot);
      }
    }

    if (entry.request_hash !== requestHash) {
      throw new OrderError('idempotency_key_reused', 'This Idempotency-Key was used with a different request; use a new key for a new order.');
    }
    // The first request may still be running, here or on another instance; wait for its answer (failure included).
    const local = inflight.get(slot);
    const stored = local ? (await local.catch(() => undefined), await store.get(userId, key)) : await awaitAnswer(userId, key, entry.order_id, entry.created_at);
    if (stored?.response_status != null && stored.response_body != null) return replay(stored.response_status, stored.response_body, stored.order_id);
    // Claimed but never answered (the process died in between): answer for the same order now.
    const res = await handle(entry.order_id, true);
    await store.complete(userId, key, res.status, await res.clone().text());
    const again = await store.get(userId, key);
    return replay(again!.response_status!, again!.response_body!, entry.order_id);
  };
}

function replay(status: number, body: string, orderId: string): Response {
  const problem = status >= 400;
  return new Response(body, {
    status,
    headers: {
      'Content-Type': problem ? 'application/problem+json' : 'application/json',
      Location: `/api/v1/pipeline/orders/${orderId}/status`,
      'Idempotent-Replayed': 'true',
    },
  });
}

export type Idempotent = ReturnType<typeof createIdempotency>;
