/**
 * What the phase-2 fence costs on an effect write: the plain `insertCharge` against the
 * prototype `insertChargeFenced` (same insert, checked against the order's state row with
 * FOR SHARE), on a throwaway database. Interleaved rounds, so the machine's drift hits both
 * alike; prints the median of each round's per-insert time.
 *
 *   npx tsx bench/pg-fence.ts [inserts per round = 400] [rounds = 3]
 *
 * Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 */
import pg from 'pg';
import { newId } from '../src/domain/ids.js';
import { createLogger } from '../src/logger.js';
import { run } from '../src/store/postgres/postgres.database.js';
import { plans } from '../src/store/postgres/postgres.plans.js';
import { openPostgresStore } from '../src/store/postgres/postgres.stores.js';

const N = Number(process.argv[2] ?? 400);
const ROUNDS = Number(process.argv[3] ?? 3);
const base = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `ordersaga_bench_fence_${process.pid}`;
const admin = async (sql: string) => {
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  await c.query(sql);
  await c.end();
};

await admin(`CREATE DATABASE ${name}`);
const url = new URL(base);
url.pathname = `/${name}`;
const store = await openPostgresStore({ url: url.toString(), logger: createLogger('silent'), poolSize: 2 });
try {
  const now = () => new Date().toISOString();
  // Orders with a state row, as every order past its first commit has.
  const ids = Array.from({ length: N * ROUNDS * 2 + 40 }, () => newId('ord'));
  for (let i = 0; i < ids.length; i += 400) {
    await store.stores.states.commitTurn(() =>
      ids.slice(i, i + 400).map((id) => ({
        order_id: id, user_id: 'u', status: 'processing', state: 'paying', seq: 1, owner: 'me', epoch: 1,
        view: { order_id: id } as never, snapshot: '{}', created_at: now(), updated_at: now(),
      })),
    );
  }
  let next = 0;
  const plain = async () => {
    const id = ids[next++]!;
    await run(store.pool, plans.insertCharge, [newId('ch'), id, `${id}:capture`, 'captured', 100, 0, null, now()]);
  };
  const fenced = async () => {
    const id = ids[next++]!;
    await run(store.pool, plans.insertChargeFenced, [newId('ch'), id, `${id}:capture`, 'captured', 100, 0, null, now(), 'me', 1]);
  };
  const time = async (fn: () => Promise<void>) => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await fn();
    return (performance.now() - t0) / N;
  };
  for (let i = 0; i < 20; i++) (await plain(), await fenced()); // warm: prepare both statements
  const results: Array<{ plain: number; fenced: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['plain', 'fenced'] : ['fenced', 'plain'];
    const round: Record<string, number> = {};
    for (const which of order) round[which] = await time(which === 'plain' ? plain : fenced);
    results.push(round as { plain: number; fenced: number });
    console.log(`round ${r + 1}: plain ${round.plain!.toFixed(3)} ms, fenced ${round.fenced!.toFixed(3)} ms per insert (${round.fenced! >= round.plain! ? '+' : ''}${(((round.fenced! - round.plain!) / round.plain!) * 100).toFixed(0)} %)`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const p = median(results.map((r) => r.plain));
  const f = median(results.map((r) => r.fenced));
  console.log(`median of ${ROUNDS} rounds x ${N} sequential inserts: plain ${p.toFixed(3)} ms, fenced ${f.toFixed(3)} ms (+${(f - p).toFixed(3)} ms)`);
} finally {
  await store.close();
  await admin(`DROP DATABASE ${name} WITH (FORCE)`);
}
