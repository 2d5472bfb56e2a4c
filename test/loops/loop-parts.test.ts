import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { loopConfig, loopInstanceId } from '../../src/loops/loop.config.js';
import { run } from '../support/process.js';

describe('order loops configuration', () => {
  it('defaults WORKERS to one loop and takes a whole number from 1 to 64', () => {
    expect(loadConfig({}).workers).toBe(1);
    expect(loadConfig({ WORKERS: '1' }).workers).toBe(1);
    expect(loadConfig({ WORKERS: '64' }).workers).toBe(64);
    for (const bad of ['0', '65', '1.5', 'many']) expect(() => loadConfig({ WORKERS: bad }), bad).toThrowError(/WORKERS/);
  });

  it('gives each loop its share of the service-wide limits, and the per-user stream limit whole', () => {
    const config = loadConfig({ WORKERS: '3', MAX_LIVE_ORDERS: '1000', INVENTORY_THREADS: '2', SSE_MAX_STREAMS: '500', SSE_MAX_STREAMS_PER_USER: '10', DATABASE_POOL_SIZE: '10' });
    const loop = loopConfig(config);
    expect(loop).toMatchObject({ maxLiveOrders: 334, inventoryThreads: 1, sse: { maxStreams: 167, maxStreamsPerUser: 10 }, database: { poolSize: 4 } });
    expect(loop.rateLimit.storage.cluster).toBe(true);
    expect(loopConfig(loadConfig({ WORKERS: '2', MAX_LIVE_ORDERS: '1' })).maxLiveOrders).toBe(1);
    expect(loopInstanceId('ins_base', 3)).toBe('ins_base-3');
  });

  it('count one key once across two cluster workers with the cluster rate-limit store', async () => {
    const { code, stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'test/loops/fixtures/cluster-rate-limit.fixture.ts'], { POINTS: '10' });
    expect(code, stderr).toBe(0);
    const { accepted } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { accepted: number[] };
    expect(accepted).toHaveLength(2);
    expect(accepted[0]! + accepted[1]!).toBe(10);
  });
});

describe('the IPC bus of order loops', () => {
  it('carries what one loop publishes to every other loop, in order, and never back to it', async () => {
    const { code, stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'test/loops/fixtures/ipc-bus.fixture.ts'], {});
    expect(code, stderr).toBe(0);
    const received = JSON.parse(stdout.trim().split('\n').at(-1)!);
    const sent = [['changes', 'ord_1:2'], ['inbox', 'slot-0']];
    expect(received).toEqual({ 0: [], 1: sent, 2: sent });
  });
});
