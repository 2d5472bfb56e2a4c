import type { StockFence } from '../../workers/inventory.wire.js';
import type { Db } from './sqlite.database.js';

/**
 * The fence of a step's effect on SQLite, the rule of PostgreSQL's `fenceCtes`: the write
 * is allowed unfenced, or while the order's state row names the fence's owner and epoch,
 * or at epoch 1 while the order has no state row yet (its first state commits after its
 * first step may have started). Call it inside the effect's write transaction: every
 * change of owner (a claim) is a write too, and SQLite has one writer at a time, so no
 * takeover can come between this check and the effect's commit.
 */
export function createFenceCheck(db: Db): (orderId: string, fence: StockFence | undefined) => boolean {
  const holder = db.prepare<[string], { owner: string; epoch: number }>('SELECT owner, epoch FROM order_snapshots WHERE order_id = ?');
  return (orderId, fence) => {
    if (!fence) return true;
    const row = holder.get(orderId);
    return row ? row.owner === fence.owner && row.epoch === fence.epoch : fence.epoch === 1;
  };
}
