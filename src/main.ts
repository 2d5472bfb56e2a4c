import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Registry } from 'prom-client';
import type { InspectionEvent, Observer } from 'xstate';
import { createOrderActors } from './actors/order.actors.js';
import { keySetFromConfig } from './auth/jwks.auth.js';
import { mintToken, resolveDevSecret } from './auth/tokens.js';
import { loadConfig, type Config } from './config.js';
import { SimulatedCarrier, type Carrier } from './gateways/carrier.gateway.js';
import { StoreNotifier, type Notifier } from './gateways/notifier.gateway.js';
import { SimulatedPaymentGateway, type PaymentGateway } from './gateways/payment.gateway.js';
import { createApp } from './http/app.js';
import { OrderStreams } from './http/order-streams.js';
import { createRateLimitStore } from './http/rate-limit.store.js';
import { createHttpServer } from './http/server.js';
import type { OrderInspector } from './inspector.js';
import { createLogger, type Logger } from './logger.js';
import { ipcClusterBus } from './loops/ipc.bus.js';
import { LOOP_SLOT_ENV, loopConfig } from './loops/loop.config.js';
import { loopMetrics } from './loops/metrics.relay.js';
import { runOrderLoops } from './loops/order-loops.primary.js';
import { createServiceMetrics, type ServiceMetrics } from './metrics/service.metrics.js';
import { orderMachine } from './machines/order.machine.js';
import { ClusterMember } from './orders/cluster.member.js';
import { LocalOrderEngine } from './orders/local.engine.js';
import type { OrderEngine } from './orders/order.engine.js';
import { fillMissingViews } from './orders/order.view.js';
import { seedDemoCatalog } from './store/demo-catalog.js';
import { openStore, type OpenedStore } from './store/open-store.js';
import type { Db } from './store/sqlite/sqlite.database.js';
import type { ClusterBus, Inventory, Stores } from './store/store.ports.js';
import { createInventoryPool, type InventoryPool } from './workers/inventory.pool.js';

/** Replaceable parts, for tests that inject faults through the same interfaces. */
export interface ServiceOverrides {
  payments?: (stores: Stores) => PaymentGateway;
  carrier?: (stores: Stores) => Carrier;
  notifier?: (stores: Stores) => Notifier;
  /** Wraps the inventory (pool and stock sale), e.g. to inject faults through the same interface. */
  inventory?: (inventory: Inventory) => Inventory;
  /** A replacement inventory worker module (URL), e.g. one that crashes on cue. */
  inventoryWorkerFile?: string;
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Set when this service is one of several order loops (src/loops/): how its members wake each other on SQLite. */
  bus?: ClusterBus;
  /** What /metrics serves instead of this service's registry (an order loop: every loop's, from the primary). */
  metricsExposition?: Pick<Registry, 'metrics' | 'contentType'>;
}

export interface Service {
  config: Config;
  app: OpenAPIHono;
  engine: OrderEngine;
  stores: Stores;
  /** Which store this service runs on (`DATABASE_URL` set: PostgreSQL). */
  storeKind: OpenedStore['kind'];
  /**
   * The SQLite file's main-thread connection, for tests that are about SQLite itself.
   * Reading it on PostgreSQL throws: store-neutral tests read through test/support/ledger.ts.
   */
  readonly db: Db;
  pool: InventoryPool;
  /** This instance's /metrics registry and collectors. */
  metrics: ServiceMetrics;
  /** The open event streams (`streams.size` for a gauge); closed by `drain`. */
  streams: OrderStreams;
  /** The HS256 secret (JWT_SECRET or the development one); undefined when an identity provider's keys verify tokens. */
  jwtSecret: string | undefined;
  /**
   * Refuses new work, lets live orders settle for up to `graceMs`, then stops the rest:
   * their state is committed and they resume at the next start.
   */
  drain(graceMs: number): Promise<void>;
  /** Drains with no grace (if not done yet), then closes the pool and the database. */
  close(): Promise<void>;
}

/** The parked-orders gauge counts up to this many (a scrape reads their views). */
const PARKED_COUNT_LIMIT = 10_000;

