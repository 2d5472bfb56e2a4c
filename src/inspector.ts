/**
 * Streams every order actor to the Stately inspector (https://stately.ai/inspect) over a
 * WebSocket — normally to the relay started by `npm run inspector`, which hands the
 * messages to the inspector page in a browser.
 *
 * Loaded by `src/main.ts` through a dynamic `import()` only when `INSPECT` is on, so a
 * service without it never loads this module, `@statelyai/inspect` or `ws`.
 *
 * `@statelyai/inspect` turns XState's inspection events into the inspector's messages
 * (`@xstate.actor`, `@xstate.event`, `@xstate.snapshot`); the transport is our own instead
 * of its `createWebSocketInspector`, whose socket retries forever on a ref'd timer that
 * `stop()` does not cancel (the process never exits), never reconnects after a clean
 * close, and serializes buffered messages twice. This one:
 * - never keeps the process alive: its socket and its reconnect timer are unref'd;
 * - never throws into the service: an unreachable endpoint is a warning (once per outage),
 *   then quiet retries with backoff (`reconnectMs`, doubling up to `maxReconnectMs`);
 * - reconnects after any close, and then sends what it buffered meanwhile, oldest first;
 * - buffers at most `maxBufferedEvents` messages, serialized once when they happen
 *   (the oldest are dropped first), and drops messages rather than letting the socket's
 *   own send buffer grow past `maxSocketBufferBytes` when the receiver is slow.
 */
import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import { isIP, connect as netConnect, type NetConnectOpts } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { InspectionEvent, Observer } from 'xstate';
import type { Logger } from './logger.js';

export interface OrderInspectorOptions {
  /** `ws://` or `wss://` address of the relay (or any receiver of the inspector's messages). */
  url: string;
  logger: Logger;
  /** Messages kept while disconnected; older ones are dropped first. Default 1000. */
  maxBufferedEvents?: number;
  /** First reconnect delay; doubles per failed attempt up to `maxReconnectMs`. Default 1000. */
  reconnectMs?: number;
  /** Default 5000. */
  maxReconnectMs?: number;
  /** Above this many bytes queued on an open socket, new messages are dropped. Default 16 MiB. */
  maxSocketBufferBytes?: number;
}

export interface OrderInspector {
  /** Pass to `createActor(machine, { inspect })` (the service's `overrides.inspect`). */
  inspect: Observer<InspectionEvent>;
  /** Sends what can still be sent (waiting at most ~1 s), closes the socket, cancels retries. */
  stop(): Promise<void>;
  /** For logs and tests. */
  stats(): { connected: boolean; sent: number; buffered: number; dropped: number };
}

/** The only inspection events the inspector understands (the rest would be dropped anyway). */
const FORWARDED = new Set(['@xstate.actor', '@xstate.event', '@xstate.snapshot']);

