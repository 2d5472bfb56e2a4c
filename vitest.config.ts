import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import { postgresAvailable, SKIP_LINE } from './test/support/postgres.js';

/*
 * Two projects. `sqlite` runs every test on the embedded store. `postgres` runs the
 * PostgreSQL adapter's own tests and, with TEST_STORE=postgres, the store-independent HTTP,
 * durability and property suites again on PostgreSQL (startTestService gives each service a
 * database of its own). Tests that are about SQLite itself (its file, its connection, server
 * processes reading that file, the upgrade of a SQLite release) stay in `sqlite` only; see
 * docs/testing.md.
 *
 * Without a server at TEST_DATABASE_URL the `postgres` project is left out with one line
 * saying how to run it; with REQUIRE_POSTGRES=1 (CI) a missing server fails the run.
 */
const BOTH_STORES = [
  'test/http/audit.api.test.ts',
  'test/http/auth-and-errors.test.ts',
  'test/http/concurrency.test.ts',
  'test/http/idempotency.test.ts',
  'test/http/inventory.api.test.ts',
  'test/http/orders.api.test.ts',
  'test/http/order-history.test.ts',
  'test/http/order-events.test.ts',
  'test/http/overload.test.ts',
  'test/http/metrics.test.ts',
  'test/http/readiness.test.ts',
  'test/durability/compensation-failed.test.ts',
  'test/durability/crash-recovery.test.ts',
  'test/durability/durable-reads.test.ts',
  'test/durability/graceful-shutdown.test.ts',
  'test/durability/worker-crash.test.ts',
  'test/property/order-service.property.test.ts',
  // Several order loops: on PostgreSQL now; on SQLite once its cluster store is merged (test/loops/support.ts).
  'test/loops/*.test.ts',
];
const POSTGRES_ONLY = ['test/store/postgres*.test.ts', 'test/http/rate-limit.postgres.test.ts', 'test/cluster/*.test.ts'];

export default defineConfig(async () => {
  const withPostgres = await postgresAvailable();
  // vitest may evaluate this config more than once per run: say it once.
  if (!withPostgres && !process.env.ORDERSAGA_POSTGRES_SKIP_SAID) {
    process.env.ORDERSAGA_POSTGRES_SKIP_SAID = '1';
    console.warn(SKIP_LINE);
  }
  const projects: TestProjectInlineConfiguration[] = [
    { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'], exclude: POSTGRES_ONLY } },
  ];
  if (withPostgres) {
    projects.push({
      extends: true,
      test: {
        name: 'postgres',
        include: [...POSTGRES_ONLY, ...BOTH_STORES],
        env: { TEST_STORE: 'postgres' },
        // One migrated template per run; each test file (each service) gets a database copied from it.
        globalSetup: ['test/support/postgres.ts'],
      },
    });
  }
  return {
    test: {
      testTimeout: 30_000,
      hookTimeout: 30_000,
      // Each file starts real worker pools and stores; two at a time suits a 2-core machine.
      maxWorkers: 2,
      // The default output, then the files that did not pass named once more at its end.
      reporters: ['default', './test/support/unfinished.reporter.ts'],
      projects,
    },
  };
});
