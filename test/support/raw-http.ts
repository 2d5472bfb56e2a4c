import { connect, type Socket } from 'node:net';

export interface RawResponse {
  /** Everything the server sent, as text. */
  text: string;
  /** The status of the first response that is not a `100 Continue` (0 when nothing came). */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** ms from connecting until the server closed the connection (or until we gave up). */
  closedAfterMs: number;
  closedByServer: boolean;
}

/** Splits what a server sent into its first final response: status, lower-cased headers and body. */
export function parseResponse(text: string): Pick<RawResponse, 'status' | 'headers' | 'body'> {
  let rest = text;
  while (/^HTTP\/1\.1 100 /.test(rest)) rest = rest.slice(rest.indexOf('\r\n\r\n') + 4);
  const end = rest.indexOf('\r\n\r\n');
  if (!rest.startsWith('HTTP/') || end === -1) return { status: 0, headers: {}, body: '' };
  const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = rest.slice(end + 4);
  if (headers['content-length'] !== undefined) body = body.slice(0, Number(headers['content-length']));
  return { status: Number(statusLine!.split(' ')[1]), headers, body };
}

/**
 * Opens a TCP connection, writes `chunks` (strings, or `{ pauseMs }` between them), and collects
 * what comes back until the server closes or `waitMs` after the last write passes.
 */
export function rawExchange(port: number, chunks: Array<string | Buffer | { pauseMs: number }>, waitMs = 3_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    const started = Date.now();
    let text = '';
    let closedByServer = false;
    let done = false;
    let giveUp: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ text, ...parseResponse(text), closedAfterMs: Date.now() - started, closedByServer });
    };
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('end', () => {
      closedByServer = true;
      finish();
    });
    socket.on('close', () => {
      closedByServer = true;
      finish();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        closedByServer = true;
        finish();
      } else reject(err);
    });
    socket.once('connect', async () => {
      for (const chunk of chunks) {
        if (done || socket.destroyed) return;
        if (typeof chunk === 'object' && 'pauseMs' in chunk) await new Promise((r) => setTimeout(r, chunk.pauseMs));
        else socket.write(chunk);
      }
      giveUp = setTimeout(finish, waitMs);
    });
  });
}

/** `text` written one byte at a time, `pauseMs` apart. */
export function trickle(text: string, pauseMs: number): Array<string | { pauseMs: number }> {
  return [...text].flatMap((ch) => [ch, { pauseMs }]);
}