export function createOrderInspector(options: OrderInspectorOptions): OrderInspector {
  const { url } = options;
  const logger = options.logger.child({ component: 'inspector' });
  const maxBuffered = Math.max(1, options.maxBufferedEvents ?? 1000);
  const baseDelay = Math.max(1, options.reconnectMs ?? 1000);
  const maxDelay = Math.max(baseDelay, options.maxReconnectMs ?? 5000);
  const maxSocketBuffer = options.maxSocketBufferBytes ?? 16 * 1024 * 1024;

  let socket: WebSocket | null = null;
  let connected = false;
  let stopped = false;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let delay = baseDelay;
  /** True from the first failure of an outage until the next successful connection. */
  let warned = false;
  let buffer: string[] = [];
  let sent = 0;
  let dropped = 0;

  const connectionOptions = {
    perMessageDeflate: false,
    handshakeTimeout: 5000,
    // The socket must never hold the process open (a service that is done exits at once).
    createConnection: (opts: NetConnectOpts & ConnectionOptions & { host?: string }): Duplex => {
      const s = url.startsWith('wss:')
        ? tlsConnect({ ...opts, path: undefined, servername: opts.servername ?? (opts.host && !isIP(opts.host) ? opts.host : '') })
        : netConnect({ ...opts, path: (opts as { socketPath?: string }).socketPath } as NetConnectOpts);
      s.unref();
      return s;
    },
  };

  function connect(): void {
    if (stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, connectionOptions as ConstructorParameters<typeof WebSocket>[2]);
    } catch (err) {
      onFailure(err as Error);
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.on('open', () => {
      if (stopped) return;
      connected = true;
      delay = baseDelay;
      warned = false;
      const backlog = buffer;
      buffer = [];
      for (const message of backlog) transmit(ws, message);
      logger.info({ url, sent_from_buffer: backlog.length, dropped }, 'connected to the Stately inspector: streaming order actors');
    });
    // The relay replays its history to every client; we only send.
    ws.on('message', () => {});
    ws.on('error', (err) => {
      if (!stopped) onFailure(err);
    });
    ws.on('close', () => {
      const wasConnected = connected;
      connected = false;
      if (socket === ws) socket = null;
      if (stopped) return;
      if (wasConnected) onFailure(new Error('connection closed'));
      scheduleReconnect();
    });
  }

  function onFailure(err: Error & { code?: string }): void {
    const detail = { url, reason: err.code ?? err.message, retry_ms: delay, buffer_limit: maxBuffered };
    if (warned) {
      logger.debug(detail, 'Stately inspector still unreachable');
      return;
    }
    warned = true;
    logger.warn(
      detail,
      'Stately inspector unreachable; the service runs on, buffering inspection events and retrying in the background (start the relay with `npm run inspector`)',
    );
  }

  function scheduleReconnect(): void {
    if (stopped || reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      connect();
    }, delay);
    reconnectTimer.unref();
    delay = Math.min(delay * 2, maxDelay);
  }

  function transmit(ws: WebSocket, message: string): void {
    if (ws.bufferedAmount > maxSocketBuffer) {
      dropped++;
      return;
    }
    ws.send(message, (err) => {
      if (err) dropped++;
    });
    sent++;
  }

  const adapter = {
    send(event: StatelyInspectionEvent): void {
      if (stopped) return;
      const message = serialize(event);
      if (message === undefined) {
        dropped++;
        return;
      }
      if (connected && socket && socket.readyState === WebSocket.OPEN) {
        transmit(socket, message);
        return;
      }
      buffer.push(message);
      if (buffer.length > maxBuffered) {
        buffer.shift();
        dropped++;
      }
    },
  };

  const inspector = createInspector(adapter);
  connect();

  return {
    inspect: {
      next(event: InspectionEvent) {
        // Skip `@xstate.action`/`@xstate.microstep` here: the inspector ignores them, and each
        // forwarded event costs a deferred conversion.
        if (!stopped && FORWARDED.has(event.type)) inspector.inspect.next?.(event);
      },
    },
    async stop() {
      if (stopped) return;
      // Let conversions already deferred by @statelyai/inspect (setTimeout 0) reach the adapter.
      await new Promise((resolve) => setTimeout(resolve, 0));
      stopped = true;
      clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      buffer = [];
      const ws = socket;
      socket = null;
      connected = false;
      if (!ws || ws.readyState === WebSocket.CLOSED) return;
      if (ws.readyState !== WebSocket.OPEN) {
        ws.terminate();
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1000);
        ws.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        ws.close(1000, 'service stopping');
      });
      logger.debug({ sent, dropped }, 'inspector stopped');
    },
    stats: () => ({ connected, sent, buffered: buffer.length, dropped }),
  };
}

/** JSON once, at the time of the event; cycles and BigInts never throw. Undefined if it cannot be sent. */
function serialize(event: StatelyInspectionEvent): string | undefined {
  try {
    return JSON.stringify(event);
  } catch {
    try {
      const seen = new WeakSet<object>();
      return JSON.stringify(event, (_key, value: unknown) => {
        if (typeof value === 'bigint') return value.toString();
        if (typeof value === 'object' && value !== null) {
          if (seen.has(value)) return '[Circular]';
          seen.add(value);
        }
        return value;
      });
    } catch {
      return undefined;
    }
  }
}
