import { OrderError } from '../domain/errors.js';
import type { OrderChange, OrderEngine } from '../orders/order.engine.js';

/*
 * The service's open event streams: one engine subscription for all of them, fanned out by
 * order id (and to the list feeds), the limits on how many may be open, and closing them all
 * when the service drains. Only `OrderEngine.subscribe` is used, so a cluster-wide engine
 * makes every stream cluster-wide unchanged.
 */

export interface OrderStreamsOptions {
  engine: Pick<OrderEngine, 'subscribe'>;
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: number;
  /** Streams open at once on this instance, and per user; past them `streams_unavailable` / `too_many_streams`. */
  maxStreams: number;
  maxStreamsPerUser: number;
}

/** How a stream hears of changes: its own order's, or (a list feed) every order's. */
export type ChangeSink = (change: OrderChange) => void;

export interface StreamTicket {
  /** The SSE writer of this stream; closed by `closeAll()` on shutdown. */
  writer: SseWriter;
  /** Starts telling `sink` about changes (of `orderId`, or of every order when null). */
  watch(orderId: string | null, sink: ChangeSink): void;
}

/** Queued events past this many chunks mean the client does not read: it is closed and may resume. */
const MAX_BACKLOG_CHUNKS = 1_000;
const encoder = new TextEncoder();

/** A `text/event-stream` body written event by event; `close()` ends it, a client going away cancels it. */
export class SseWriter {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closed = false;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly onClosed: Array<() => void> = [];

  constructor(heartbeatMs: number) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        cancel: () => this.finish(false),
      },
      { highWaterMark: 64 },
    );
    this.heartbeat = setInterval(() => this.comment('keep-alive'), heartbeatMs);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** `data` must be one line (JSON is). */
  event(name: string, data: string, id?: number): void {
    this.write(`event: ${name}\n${id === undefined ? '' : `id: ${id}\n`}data: ${data}\n\n`);
  }

  comment(text: string): void {
    this.write(`: ${text}\n\n`);
  }

  close(): void {
    this.finish(true);
  }

  /** Closes the stream at `time` (ms since the epoch). */
  closeAt(time: number): void {
    // setTimeout takes at most 2^31-1 ms (about 24.8 days); a later expiry is out of reach of any stream here.
    const delay = time - Date.now();
    if (delay > 2 ** 31 - 1) return;
    const timer = setTimeout(() => this.close(), Math.max(0, delay));
    this.onClose(() => clearTimeout(timer));
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.onClosed.push(fn);
  }

  private write(text: string): void {
    if (this.closed) return;
    if ((this.controller.desiredSize ?? 0) < -MAX_BACKLOG_CHUNKS) return this.close();
    this.controller.enqueue(encoder.encode(text));
  }

  private finish(closeBody: boolean): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (closeBody) {
      try {
        this.controller.close();
      } catch {
        // already cancelled by the client
      }
    }
    for (const fn of this.onClosed.splice(0)) fn();
  }
}

/** One stream's failure must not keep the others from hearing of a change. */
function tell(sink: ChangeSink, change: OrderChange): void {
  try {
    sink(change);
  } catch {
    // the sink's own stream is the one affected; it closes on its next write or its client's reconnect
  }
}

export class OrderStreams {
  private readonly byOrder = new Map<string, Set<ChangeSink>>();
  private readonly feeds = new Set<ChangeSink>();
  private readonly open = new Set<SseWriter>();
  private readonly perUser = new Map<string, number>();
  private unsubscribe: (() => void) | undefined;
  private closing = false;

  constructor(private readonly options: OrderStreamsOptions) {}

  get heartbeatMs(): number {
    return this.options.heartbeatMs;
  }

  /** How many streams are open now (all users). */
  get size(): number {
    return this.open.size;
  }

  /**
   * Admits a new stream for `userId`, or throws the problem that refuses it. The ticket's
   * writer counts against the limits until it closes, however it closes. With `validUntil`
   * (the token's expiry), the stream closes then: a token cannot go on watching after it would
   * be refused, and the client reconnects with a fresh one (and `Last-Event-ID`).
   */
  admit(userId: string, validUntil?: number): StreamTicket {
    if (this.closing) throw new OrderError('shutting_down', 'The service is shutting down; reconnect in a few seconds.');
    if (this.open.size >= this.options.maxStreams) {
      throw new OrderError('streams_unavailable', `This instance has ${this.options.maxStreams} event streams open; try again later.`);
    }
    const mine = this.perUser.get(userId) ?? 0;
    if (mine >= this.options.maxStreamsPerUser) {
      throw new OrderError('too_many_streams', `You have ${mine} event streams open, the most allowed; close one first.`);
    }
    this.subscribeOnce();
    const writer = new SseWriter(this.options.heartbeatMs);
    if (validUntil !== undefined) writer.closeAt(validUntil);
    this.open.add(writer);
    this.perUser.set(userId, mine + 1);
    const sinks: Array<() => void> = [];
    writer.onClose(() => {
      this.open.delete(writer);
      const left = (this.perUser.get(userId) ?? 1) - 1;
      if (left > 0) this.perUser.set(userId, left);
      else this.perUser.delete(userId);
      for (const remove of sinks) remove();
    });
    return {
      writer,
      watch: (orderId, sink) => {
        if (writer.isClosed) return;
        if (orderId === null) {
          this.feeds.add(sink);
          sinks.push(() => this.feeds.delete(sink));
          return;
        }
        let set = this.byOrder.get(orderId);
        if (!set) this.byOrder.set(orderId, (set = new Set()));
        set.add(sink);
        sinks.push(() => {
          set.delete(sink);
          if (set.size === 0 && this.byOrder.get(orderId) === set) this.byOrder.delete(orderId);
        });
      },
    };
  }

  /** Shutdown: closes every open stream (clients resume elsewhere with Last-Event-ID) and admits no more. */
  closeAll(): number {
    this.closing = true;
    const closed = this.open.size;
    for (const writer of [...this.open]) writer.close();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    return closed;
  }

  private subscribeOnce(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.options.engine.subscribe((changes) => {
      for (const change of changes) {
        for (const sink of this.byOrder.get(change.order_id) ?? []) tell(sink, change);
        for (const sink of this.feeds) tell(sink, change);
      }
    });
  }
}
