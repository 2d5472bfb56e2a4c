import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { createActor, createMachine } from 'xstate';
import { mintToken } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';
import { createOrderInspector } from '../src/inspector.js';
import { createLogger } from '../src/logger.js';
import { client, freePort, ROOT, run, startServerProcess, type ServerProcess } from './support/process.js';
import { orderBody, startTestService, TEST_SECRET } from './support/service.js';

const dir = mkdtempSync(join(tmpdir(), 'ordersaga-inspect-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A stand-in for the relay: a WebSocket server that records every JSON message it receives. */
async function startReceiver(port = 0) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const messages: any[] = [];
  let connections = 0;
  wss.on('connection', (ws) => {
    connections++;
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      messages.push(JSON.parse(data.toString()));
    });
  });
  const actualPort = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${actualPort}`,
    messages,
    connections: () => connections,
    /** Closes every client connection cleanly (1001 going away), as a stopping relay would. */
    dropClients: () => wss.clients.forEach((ws) => ws.close(1001, 'going away')),
    close: () =>
      new Promise<void>((resolve) => {
        wss.clients.forEach((ws) => ws.terminate());
        wss.close(() => resolve());
      }),
  };
}

/** The messages about one order actor: its @xstate.actor is named by the order id. */
function orderTrace(messages: any[], orderId: string) {
  const actor = messages.find((m) => m.type === '@xstate.actor' && m.name === orderId);
  if (!actor) return undefined;
  const own = messages.filter((m) => m.sessionId === actor.sessionId);
  return {
    actor,
    snapshots: own.filter((m) => m.type === '@xstate.snapshot'),
    events: own.filter((m) => m.type === '@xstate.event'),
    children: messages.filter((m) => m.type === '@xstate.actor' && m.parentId === actor.sessionId),
  };
}

async function waitForCompletedTrace(messages: any[], orderId: string) {
  return until(`the completed snapshot of ${orderId}`, () => {
    const trace = orderTrace(messages, orderId);
    return trace?.snapshots.some((s) => s.snapshot.value === 'completed') && trace;
  });
}

function expectFullTrace(trace: NonNullable<ReturnType<typeof orderTrace>>, orderId: string) {
  expect(trace.actor).toMatchObject({ type: '@xstate.actor', name: orderId, snapshot: { context: { order_id: orderId } } });
  expect(typeof trace.actor.sessionId).toBe('string');
  expect(typeof trace.actor._version).toBe('string');
  expect(JSON.parse(trace.actor.definition)).toMatchObject({ id: 'order' });
  expect(trace.events.map((e) => e.event.type)).toContain('xstate.init');
  expect(trace.events.some((e) => e.event.type.startsWith('xstate.done.actor.'))).toBe(true);
  const values = trace.snapshots.map((s) => s.snapshot.value);
  expect(values).toContainEqual({ cancellable: { placing: 'running' } });
  expect(values).toContain('completed');
  const completed = trace.snapshots.find((s) => s.snapshot.value === 'completed');
  expect(completed.snapshot).toMatchObject({ status: 'done', context: { order_id: orderId } });
  // The invoked steps are streamed too, as children of the order actor.
  expect(trace.children.map((c) => c.name)).toEqual(expect.arrayContaining(['placeOrder', 'reserveStock', 'capturePayment', 'shipOrder']));
}

/**
 * NODE_OPTIONS that make a child process append the URL of every module it loads to `file`
 * (an ESM loader hook), to prove what INSPECT does and does not load.
 */
function loadLogOptions(file: string): string {
  const hooks =
    `import { appendFileSync } from 'node:fs';\n` +
    `export async function load(url, context, nextLoad) { appendFileSync(${JSON.stringify(file)}, url + '\\n'); return nextLoad(url, context); }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  return `${process.env.NODE_OPTIONS ?? ''} --import=data:text/javascript,${encodeURIComponent(register)}`.trim();
}

