import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite.stores.js';
import { ROOT } from '../support/process.js';
import { orderId, stateWrite } from './contract/harness.js';

/*
 * The cluster contract runs two connections in one process, where their writes take turns
 * at the event loop. Here the claimers are real processes on one file, claiming at the same
 * moment: only SQLite's write lock keeps them apart.
 */
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

interface Claim {
  order_id: string;
  epoch: number;
  by: string;
}

async function claimInProcesses(path: string, ids: readonly string[], mode: 'orphaned' | 'unfinished'): Promise<Claim[]> {
  const children = ids.map((id) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/sqlite-claimer.ts', path, id, mode], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const ready = new Promise<void>((resolve) => child.stdout.on('data', (d) => (out += d).startsWith('ready\n') && resolve()));
    const done = new Promise<Claim[]>((resolve, reject) =>
      child.once('exit', (code) => {
        if (code !== 0) return reject(new Error(`claimer ${id} exited with ${code}: ${err}`));
        resolve((JSON.parse(out.slice('ready\n'.length)) as Array<Omit<Claim, 'by'>>).map((c) => ({ ...c, by: id })));
      }),
    );
    return { child, ready, done };
  });
  // Every claimer has loaded and registered its lease: go, all at once.
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.end('go\n');
  return (await Promise.all(children.map((c) => c.done))).flat();
}

describe('processes opening one new SQLite file at once (order loops starting together)', () => {
  it('apply each migration once, and every one of them starts', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ordersaga-migrators-'));
    const path = join(dir, 'store.db');
    const children = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/sqlite-migrator.ts', path], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const ready = new Promise<void>((resolve) => child.stdout.on('data', (d) => String(d).startsWith('ready') && resolve()));
      const exited = new Promise<{ code: number | null; err: string }>((resolve) => child.once('exit', (code) => resolve({ code, err })));
      return { child, ready, exited };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.child.stdin.end('go\n');
    const results = await Promise.all(children.map((c) => c.exited));
    expect(results).toEqual(results.map(() => ({ code: 0, err: '' })));
    const store = openSqliteStore(path, createLogger('silent'));
    const rows = store.db.prepare<[], { version: number; n: number }>('SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version').all();
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    store.close();
  }, 60_000);
});

describe('claimers in separate processes on one SQLite file', () => {
  it('never take one order twice, and take exactly the orders of owners without a live lease', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ordersaga-claimers-'));
    const path = join(dir, 'store.db');
    const store = openSqliteStore(path, createLogger('silent'), { bus: { publish: () => undefined, subscribe: () => () => undefined } });
    const orphans = Array.from({ length: 1500 }, orderId);
    const kept = Array.from({ length: 30 }, orderId);
    await store.stores.states.commitTurn(() => orphans.map((id, i) => stateWrite(id, { owner: i % 2 ? 'dead' : 'vanished', epoch: 4, seq: 1 })));
    await store.cluster!.register('alive', 60_000);
    await store.stores.states.commitTurn(() => kept.map((id) => stateWrite(id, { owner: 'alive', epoch: 4, seq: 1 })));

    const claims = await claimInProcesses(path, ['p1', 'p2', 'p3'], 'orphaned');
    expect(new Set(claims.map((c) => c.order_id)).size).toBe(claims.length);
    expect(claims.map((c) => c.order_id).sort()).toEqual([...orphans].sort());
    expect(new Set(claims.map((c) => c.by)).size).toBeGreaterThan(1); // they did compete
    const row = store.db.prepare<[string], { owner: string; epoch: number }>('SELECT owner, epoch FROM order_snapshots WHERE order_id = ?');
    for (const c of claims) expect({ ...row.get(c.order_id) }).toEqual({ owner: c.by, epoch: 5 });
    for (const id of kept) expect({ ...row.get(id) }).toEqual({ owner: 'alive', epoch: 4 });
    store.close();
  }, 60_000);

  it('leave each order to the first claimUnfinished while its lease lives: every order claimed once', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ordersaga-claimers-'));
    const path = join(dir, 'store.db');
    const store = openSqliteStore(path, createLogger('silent'));
    const ids = Array.from({ length: 300 }, orderId);
    await store.stores.states.commitTurn(() => ids.map((id) => stateWrite(id, { owner: 'dead', epoch: 1, seq: 1 })));

    // Each claimer holds a live lease, so whoever claims first keeps every order from the others.
    const claims = await claimInProcesses(path, ['u1', 'u2', 'u3'], 'unfinished');
    const row = store.db.prepare<[string], { owner: string; epoch: number }>('SELECT owner, epoch FROM order_snapshots WHERE order_id = ?');
    expect(claims.map((c) => c.order_id).sort()).toEqual([...ids].sort());
    for (const c of claims) expect({ ...row.get(c.order_id) }).toEqual({ owner: c.by, epoch: 2 });
    store.close();
  }, 60_000);
});
