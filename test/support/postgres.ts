import pg from 'pg';

/*
 * PostgreSQL for the tests: where it is, whether it is there, and a database of its own for
 * each test file (or each service a test starts), dropped afterwards. Also the vitest
 * global setup of the `postgres` project (`setup`, `teardown`): one template database,
 * migrated once, that every test database is copied from.
 *
 * A database per test file, as the driver measurements recommend: a copy of a migrated
 * template took 200 to 450 ms to create and drop here. Schemas were faster, but advisory
 * locks and LISTEN/NOTIFY channels are per database, so tests in two schemas of one
 * database would see each other's locks and notifications (phase 2 uses both).
 */

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** How to run the PostgreSQL suites, said once when they are skipped. */
export const SKIP_LINE =
  `PostgreSQL suites skipped: no server at ${redact(TEST_DATABASE_URL)}. ` +
  'Start one there (or set TEST_DATABASE_URL) to run them; REQUIRE_POSTGRES=1 turns this skip into a failure.';

/**
 * Whether the PostgreSQL suites run: true if the server answers. If it does not, false,
 * unless REQUIRE_POSTGRES=1, which makes it an error (so CI cannot pass by skipping them).
 */
export async function postgresAvailable(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    if (env.REQUIRE_POSTGRES === '1') {
      throw new Error(`REQUIRE_POSTGRES=1, but PostgreSQL at ${redact(TEST_DATABASE_URL)} does not answer: ${(err as Error).message}`);
    }
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

declare module 'vitest' {
  interface ProvidedContext {
    /** The migrated template test databases are copied from (global setup of the `postgres` project). */
    postgresTemplate: string;
  }
}

let counter = 0;

export interface TestDatabase {
  name: string;
  /** TEST_DATABASE_URL pointing at this database: what a service or store under test connects to. */
  url: string;
  drop(): Promise<void>;
}

const urlFor = (name: string) => {
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
};

/**
 * A new database, copied from the migrated template when there is one (in vitest's
 * `postgres` project), else empty; `drop()` removes it, closing whatever is still connected.
 */
export async function createTestDatabase(label: string, options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const tag = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 20);
  const name = `ordersaga_t_${tag}_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  const template = options.empty ? 'template0' : await providedTemplate();
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  return {
    name,
    url: urlFor(name),
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

async function providedTemplate(): Promise<string> {
  try {
    const { inject } = await import('vitest');
    return inject('postgresTemplate') ?? 'template0';
  } catch {
    return 'template0';
  }
}

const templateName = `ordersaga_tpl_${process.pid}`;

/** Global setup of the `postgres` project: creates and migrates the template, once per run. */
export async function setup(project: { provide(key: 'postgresTemplate', value: string): void }): Promise<void> {
  const { openPool, migrate } = await import('../../src/store/postgres/postgres.database.js');
  await admin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${templateName} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${templateName} TEMPLATE template0`);
  });
  const pool = openPool({ url: urlFor(templateName), max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end(); // nobody may be connected to a template while it is copied
  }
  project.provide('postgresTemplate', templateName);
}

export async function teardown(): Promise<void> {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${templateName} WITH (FORCE)`));
}

/** One short-lived connection to TEST_DATABASE_URL. */
export async function admin<T>(fn: (client: pg.Client) => Promise<T>, url = TEST_DATABASE_URL): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