async function placeOrder(server: ServerProcess) {
  const token = await mintToken({ secret: TEST_SECRET, sub: 'alice', role: 'user' });
  const res = await client(server.url, token)('POST', '/api/v1/pipeline/orders', orderBody({ items: [{ sku: 'SKU-TSHIRT', quantity: 1 }] }));
  expect(res.status).toBe(201);
  expect(res.body.status).toBe('completed');
  return res.body.order_id as string;
}

const logLines = (output: string) =>
  output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

function processEnv(name: string, extra: Record<string, string>) {
  return { DB_PATH: join(dir, `${name}.db`), JWT_SECRET: TEST_SECRET, RETRY_BASE_MS: '5', ...extra };
}

describe('configuration', () => {
  it('is off by default, pointing at the local relay', () => {
    expect(loadConfig({}).inspect).toEqual({ enabled: false, url: 'ws://127.0.0.1:8080' });
    expect(loadConfig({ INSPECT: '1', INSPECT_URL: 'wss://inspect.example:9000/x' }).inspect).toEqual({
      enabled: true,
      url: 'wss://inspect.example:9000/x',
    });
  });

  it('refuses an INSPECT_URL that is not ws:// or wss://, and a bad INSPECT', () => {
    for (const url of ['http://127.0.0.1:8080', '127.0.0.1:8080', 'ws//x', 'ws://']) {
      expect(() => loadConfig({ INSPECT: '1', INSPECT_URL: url })).toThrowError(/INSPECT_URL: must be a ws:\/\/ or wss:\/\/ URL/);
    }
    expect(() => loadConfig({ INSPECT: 'on' })).toThrowError(/INSPECT/);
  });
});

