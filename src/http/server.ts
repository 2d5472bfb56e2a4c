import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { getRequestListener, RequestError } from '@hono/node-server';
import type { Logger } from '../logger.js';
import { problemFetchResponse, problemFor, problemHttpMessage, problemJson, type Problem } from './problem.js';

export interface HttpServerLimits {
  /** The request line and headers must have arrived within this (Node's `headersTimeout`). */
  headersTimeoutMs: number;
  /** The whole request, body included, must have arrived within this (Node's `requestTimeout`). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** The request line and headers together (Node's `maxHeaderSize`). */
  maxHeaderBytes: number;
  /** Connections open at once; past it Node closes new ones at once (nothing can be answered). */
  maxConnections: number;
}

export interface HttpServerOptions {
  logger?: Logger;
}

/** How long a refused connection may linger after its answer, so the client reads it before the close. */
const LINGER_MS = 1_000;
const answered = Symbol('ordersaga.answered');

/**
 * How often Node looks for requests past their time limits (`connectionsCheckingInterval`, 30 s by
 * default, which would let a slow client hold a connection for up to 30 s past its limit): a tenth of
 * the shorter limit, between 50 ms and 1 s.
 */
export function connectionsCheckingIntervalMs(limits: Pick<HttpServerLimits, 'headersTimeoutMs' | 'requestTimeoutMs'>): number {
  return Math.max(50, Math.min(1_000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10)));
}

/**
 * The Node HTTP server for the app (not yet listening): @hono/node-server's request listener with
 * time, size and connection limits, and an `application/problem+json` answer with a stable `code`
 * for whatever is refused before a route runs:
 *
 * - what Node's parser refuses (`clientError`: control bytes in a header, conflicting
 *   Content-Length and Transfer-Encoding, bad chunk framing, an oversized header block, a request
 *   past its time limit): written as a whole HTTP/1.1 answer to the socket, then the socket closes;
 * - a missing Host, a target that is not a path (`foo`, `*`, `CONNECT host:443`, a backslash), and
 *   what @hono/node-server cannot turn into a URL (its `errorHandler`; `createAdaptorServer` and
 *   `serve` do not pass one on, so they would answer a bare 400);
 * - an `Expect` other than `100-continue` (417).
 *
 * `Expect: 100-continue` is answered with `100 Continue` only once a route reads the body: a request
 * refused before that (401, 413 by Content-Length, 429) never has its body sent.
 * An absolute-form target (`GET http://host/path`) is accepted, as RFC 9112 §3.2.2 requires; its
 * authority then stands for the Host, and nothing in the app builds URLs from the host.
 */
export function createHttpServer(app: { fetch: (request: Request, env: never) => unknown }, limits: HttpServerLimits, options: HttpServerOptions = {}): Server {
  const { logger } = options;
  const honoListener = getRequestListener(app.fetch as Parameters<typeof getRequestListener>[0], {
    // No default hostname: a request without Host reaches the error handler instead of being given one.
    errorHandler: (err) => problemFetchResponse(requestProblem(err)),
  });

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const refused = refuseBeforeApp(req);
    if (refused) return answer(res, refused);
    void honoListener(req, res);
  };

  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(limits),
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // Node's own check answers a bare 400; ours answers a problem (see refuseBeforeApp).
      requireHostHeader: false,
    },
    handle,
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxConnections = limits.maxConnections;

  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // Reading the body (readBody, or a web Request's stream) resumes the stream: only then is 100 sent.
    req.once('resume', () => {
      if (!res.headersSent && !res.writableEnded) res.writeContinue();
    });
    handle(req, res);
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    answer(res, problemFor('expectation_failed', `Expect: ${String(req.headers.expect).slice(0, 100)} is not supported; only 100-continue is.`));
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    answerSocket(socket, problemFor('invalid_request_target', 'This server is not a proxy: CONNECT and authority-form targets are not supported.'));
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    logger?.debug({ err: { code: err.code, message: err.message } }, 'refused a malformed request');
    // Once part of an answer is on the wire, another would corrupt it: just close.
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    answerSocket(socket, parserProblem(err, limits));
  });
  return server;
}

/** RFC 3986 host (a reg-name, an IPv4 address or a bracketed IPv6 address) and an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/;

/** What is refused before @hono/node-server sees the request. */
function refuseBeforeApp(req: IncomingMessage): Problem | undefined {
  const host = req.headers.host;
  if (host === undefined || host === '') return problemFor('missing_host', 'The request has no Host header.');
  if (!HOST.test(host)) return problemFor('malformed_request', 'The Host header is not a host name or address with an optional port.');
  const target = req.url ?? '';
  const originForm = target.startsWith('/');
  if (!originForm && !/^https?:\/\//i.test(target)) {
    return problemFor('invalid_request_target', 'The request target must be a path such as /api/v1/inventory.');
  }
  // WHATWG URLs read "\" as "/": a path that means one thing here and another to a proxy.
  const query = target.indexOf('?');
  const backslash = target.indexOf('\\');
  if (backslash !== -1 && (query === -1 || backslash < query)) {
    return problemFor('invalid_request_target', 'The request path contains a backslash.');
  }
  return undefined;
}

/** What @hono/node-server's listener could not take (its `errorHandler`): the client's fault, never a 500. */
function requestProblem(err: unknown): Problem {
  if (err instanceof RequestError) {
    if (/missing host/i.test(err.message)) return problemFor('missing_host', 'The request has no Host header.');
    return problemFor('malformed_request', 'The request target and the Host header do not make a valid URL.');
  }
  return problemFor('internal_error', 'An unexpected error occurred.');
}

function parserProblem(err: Error & { code?: string }, limits: HttpServerLimits): Problem {
  const code = err.code ?? 'unknown';
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return problemFor('headers_too_large', `The request line and headers are larger than ${limits.maxHeaderBytes} bytes.`);
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return problemFor(
        'request_timeout',
        `The request did not arrive in time: headers within ${limits.headersTimeoutMs} ms, the whole request within ${limits.requestTimeoutMs} ms.`,
      );
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return problemFor('malformed_request', `The body's length is ambiguous: Content-Length and Transfer-Encoding conflict or are invalid (${code}).`);
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
    case 'HPE_INVALID_EOF_STATE':
      return problemFor('malformed_request', `The chunked body is not framed correctly (${code}).`);
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return problemFor('malformed_request', `A header contains a character that HTTP does not allow (${code}).`);
    case 'HPE_INVALID_URL':
      return problemFor('invalid_request_target', `The request target contains a character that HTTP does not allow (${code}).`);
    case 'HPE_INVALID_METHOD':
      return problemFor('malformed_request', `The request method is not valid (${code}).`);
    case 'HPE_INVALID_VERSION':
      return problemFor('malformed_request', `Only HTTP/1.0 and HTTP/1.1 are served (${code}).`);
    default:
      return problemFor('malformed_request', `The request is not valid HTTP/1.1 (${code}).`);
  }
}

/** A problem answered through Node's response, closing the connection afterwards. */
function answer(res: ServerResponse, problem: Problem): void {
  const body = problemJson(problem);
  res.shouldKeepAlive = false;
  res.writeHead(problem.status, {
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
    Connection: 'close',
  });
  res.end(body);
}

/** A problem written straight to the socket; then a short linger for the client to read it, and the close. */
function answerSocket(socket: Duplex & { [answered]?: boolean }, problem: Problem): void {
  if (socket[answered]) return; // the parser reports again on later bytes of the same connection
  socket[answered] = true;
  socket.end(problemHttpMessage(problem));
  socket.resume(); // read and drop whatever else the client sends, so the close is not a reset
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
