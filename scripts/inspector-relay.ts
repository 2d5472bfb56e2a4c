/**
 * The local end of `INSPECT=1`:  npm run inspector [-- --port 8080]
 *
 * Starts the relay shipped with @statelyai/inspect (`createInspectorServer`): a WebSocket
 * server the service connects to (INSPECT_URL, default ws://127.0.0.1:8080) and an HTTP page
 * at http://localhost:<port> that embeds https://stately.ai/inspect and feeds it what the
 * service sends. The relay keeps the last 200 messages for pages opened later.
 */
import { createInspectorServer } from '@statelyai/inspect/server';
import { connect, createServer } from 'node:net';
import { parseArgs } from 'node:util';

function fail(message: string): never {
  process.stderr.write(`inspector: ${message}\n`);
  process.exit(1);
}

let port = 8080;
try {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' } }, strict: true });
  port = Number(values.port);
} catch (err) {
  fail(`${(err as Error).message}\nusage: npm run inspector [-- --port 8080]`);
}
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('--port must be a port number from 1 to 65535');

const inUse = (code: string | undefined) =>
  code === 'EADDRINUSE'
    ? `port ${port} is already in use (another relay, or another program). Stop it, or pick another port:\n` +
      `  npm run inspector -- --port ${port + 1}\n` +
      `  INSPECT=1 INSPECT_URL=ws://127.0.0.1:${port + 1} npm start`
    : `cannot listen on port ${port} (${code})`;

// The relay's HTTP server has no 'error' handler; find a taken port first, with the same bind
// (all interfaces), so the message is ours and not a stack trace.
await new Promise<void>((resolve) => {
  const probe = createServer();
  probe.once('error', (err: NodeJS.ErrnoException) => fail(inUse(err.code)));
  probe.listen(port, () => probe.close(() => resolve()));
});
// ...and should the port be taken between the probe and the relay's own listen():
process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
  fail(err.code === 'EADDRINUSE' || err.code === 'EACCES' ? inUse(err.code) : (err.stack ?? String(err)));
});

const relay = createInspectorServer({ port, autoOpen: false });

// createInspectorServer() does not report when it is listening: wait until it accepts connections.
const deadline = Date.now() + 5000;
for (;;) {
  const up = await new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (up) break;
  if (Date.now() > deadline) fail(`the relay did not start listening on port ${port}`);
  await new Promise((r) => setTimeout(r, 50));
}

const urlHint = port === 8080 ? '' : ` INSPECT_URL=ws://127.0.0.1:${port}`;
process.stdout.write(
  `Stately inspector relay listening on port ${port} (ws://127.0.0.1:${port}, all interfaces).\n` +
    `  1. Open http://localhost:${port} in a browser (the page loads https://stately.ai/inspect: needs internet).\n` +
    `  2. Start the service with the inspector on:  INSPECT=1${urlHint} npm start\n` +
    `  3. Place orders: each order is an actor named by its order id; pick one in the inspector's actor list.\n` +
    `Ctrl+C stops the relay.\n`,
);

const stop = () => {
  relay.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