describe('createOrderInspector', () => {
  it("streams an order actor's @xstate.actor, @xstate.event and @xstate.snapshot messages (in process)", async () => {
    const receiver = await startReceiver();
    const inspector = createOrderInspector({ url: receiver.url, logger: createLogger('silent') });
    const svc = await startTestService(
      {},
      { products: [{ sku: 'SKU-A', name: 'A', price_cents: 100, available: 10 }], overrides: { inspect: inspector.inspect } },
    );
    try {
      const res = await svc.call('POST', '/api/v1/pipeline/orders', { token: await svc.token('alice'), body: orderBody() });
      expect(res.status).toBe(201);
      const orderId = (await res.json()).order_id;
      expectFullTrace(await waitForCompletedTrace(receiver.messages, orderId), orderId);
      expect(receiver.messages.every((m) => ['@xstate.actor', '@xstate.event', '@xstate.snapshot'].includes(m.type))).toBe(true);
      expect(inspector.stats()).toMatchObject({ connected: true, dropped: 0 });
    } finally {
      await svc.stop();
      await inspector.stop();
      await receiver.close();
    }
  });

  const toggle = createMachine({ id: 'toggle', initial: 'off', states: { off: { on: { FLIP: 'on' } }, on: { on: { FLIP: 'off' } } } });

  it('warns once while the endpoint is down, buffers, delivers the backlog when it comes up, and reconnects after a drop', async () => {
    const port = await freePort();
    const logs: any[] = [];
    const logger = createLogger('debug', { write: (line: string) => void logs.push(JSON.parse(line)) });
    const inspector = createOrderInspector({ url: `ws://127.0.0.1:${port}`, logger, reconnectMs: 20, maxReconnectMs: 50 });
    const actor = createActor(toggle, { id: 'toggle-1', inspect: inspector.inspect }).start();
    actor.send({ type: 'FLIP' });
    await sleep(300); // several failed attempts
    const warnings = logs.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ component: 'inspector', reason: 'ECONNREFUSED', url: `ws://127.0.0.1:${port}` });
    expect(logs.filter((l) => l.msg === 'Stately inspector still unreachable').length).toBeGreaterThan(1);
    expect(inspector.stats()).toMatchObject({ connected: false, buffered: 5, dropped: 0 }); // actor, init event + snapshot, FLIP event + snapshot

    const receiver = await startReceiver(port);
    try {
      await until('the backlog', () => receiver.messages.length >= 5);
      expect(receiver.messages.map((m) => m.type)).toEqual(['@xstate.actor', '@xstate.event', '@xstate.snapshot', '@xstate.event', '@xstate.snapshot']);
      expect(receiver.messages[0]).toMatchObject({ name: 'toggle-1' });
      expect(receiver.messages[2].snapshot.value).toBe('off');
      expect(receiver.messages[4].snapshot.value).toBe('on');
      expect(logs.some((l) => l.msg === 'connected to the Stately inspector: streaming order actors' && l.sent_from_buffer === 5)).toBe(true);

      // A clean close from the other end (which createWebSocketInspector never recovers from):
      // it reconnects, and events in between are not lost.
      receiver.dropClients();
      await until('the drop to be noticed', () => !inspector.stats().connected);
      actor.send({ type: 'FLIP' });
      await until('a second connection', () => receiver.connections() === 2 && inspector.stats().connected);
      await until('the snapshot sent after the drop', () => receiver.messages.find((m) => m.type === '@xstate.snapshot' && m.snapshot.value === 'off'));
      expect(logs.filter((l) => l.level === 'warn')).toHaveLength(2); // once per outage
      expect(inspector.stats().dropped).toBe(0);
    } finally {
      await inspector.stop();
      await receiver.close();
    }
  });

  it('keeps at most maxBufferedEvents, dropping the oldest, and sends nothing after stop()', async () => {
    const port = await freePort();
    const inspector = createOrderInspector({ url: `ws://127.0.0.1:${port}`, logger: createLogger('silent'), maxBufferedEvents: 3, reconnectMs: 20, maxReconnectMs: 20 });
    const actor = createActor(toggle, { inspect: inspector.inspect }).start();
    for (let i = 0; i < 10; i++) actor.send({ type: 'FLIP' });
    await sleep(50);
    // 1 actor + 11 events (init, 10 FLIPs) + 11 snapshots: the last 3 kept.
    expect(inspector.stats()).toMatchObject({ buffered: 3, dropped: 20 });
    const receiver = await startReceiver(port);
    try {
      await until('the backlog', () => receiver.messages.length === 3);
      expect(receiver.messages.map((m) => m.type)).toEqual(['@xstate.snapshot', '@xstate.event', '@xstate.snapshot']);
      expect(receiver.messages[2].snapshot.value).toBe('off'); // the latest state: 10 flips
      await inspector.stop();
      actor.send({ type: 'FLIP' });
      await sleep(100);
      expect(receiver.messages).toHaveLength(3);
      expect(receiver.connections()).toBe(1);
    } finally {
      await inspector.stop();
      await receiver.close();
    }
  });

  it('never keeps the process alive, whether the endpoint is down or up', async () => {
    const receiver = await startReceiver();
    try {
      for (const url of [`ws://127.0.0.1:${await freePort()}`, receiver.url]) {
        const started = Date.now();
        const script = `
          import { createActor, createMachine } from 'xstate';
          import { createOrderInspector } from './src/inspector.ts';
          import { createLogger } from './src/logger.ts';
          const inspector = createOrderInspector({ url: ${JSON.stringify(url)}, logger: createLogger('silent') });
          createActor(createMachine({ id: 'm' }), { inspect: inspector.inspect }).start();
          setTimeout(() => console.log('done', JSON.stringify(inspector.stats())), 300);`;
        const { code, stdout, stderr } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {}, 15_000);
        expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
        expect(stdout).toContain('done');
        expect(Date.now() - started).toBeLessThan(8_000);
      }
      expect(receiver.connections()).toBe(1);
    } finally {
      await receiver.close();
    }
  });
});