/** The composition root: config → store → pool → actors → order engine → HTTP app. */
export async function createService(config: Config, logger: Logger, overrides: ServiceOverrides = {}): Promise<Service> {
  // An identity provider's keys (JWT_JWKS_URL / JWT_JWKS_FILE), or HS256 with JWT_SECRET or the development secret.
  const keys = keySetFromConfig(config.jwt, logger);
  const jwtSecret = keys ? undefined : (config.jwt.secret ?? resolveDevSecret(config.dbPath, true)!.secret);
  const rateLimitStore = await createRateLimitStore(config.rateLimit.storage, logger);

  const store = await openStore(config, logger, overrides.bus ? { bus: overrides.bus } : {});
  const { stores } = store;
  if (overrides.bus && !store.cluster) {
    // Loops on a store without ownership would each resume and write every order: refuse.
    await store.close();
    throw new Error(`an order loop needs a store that several loops share; this ${store.kind} store is not: set WORKERS=1`);
  }
  if (config.seedDemo && (await seedDemoCatalog(stores.catalog))) logger.info('seeded the demo catalog');

  const pool = createInventoryPool({
    store: store.inventoryWorker,
    threads: config.inventoryThreads,
    // Workers read what the main thread wrote (products, orders) from their own connections.
    beforeDispatch: stores.flush,
    ...(overrides.inventoryWorkerFile ? { workerFile: overrides.inventoryWorkerFile } : {}),
  });
  // Reserve and release on the pool; selling shipped stock in the main thread's unit of work.
  const inventory: Inventory = { reserve: pool.reserve, release: pool.release, sell: stores.stock.sell };
  const actors = createOrderActors({
    catalog: stores.catalog,
    orders: stores.orders,
    inventory: overrides.inventory?.(inventory) ?? inventory,
    payments: overrides.payments?.(stores) ?? new SimulatedPaymentGateway(stores.payments, { slowMs: config.paymentSlowMs }),
    carrier: overrides.carrier?.(stores) ?? new SimulatedCarrier(stores.shipments),
    notifier: overrides.notifier?.(stores) ?? new StoreNotifier(stores.notifications),
    logger,
    // With several members on one store (PostgreSQL instances, or order loops sharing a SQLite
    // file) each step's effects are fenced by its actor's owner and epoch (refused once stale).
    // One process alone on SQLite has nothing to fence: no fence context at all then, so its
    // hot path does not pay for async context tracking.
    ...(store.cluster ? { fenceOf: (system: unknown) => engine.fenceOf(system) } : {}),
  });
  const engine: LocalOrderEngine = new LocalOrderEngine({
    machine: orderMachine.provide({ actors }),
    states: stores.states,
    owner: config.instanceId,
    logger,
    orderTimeoutMs: config.orderTimeoutMs,
    maxLive: config.maxLiveOrders,
    retry: config.retry,
    ...(overrides.inspect ? { inspect: overrides.inspect } : {}),
  });
  // /metrics: this instance's orders (from its commits), its pool and its HTTP answers.
  const metrics = createServiceMetrics();
  metrics.watchEngine(engine, async () => (await engine.list({ status: 'compensation_failed', limit: PARKED_COUNT_LIMIT })).length);
  metrics.watchPool(pool);
  const streams = new OrderStreams({ engine, ...config.sse });
  const app = createApp({
    engine,
    streams,
    metrics,
    metricsToken: config.metricsToken,
    ...(overrides.metricsExposition ? { metricsExposition: overrides.metricsExposition } : {}),
    readiness: {
      store: async () => {
        await store.probeWrite();
        return null;
      },
      pool: () => (pool.alive ? null : 'the inventory pool is closed'),
    },
    catalog: stores.catalog,
    logger,
    auth: {
      ...(keys ? { keys, algorithms: config.jwt.algorithms } : { secret: new TextEncoder().encode(jwtSecret) }),
      ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
      ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
      clockToleranceS: config.jwt.clockToleranceS,
      roleClaim: config.jwt.roleClaim,
    },
    rateLimit: { ...config.rateLimit, store: rateLimitStore },
    trustProxy: config.trustProxy,
    corsOrigins: config.corsOrigins,
    syncWaitMs: config.syncWaitMs,
    idempotency: { store: stores.idempotency, ttlHours: config.idempotencyTtlHours, waitMs: store.cluster ? config.syncWaitMs : 0, orderExists: async (id) => (await engine.get(id)) !== null },
    audit: stores.audit,
  });

  // On PostgreSQL this instance is one of possibly several: a lease, a reaper, an inbox.
  const member = store.cluster
    ? new ClusterMember({ engine, cluster: store.cluster, logger, leaseMs: config.leaseMs, syncWaitMs: config.syncWaitMs })
    : undefined;
  if (member) {
    engine.attachRemote(member);
    await member.start();
  }

  void keys?.warm();
  const upgraded = await fillMissingViews(stores.states);
  if (upgraded > 0) logger.info({ orders: upgraded }, 'computed views for orders stored by an earlier release');
  // Crash recovery: whatever was running when the process last stopped runs on now.
  await engine.resumeUnfinished();
  const purgeKeys = () =>
    stores.idempotency.purgeExpired(new Date()).then(
      (n) => n > 0 && logger.info({ purged: n }, 'forgot expired idempotency keys'),
      (err) => logger.warn({ err }, 'purging idempotency keys failed'),
    );
  void purgeKeys();
  const purgeTimer = setInterval(purgeKeys, 3_600_000).unref();

  const service: Service = {
    config,
    app,
    engine,
    stores,
    storeKind: store.kind,
    get db(): Db {
      if (!store.sqlite) throw new Error('Service.db is the SQLite connection, and this service runs on PostgreSQL');
      return store.sqlite;
    },
    pool,
    metrics,
    streams,
    jwtSecret,
    async drain(graceMs) {
      clearInterval(purgeTimer);
      // Open event streams would hold the server's close open until their orders end: close them now;
      // clients resume with Last-Event-ID (on another instance, or here after the restart).
      const streamsClosed = streams.closeAll();
      if (streamsClosed > 0) logger.info({ streams: streamsClosed }, 'closed open event streams');
      const { settled, stopped } = await engine.drain(graceMs);
      if (member) {
        // Committed and stopped: the other instances (or the next start) take them over at once.
        await member.handOver();
        logger.info({ settled, stopped }, 'order actors drained; unfinished ones handed over');
      } else {
        logger.info({ settled, stopped }, 'order actors drained; unfinished ones resume at the next start');
      }
    },
    async close() {
      if (engine.accepting) await service.drain(0);
      await member?.stop();
      await pool.close();
      await stores.flush();
      await store.close();
      keys?.close();
      await rateLimitStore.close();
    },
  };
  return service;
}

