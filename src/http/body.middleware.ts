import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { OrderError } from '../domain/errors.js';

export interface BodyLimitOptions {
  maxBytes: number;
}

declare module 'hono' {
  interface ContextVariableMap {
    maxBodyBytes: number;
    /** The body as `readBody` read it, for the audit log to pick its fields from after the route. */
    bodyText: string;
  }
}

const tooLarge = (maxBytes: number) => new OrderError('payload_too_large', `The body is larger than ${maxBytes} bytes.`);

/**
 * Refuses a body over `maxBytes` with 413: at once when `Content-Length` says so, otherwise
 * while `readBody` reads it. (Hono's bodyLimit builds a web `Request` for every request,
 * GETs included, which showed up in the profile.)
 */
export function bodyLimit({ maxBytes }: BodyLimitOptions): MiddlewareHandler {
  return async function bodyLimit(c, next) {
    const length = c.req.header('Content-Length');
    if (length !== undefined && c.req.header('Transfer-Encoding') === undefined && Number(length) > maxBytes) throw tooLarge(maxBytes);
    c.set('maxBodyBytes', maxBytes);
    await next();
  };
}

/**
 * The request body as text, at most the route's `maxBodyBytes`. Under @hono/node-server it
 * reads Node's request stream directly instead of through a web `Request` and its streams.
 */
export async function readBody(c: Context): Promise<string> {
  const maxBytes = c.get('maxBodyBytes') ?? Infinity;
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming || typeof incoming.on !== 'function' || incoming.readableDidRead) {
    const text = await c.req.text();
    if (Buffer.byteLength(text) > maxBytes) throw tooLarge(maxBytes);
    c.set('bodyText', text);
    return text;
  }
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        incoming.resume(); // drain the rest so the connection can answer
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8');
      c.set('bodyText', text);
      resolve(text);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new OrderError('malformed_json', `The body could not be read: ${err.message}`));
    };
    // The client went away mid-body: nobody is left to answer, but the handler must not hang.
    const onClose = () => {
      if (!incoming.complete) onError(new Error('the connection closed before the body ended'));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}