describe('the service with INSPECT=1 (a real process)', () => {
  it('streams every order actor to INSPECT_URL, loading @statelyai/inspect, and stops cleanly', async () => {
    const receiver = await startReceiver();
    const loaded = join(dir, 'loaded-on.txt');
    const server = await startServerProcess(processEnv('on', { INSPECT: '1', INSPECT_URL: receiver.url, NODE_OPTIONS: loadLogOptions(loaded) }));
    try {
      const orderId = await placeOrder(server);
      expectFullTrace(await waitForCompletedTrace(receiver.messages, orderId), orderId);
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      const logs = logLines(server.output());
      expect(logs.find((l) => l.msg === 'connected to the Stately inspector: streaming order actors')).toMatchObject({ url: receiver.url });
      expect(logs.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
      // The positive control for the load log used below.
      expect(readFileSync(loaded, 'utf8')).toMatch(/node_modules\/@statelyai\/inspect\//);
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
      await receiver.close();
    }
  });

  it('without INSPECT, loads neither src/inspector, @statelyai/inspect nor ws', async () => {
    const loaded = join(dir, 'loaded-off.txt');
    const server = await startServerProcess(processEnv('off', { NODE_OPTIONS: loadLogOptions(loaded) }));
    try {
      await placeOrder(server);
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      const urls = readFileSync(loaded, 'utf8').split('\n');
      expect(urls.some((u) => u.includes('/node_modules/hono/'))).toBe(true); // the log works
      expect(urls.filter((u) => /@statelyai|\/node_modules\/ws\/|\/src\/inspector\./.test(u))).toEqual([]);
      expect(server.output()).not.toMatch(/inspector/i);
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });

  it('runs normally when nothing listens at INSPECT_URL: one warning, orders complete, SIGTERM exits 0', async () => {
    const url = `ws://127.0.0.1:${await freePort()}`;
    const server = await startServerProcess(processEnv('down', { INSPECT: '1', INSPECT_URL: url }));
    try {
      await placeOrder(server);
      await sleep(2_500); // retries at 1 s and 2 s
      await placeOrder(server);
      const warnings = logLines(server.output()).filter((l) => l.level === 'warn');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ component: 'inspector', url, reason: 'ECONNREFUSED' });
      expect(warnings[0].msg).toContain('npm run inspector');
      const started = Date.now();
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });
});

describe('npm run inspector (the relay)', () => {
  function startRelay(port: number) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/inspector-relay.ts', '--port', String(port)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, output: () => out, exited };
  }

  it('relays the service to a browser page, and explains a port already in use', async () => {
    const port = await freePort();
    const relay = startRelay(port);
    let server: ServerProcess | undefined;
    let browser: WebSocket | undefined;
    try {
      await until('the relay', () => relay.output().includes('listening'), 15_000);
      expect(relay.output()).toContain(`Open http://localhost:${port}`);
      expect(relay.output()).toContain(`INSPECT=1 INSPECT_URL=ws://127.0.0.1:${port} npm start`);
      const page = await (await fetch(`http://127.0.0.1:${port}/`)).text();
      expect(page).toContain('https://stately.ai/inspect');
      expect(page).toContain(`ws://localhost:${port}`);

      // What the page does: connect to the relay and receive what the service sends.
      const received: any[] = [];
      browser = new WebSocket(`ws://127.0.0.1:${port}`);
      browser.on('message', (d) => received.push(JSON.parse(d.toString())));
      await new Promise((resolve, reject) => browser!.once('open', resolve).once('error', reject));

      server = await startServerProcess(processEnv('relay', { INSPECT: '1', INSPECT_URL: `ws://127.0.0.1:${port}` }));
      const orderId = await placeOrder(server);
      expectFullTrace(await waitForCompletedTrace(received, orderId), orderId);

      const second = startRelay(port);
      expect(await second.exited).toBe(1);
      expect(second.output()).toContain(`port ${port} is already in use`);
      expect(second.output()).not.toContain('    at ');

      relay.child.kill('SIGTERM');
      expect(await relay.exited).toBe(0);
    } finally {
      browser?.terminate();
      if (server) {
        server.child.kill('SIGTERM');
        await server.exited;
      }
      if (relay.child.exitCode === null) relay.child.kill('SIGKILL');
    }
  });
});

// Ports taken by a plain listener are refused the same way (not only by a second relay).
it('the relay refuses a port held by another program', async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, resolve));
  const port = (holder.address() as { port: number }).port;
  try {
    const { code, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/inspector-relay.ts', '--port', String(port)], {}, 15_000);
    expect(code).toBe(1);
    expect(stderr).toContain(`port ${port} is already in use`);
    expect(stderr).toContain(`--port ${port + 1}`);
  } finally {
    holder.close();
  }
});