/**
 * Decides what this process is: one order loop of several (forked by the primary, slot in
 * ORDERSAGA_LOOP_SLOT), the primary of WORKERS loops, or the whole service in one process (WORKERS=1).
 */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`ordersaga: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const logger = createLogger(config.logLevel);
  const slot = cluster.isWorker ? process.env[LOOP_SLOT_ENV] : undefined;
  if (slot !== undefined) return serve(loopConfig(config), logger.child({ loop: Number(slot) }), { loop: true });
  if (config.workers > 1) {
    // The primary prints the development tokens (once) and writes the secret every loop reads.
    if (!config.jwt.jwksUrl && !config.jwt.jwksFile && !config.jwt.secret) await printDevTokens(config, resolveDevSecret(config.dbPath, true)!.secret);
    runOrderLoops({ config, logger, listening: ({ port }) => logListening(config, logger, port, config.workers) });
    return;
  }
  return serve(config, logger, { loop: false });
}

/** The service and its HTTP server in this process, until SIGTERM/SIGINT drains and closes it. */
async function serve(config: Config, logger: Logger, { loop }: { loop: boolean }): Promise<void> {
  // INSPECT=1: stream every order actor to the Stately inspector. Loaded only when enabled.
  let inspector: OrderInspector | undefined;
  if (config.inspect.enabled) {
    try {
      logger.info({ url: config.inspect.url }, 'INSPECT on: order actors will stream to the Stately inspector');
      const { createOrderInspector } = await import('./inspector.js');
      inspector = createOrderInspector({ url: config.inspect.url, logger });
    } catch (err) {
      logger.error({ err }, 'INSPECT on, but the inspector could not be loaded; running without it');
    }
  }
  // An order loop: its members wake each other over IPC, and its /metrics are the whole service's.
  const loopParts = loop ? { bus: ipcClusterBus(), metrics: loopMetrics() } : undefined;
  let service: Service;
  try {
    service = await createService(config, logger, {
      ...(inspector ? { inspect: inspector.inspect } : {}),
      ...(loopParts ? { bus: loopParts.bus, metricsExposition: loopParts.metrics.exposition } : {}),
    });
  } catch (err) {
    // A JWKS file or a Redis that cannot be used: name it, as for a bad variable.
    process.stderr.write(`ordersaga: ${(err as Error).message}\n`);
    process.exit(1);
  }
  loopParts?.metrics.serve(service.metrics.registry);

  if (!loop && service.jwtSecret && !config.jwt.secret) await printDevTokens(config, service.jwtSecret);

  const server = createHttpServer(service.app, config.http, { logger });
  server.listen(config.port, config.host, () => {
    const info = server.address() as AddressInfo;
    if (loop) logger.debug({ instance: config.instanceId, threads: config.inventoryThreads }, 'order loop listening');
    else logListening(config, logger, info.port, 1);
  });
  server.on('error', (err) => {
    logger.fatal({ err }, 'server error');
    process.exit(1);
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, grace_ms: config.shutdownGraceMs }, 'shutting down');
    try {
      // During the grace period the server keeps answering: reads work, new orders get 503.
      await service.drain(config.shutdownGraceMs);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeIdleConnections' in server) server.closeIdleConnections();
      });
      await service.close();
      await inspector?.stop();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

function logListening(config: Config, logger: Logger, port: number, workers: number): void {
  const db = config.database.url ? redactUrl(config.database.url) : config.dbPath;
  logger.info({ url: `http://${config.host}:${port}`, db, instance: config.instanceId, workers, threads: config.inventoryThreads }, 'ordersaga listening');
}

async function printDevTokens(config: Config, secret: string): Promise<void> {
  const user = await mintToken({ secret, sub: 'alice', role: 'user' });
  const admin = await mintToken({ secret, sub: 'admin', role: 'admin' });
  process.stdout.write(
    `\nNo JWT_SECRET set: using the development secret in ${config.dbPath.replace(/[^/]+$/, '')}dev-jwt-secret\n` +
      `user token (sub=alice, 24h):  ${user}\nadmin token (sub=admin, 24h): ${admin}\n` +
      `more: npm run token -- --sub bob --role user\n\n`,
  );
}

/** A database URL fit for a log line: no password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
