/*
 * Every SQL statement of the PostgreSQL adapter, in one place (as pg-boss keeps its
 * plans.ts). Each plan has a name: pg prepares a named statement once per connection and
 * then sends only its parameters (1.6 to 2.2x faster than unnamed on small statements here).
 *
 * Conventions:
 * - Batches travel as arrays (`unnest($1::text[], …)`): one statement whatever the size.
 * - A step's effect is one statement in autocommit where it can be, so it is one round trip
 *   and its own transaction. `ON CONFLICT DO NOTHING` keeps the idempotent outcomes of
 *   SQLite; when it did nothing, a second statement reads the row that won (a fresh
 *   snapshot: the conflicting transaction has committed by then).
 * - Stock rows are locked in one fixed order, by SKU (`ORDER BY sku FOR UPDATE`), and always
 *   before reservation rows, in every transaction that takes both (see postgres.inventory.ts).
 * - Row-locking CTEs are MATERIALIZED and the writes join them, so that the locks are taken
 *   in the CTE's order and before the writes, not in whatever order a join would visit rows.
 */

export interface Plan {
  name: string;
  text: string;
}

const plan = (name: string, text: string): Plan => ({ name, text });

/**
 * The fence of a step's effect, as CTEs for one statement (parameters: the writer's owner,
 * or null for an unfenced write, its epoch, and the order id). The order's state row is
 * read `FOR KEY SHARE`, and every change of owner locks that row `FOR UPDATE` first (the
 * claims below), so a takeover waits until this statement's transaction has committed, and
 * a statement that waited behind a takeover sees the new owner and is refused: a stale
 * owner never slips a write in between check and commit. KEY SHARE rather than SHARE: the
 * owner's own state commits (`FOR NO KEY UPDATE`) do not wait for its effects, nor they for
 * it, so an effect holding stock locks and a state commit cannot wait for each other in a
 * cycle (with SHARE they could: a sell holding its order's row and waiting for a batch's
 * stock, the batch waiting for a row the state commit holds, the commit for the sell's).
 * An order with no state row yet is allowed at epoch 1 (its first state commits after its
 * first step may have started). `allowed.ok` is what the effect is conditional on.
 */
const fenceCtes = (owner: string, epoch: string, orderId: string) => `
   fence AS MATERIALIZED (
     SELECT owner = ${owner} AND epoch = ${epoch} AS ok FROM order_snapshots
     WHERE order_id = ${orderId} AND ${owner}::text IS NOT NULL FOR KEY SHARE
   ),
   allowed AS MATERIALIZED (
     SELECT ${owner}::text IS NULL OR coalesce((SELECT ok FROM fence), ${epoch}::bigint = 1) AS ok
   )`;

// --- migrations ------------------------------------------------------------------------

/**
 * One lock per schema (advisory locks are per database; the key's second half is the
 * schema's hash, so migrators of two schemas in one database do not wait for each other).
 */
const migrationLock = `SELECT pg_advisory_xact_lock(1869771365, hashtext(current_schema()))`;
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
const appliedMigrations = 'SELECT version FROM schema_migrations ORDER BY version';
const recordMigration = 'INSERT INTO schema_migrations (version, name) VALUES ($1, $2)';

// --- order states ----------------------------------------------------------------------

const STORED = 'order_id, user_id, status, version AS seq, owner, epoch, view, snapshot';

const STATE_COLUMNS = ['order_id', 'user_id', 'status', 'state', 'snapshot', 'view', 'version', 'owner', 'epoch', 'created_at', 'updated_at'];
/** The most states one statement takes (11 parameters each, of at most 65,535). */
const MAX_STATES_PER_STATEMENT = 500;
const NAMED_STATES = 64;
const commitPlans = new Map<number, Plan>();

/**
 * The unit of work of one turn, as one statement (so one transaction and one round trip),
 * for `n` states: every state is inserted, or updated only where its writer still holds
 * the order's `(owner, epoch)`; each state written adds its `order_changes` row. Returns
 * the orders written; the others were fenced off. Multi-row VALUES, one plan per `n`: the
 * fastest form measured here (unnest of text arrays was the slowest, json_to_recordset
 * second). The caller passes each order once (an upsert may not touch a row twice), sorted
 * by order id, so two writers lock rows in the same order. Up to NAMED_STATES rows the plan is
 * named (prepared once per connection and size); larger turns are rare bursts, sent unnamed so
 * that a connection does not keep hundreds of big prepared statements.
 */
function commitStates(n: number): Plan {
  let cached = commitPlans.get(n);
  if (!cached) {
    const width = STATE_COLUMNS.length;
    const rows = Array.from({ length: n }, (_, r) => `(${STATE_COLUMNS.map((_, c) => `$${r * width + c + 1}`).join(', ')})`);
    cached = plan(
      n <= NAMED_STATES ? `states_commit_${n}` : '',
      `WITH written AS (
         INSERT INTO order_snapshots AS s (${STATE_COLUMNS.join(', ')})
         VALUES ${rows.join(', ')}
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, state = excluded.state, snapshot = excluded.snapshot,
           view = excluded.view, version = excluded.version, updated_at = excluded.updated_at
         WHERE s.owner = excluded.owner AND s.epoch = excluded.epoch
         RETURNING s.order_id, s.version, s.updated_at, s.view
       ),
       changes AS (
         INSERT INTO order_changes (order_id, seq, at, view)
         SELECT order_id, version, updated_at, view FROM written
         ON CONFLICT DO NOTHING
       )
       SELECT order_id FROM written`,
    );
    commitPlans.set(n, cached);
  }
  return cached;
}

const getView = plan('states_get_view', 'SELECT view FROM order_snapshots WHERE order_id = $1');

/** The list query for one combination of filters (8 plans, each with its own index use). */
function listViews(filters: { user: boolean; status: boolean; before: boolean }): Plan {
  const where: string[] = [];
  let n = 0;
  if (filters.user) where.push(`user_id = $${++n}`);
  if (filters.status) where.push(`status = $${++n}`);
  if (filters.before) where.push(`order_id < $${++n}`);
  const name = `states_list_${filters.user ? 'u' : ''}${filters.status ? 's' : ''}${filters.before ? 'b' : ''}`;
  return plan(name, `SELECT view FROM order_snapshots ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY order_id DESC LIMIT $${++n}`);
}

const listChanges = plan(
  'states_list_changes',
  'SELECT order_id, seq, at, view FROM order_changes WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
);

/**
 * An owner that holds a live lease (by the database's clock): its orders are not to be
 * claimed. A scalar subquery on purpose, not `EXISTS`: the planner turns `NOT EXISTS` into
 * an anti-join, and when a claimer's `FOR UPDATE` finds a row another claimer has just
 * taken, PostgreSQL rechecks the new row version against the join's old (empty) inner side
 * and lets it through, so both would claim it. A subquery in the filter is evaluated again
 * for the new version, which now names a live owner.
 */
const LIVE_OWNER = `coalesce((SELECT i.lease_until > now() AND NOT i.stopping FROM instances i WHERE i.instance_id = s.owner), false)`;

/**
 * Takes over every unfinished order that is `$1`'s own (a restart under the same
 * INSTANCE_ID) or whose owner holds no live lease (dead, frozen past its lease, or handed
 * over at shutdown). SKIP LOCKED: two claimers never take the same order, and a claimer
 * never waits behind an order whose state or effect is being written.
 */
const claimUnfinished = plan(
  'states_claim_unfinished',
  `WITH claimable AS MATERIALIZED (
     SELECT s.order_id FROM order_snapshots s
     WHERE s.status = 'processing' AND (s.owner = $1 OR NOT ${LIVE_OWNER})
     ORDER BY s.order_id FOR UPDATE OF s SKIP LOCKED
   )
   UPDATE order_snapshots s SET owner = $1, epoch = s.epoch + 1
   FROM claimable c WHERE s.order_id = c.order_id
   RETURNING ${STORED.split(', ').map((c) => `s.${c}`).join(', ')}`,
);

/**
 * The reaper's claim: up to `$2` unfinished orders of owners without a live lease, for `$1`,
 * which must hold a live lease itself (a claimer that froze past its own lease claims
 * nothing). Orders whose rows are locked (a write under way) are skipped until next time.
 */
const claimOrphaned = plan(
  'states_claim_orphaned',
  `WITH me AS MATERIALIZED (
     SELECT 1 FROM instances WHERE instance_id = $1 AND lease_until > now() AND NOT stopping
   ),
   claimable AS MATERIALIZED (
     SELECT s.order_id, s.owner AS prev_owner FROM order_snapshots s
     WHERE s.status = 'processing' AND s.owner <> $1 AND EXISTS (SELECT FROM me) AND NOT ${LIVE_OWNER}
     ORDER BY s.order_id LIMIT $2 FOR UPDATE OF s SKIP LOCKED
   )
   UPDATE order_snapshots s SET owner = $1, epoch = s.epoch + 1
   FROM claimable c WHERE s.order_id = c.order_id
   RETURNING ${STORED.split(', ').map((c) => `s.${c}`).join(', ')}, c.prev_owner`,
);

/** Locked `FOR UPDATE` first, as every change of owner is, so it waits for the order's fenced effects in flight. */
const claimParked = plan(
  'states_claim_parked',
  `WITH parked AS MATERIALIZED (
     SELECT order_id FROM order_snapshots WHERE order_id = $2 AND status = 'compensation_failed' FOR UPDATE
   )
   UPDATE order_snapshots s SET owner = $1, epoch = s.epoch + 1
   FROM parked p WHERE s.order_id = p.order_id AND s.status = 'compensation_failed'
   RETURNING ${STORED.split(', ').map((c) => `s.${c}`).join(', ')}`,
);

const saveView = plan(
  'states_save_view',
  `WITH saved AS (
     UPDATE order_snapshots SET view = $2 WHERE order_id = $1 RETURNING order_id, version, updated_at, view
   )
   INSERT INTO order_changes (order_id, seq, at, view) SELECT order_id, version, updated_at, view FROM saved ON CONFLICT DO NOTHING`,
);

// --- catalog ---------------------------------------------------------------------------

const PRODUCT = 'sku, name, price_cents, available, reserved, sold, added';

const getProduct = plan('catalog_get', `SELECT ${PRODUCT} FROM products WHERE sku = $1`);
const findProducts = plan('catalog_find', `SELECT ${PRODUCT} FROM products WHERE sku = ANY($1::text[])`);
const listProducts = plan('catalog_list', `SELECT ${PRODUCT} FROM products ORDER BY sku`);
/**
 * Creates or updates a product. Setting `available` adds the difference to `added`, so the
 * stock invariant holds; `xmax = 0` is true only for a freshly inserted row.
 */
const upsertProduct = plan(
  'catalog_upsert',
  `INSERT INTO products AS p (sku, name, price_cents, available, added, created_at, updated_at)
   VALUES ($1, $2, $3, $4, $4, $5, $5)
   ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents,
     added = p.added + (excluded.available - p.available), available = excluded.available, updated_at = excluded.updated_at
   RETURNING ${PRODUCT}, (xmax = 0) AS created`,
);

// --- order records ---------------------------------------------------------------------

const getOrder = plan('orders_get', 'SELECT id, user_id, status, items, total_cents, currency, created_at FROM orders WHERE id = $1');
/** Fenced (parameters 9 and 10: owner, epoch); returns whether it was allowed and whether it inserted. */
const placeOrder = plan(
  'orders_place',
  `WITH ${fenceCtes('$9', '$10', '$1')},
   ins AS (
     INSERT INTO orders (id, user_id, status, items, total_cents, currency, shipping, created_at, updated_at)
     SELECT $1, $2, 'placed', $3, $4, $5, $6, $7, $8 FROM allowed WHERE ok
     ON CONFLICT (id) DO NOTHING RETURNING id
   )
   SELECT (SELECT ok FROM allowed) AS allowed, EXISTS (SELECT FROM ins) AS inserted`,
);
/**
 * Closes the order, storing it from the request if it was never placed. One statement:
 * `ON CONFLICT … DO UPDATE` sees the latest committed row even when a placement commits
 * concurrently (a cancel while `placeOrder` is still in flight), which an INSERT followed
 * by an UPDATE in the same snapshot would miss.
 */
const closeOrder = plan(
  'orders_close',
  `WITH ${fenceCtes('$8', '$9', '$1')},
   closed AS (
     INSERT INTO orders AS o (id, user_id, status, items, total_cents, currency, shipping, created_at, updated_at)
     SELECT $1, $2, $3, $4, 0, 'USD', $5, $6, $7 FROM allowed WHERE ok
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
     WHERE o.status = 'placed'
   )
   SELECT (SELECT ok FROM allowed) AS allowed`,
);

// --- payments --------------------------------------------------------------------------

const CHARGE = 'charge_id, order_id, status, amount_cents, refunded_cents, decline_code';
const findCharge = plan('payments_find', `SELECT ${CHARGE} FROM payment_charges WHERE order_id = $1`);
const lockCharge = plan('payments_lock', `SELECT ${CHARGE} FROM payment_charges WHERE order_id = $1 FOR UPDATE`);
const insertCharge = plan(
  'payments_insert',
  `INSERT INTO payment_charges (charge_id, order_id, idempotency_key, status, amount_cents, refunded_cents, decline_code, created_at, updated_at)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
   ON CONFLICT DO NOTHING RETURNING charge_id`,
);
/** The first statement of a fenced transaction (the refund): whether `(owner, epoch)` holds the order, its row then `FOR KEY SHARE`. */
const checkFence = plan('fence_check', `WITH ${fenceCtes('$1', '$2', '$3')} SELECT ok AS allowed FROM allowed`);
const insertRefund = plan(
  'payments_refund',
  `INSERT INTO payment_refunds (refund_id, charge_id, order_id, idempotency_key, amount_cents, created_at)
   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
);
const markRefunded = plan(
  'payments_mark_refunded',
  `UPDATE payment_charges SET status = 'refunded', refunded_cents = amount_cents, updated_at = $2
   WHERE charge_id = $1 RETURNING ${CHARGE}`,
);

/**
 * The charge, inserted only while `(owner, epoch)` still holds the order (`fenceCtes`).
 * Returns `fenced` = true when refused. Measured against the unfenced insert in
 * bench/pg-fence.ts.
 */
const insertChargeFenced = plan(
  'payments_insert_fenced',
  `WITH ${fenceCtes('$9', '$10', '$2')},
   ins AS (
     INSERT INTO payment_charges (charge_id, order_id, idempotency_key, status, amount_cents, refunded_cents, decline_code, created_at, updated_at)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8 FROM allowed WHERE ok
     ON CONFLICT DO NOTHING RETURNING charge_id
   )
   SELECT NOT (SELECT ok FROM allowed) AS fenced, (SELECT charge_id FROM ins) AS charge_id`,
);

// --- shipments and notifications -------------------------------------------------------

const findShipment = plan('shipments_find', 'SELECT shipment_id, order_id, carrier, tracking_number, country FROM shipments WHERE order_id = $1');
const insertShipment = plan(
  'shipments_insert',
  `WITH ${fenceCtes('$8', '$9', '$2')},
   ins AS (
     INSERT INTO shipments (shipment_id, order_id, idempotency_key, carrier, tracking_number, country, created_at)
     SELECT $1, $2, $3, $4, $5, $6, $7 FROM allowed WHERE ok ON CONFLICT DO NOTHING RETURNING shipment_id
   )
   SELECT (SELECT ok FROM allowed) AS allowed, EXISTS (SELECT FROM ins) AS inserted`,
);

const NOTIFICATION = 'notification_id, order_id, kind, recipient, created_at';
const insertNotification = plan(
  'notifications_insert',
  `WITH ${fenceCtes('$8', '$9', '$3')},
   ins AS (
     INSERT INTO notifications (notification_id, idempotency_key, order_id, kind, recipient, payload, created_at)
     SELECT $1, $2, $3, $4, $5, $6, $7 FROM allowed WHERE ok ON CONFLICT (idempotency_key) DO NOTHING RETURNING notification_id
   )
   SELECT (SELECT ok FROM allowed) AS allowed, EXISTS (SELECT FROM ins) AS inserted`,
);
const notificationByKey = plan('notifications_by_key', `SELECT ${NOTIFICATION} FROM notifications WHERE idempotency_key = $1`);
const notificationsForOrder = plan(
  'notifications_for_order',
  `SELECT ${NOTIFICATION} FROM notifications WHERE order_id = $1 ORDER BY created_at, notification_id`,
);

// --- idempotency keys ------------------------------------------------------------------

const IDEMPOTENCY = 'user_id, key, request_hash, order_id, request, response_status, response_body, created_at, expires_at';
/**
 * Claims the key: inserted, or taken over if the stored entry has expired; a live entry is
 * left alone (the WHERE of DO UPDATE is false) and the statement returns nothing. Two
 * instances claiming one key at once: the second waits for the first's row, then finds it
 * live. One statement, so no window between "expired?" and "claim".
 */
const claimKey = plan(
  'idempotency_claim',
  `INSERT INTO idempotency_keys AS k (${IDEMPOTENCY}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
   ON CONFLICT (user_id, key) DO UPDATE SET request_hash = excluded.request_hash, order_id = excluded.order_id,
     request = excluded.request, response_status = excluded.response_status, response_body = excluded.response_body,
     created_at = excluded.created_at, expires_at = excluded.expires_at
   WHERE k.expires_at <= excluded.created_at
   RETURNING ${IDEMPOTENCY}`,
);
const getKey = plan('idempotency_get', `SELECT ${IDEMPOTENCY} FROM idempotency_keys WHERE user_id = $1 AND key = $2`);
const completeKey = plan(
  'idempotency_complete',
  'UPDATE idempotency_keys SET response_status = $1, response_body = $2 WHERE user_id = $3 AND key = $4 AND response_status IS NULL',
);
const purgeKeys = plan(
  'idempotency_purge',
  'WITH gone AS (DELETE FROM idempotency_keys WHERE expires_at <= $1 RETURNING 1) SELECT count(*) AS n FROM gone',
);

// --- audit log -------------------------------------------------------------------------

const AUDIT = 'id, at, actor, role, issuer, action, target, address, request_id, status, code, details';
const recordAudit = plan('audit_record', `INSERT INTO audit_log (${AUDIT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`);
/** One named plan per combination of filters; `$1` is the cursor (`~` sorts after every id: the first page). */
const auditLists = new Map<string, Plan>();
const auditList = (filters: { action: boolean; actor: boolean }): Plan => {
  const key = `${filters.action ? 'action' : ''}_${filters.actor ? 'actor' : ''}`;
  let found = auditLists.get(key);
  if (!found) {
    const where = ['id < $1'];
    if (filters.action) where.push(`action = $${where.length + 1}`);
    if (filters.actor) where.push(`actor = $${where.length + 1}`);
    found = plan(`audit_list${key}`, `SELECT ${AUDIT} FROM audit_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT $${where.length + 1}`);
    auditLists.set(key, found);
  }
  return found;
};

// --- inventory -------------------------------------------------------------------------

/*
 * Reserve, release and sell are one statement each, correct on their own (in autocommit)
 * and inside a batch transaction. Each returns one row describing what it found, so the
 * adapter can answer as SQLite does: the reservation, or a failure with its code. None of
 * them fails for an expected outcome (out of stock, unknown SKU, a tombstone), so one
 * order's outcome never aborts a batch.
 */

/**
 * Reserves all lines or none. `prior` is the order's reservation or tombstone (then
 * nothing is touched); otherwise the products are locked by SKU, each line is checked
 * against the locked (latest committed) stock, and only if every line fits are the
 * reservation inserted and the stock moved. `inserted = false` with no prior row and no
 * shortfall means a release inserted the tombstone concurrently: the adapter runs it again.
 * Fenced: nothing is inserted or moved unless `allowed`. Parameters: order id, SKUs,
 * quantities (in request order), items JSON, now, owner, epoch.
 */
const reserve = plan(
  'inventory_reserve',
  `WITH ${fenceCtes('$6', '$7', '$1')},
   req AS (
     SELECT sku, sum(quantity)::bigint AS quantity, min(line) AS line
     FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS r(sku, quantity, line) GROUP BY sku
   ),
   prior AS MATERIALIZED (
     SELECT status, items FROM reservations WHERE order_id = $1 FOR UPDATE
   ),
   locked AS MATERIALIZED (
     SELECT p.sku, p.available FROM products p
     WHERE p.sku = ANY($2::text[]) AND NOT EXISTS (SELECT FROM prior)
     ORDER BY p.sku FOR UPDATE
   ),
   short AS (
     SELECT r.sku, r.quantity, l.available FROM req r LEFT JOIN locked l ON l.sku = r.sku
     WHERE NOT EXISTS (SELECT FROM prior) AND (l.sku IS NULL OR l.available < r.quantity)
     ORDER BY r.line LIMIT 1
   ),
   ins AS (
     INSERT INTO reservations (order_id, status, items, created_at, updated_at)
     SELECT $1, 'reserved', $4, $5, $5
     WHERE NOT EXISTS (SELECT FROM prior) AND NOT EXISTS (SELECT FROM short)
       AND (SELECT count(*) FROM locked) = (SELECT count(*) FROM req) AND (SELECT ok FROM allowed)
     ON CONFLICT (order_id) DO NOTHING RETURNING 1
   ),
   taken AS (
     UPDATE products p SET available = p.available - r.quantity, reserved = p.reserved + r.quantity, updated_at = $5
     FROM req r WHERE p.sku = r.sku AND EXISTS (SELECT FROM ins)
     RETURNING 1
   )
   SELECT (SELECT ok FROM allowed) AS allowed, (SELECT status FROM prior) AS prior_status, (SELECT items FROM prior) AS prior_items,
     (SELECT sku FROM short) AS short_sku, (SELECT quantity FROM short) AS short_requested,
     (SELECT available FROM short) AS short_available,
     EXISTS (SELECT FROM ins) AS inserted, (SELECT count(*) FROM taken) AS lines`,
);

/** The fence (owner $3, epoch $4), then the lines of the order's reservation, if it is still `reserved` and the fence allows, locked by SKU. */
const reservedLines = (status: string) => `${fenceCtes('$3', '$4', '$1')},
   prior AS MATERIALIZED (
     SELECT status, items FROM reservations WHERE order_id = $1 AND (SELECT ok FROM allowed) FOR UPDATE
   ),
   lines AS MATERIALIZED (
     SELECT p.sku, l.quantity FROM products p
     JOIN (SELECT i.sku, sum(i.quantity)::bigint AS quantity
           FROM prior, json_to_recordset(prior.items::json) AS i(sku text, quantity bigint)
           WHERE prior.status = '${status}' GROUP BY i.sku) l ON l.sku = p.sku
     ORDER BY p.sku FOR UPDATE OF p
   )`;

/**
 * Releases the order's reservation once, or leaves a tombstone (`released`, no items) so
 * that a reserve still queued finds it and takes nothing. A shipped (`committed`)
 * reservation is left alone and reported. `tombstoned = false` with no prior row means a
 * reserve inserted its row concurrently: the adapter runs it again.
 * Parameters: order id, now, owner, epoch.
 */
const release = plan(
  'inventory_release',
  `WITH ${reservedLines('reserved')},
   given AS (
     UPDATE products p SET available = p.available + l.quantity, reserved = p.reserved - l.quantity, updated_at = $2
     FROM lines l WHERE p.sku = l.sku RETURNING 1
   ),
   released AS (
     UPDATE reservations SET status = 'released', updated_at = $2
     WHERE order_id = $1 AND EXISTS (SELECT FROM prior WHERE status = 'reserved') RETURNING 1
   ),
   tomb AS (
     INSERT INTO reservations (order_id, status, items, created_at, updated_at)
     SELECT $1, 'released', '[]', $2, $2 WHERE NOT EXISTS (SELECT FROM prior) AND (SELECT ok FROM allowed)
     ON CONFLICT (order_id) DO NOTHING RETURNING 1
   )
   SELECT (SELECT ok FROM allowed) AS allowed, (SELECT status FROM prior) AS prior_status, (SELECT items FROM prior) AS prior_items,
     EXISTS (SELECT FROM tomb) AS tombstoned, (SELECT count(*) FROM given) + (SELECT count(*) FROM released) AS changed`,
);

/**
 * Turns the order's reservation into sold stock and marks the order shipped, once.
 * Parameters: order id, now, owner, epoch.
 */
const sell = plan(
  'inventory_sell',
  `WITH ${reservedLines('reserved')},
   moved AS (
     UPDATE products p SET sold = p.sold + l.quantity, reserved = p.reserved - l.quantity, updated_at = $2
     FROM lines l WHERE p.sku = l.sku RETURNING 1
   ),
   sold AS (
     UPDATE reservations SET status = 'committed', updated_at = $2
     WHERE order_id = $1 AND EXISTS (SELECT FROM prior WHERE status = 'reserved') RETURNING 1
   ),
   shipped AS (
     UPDATE orders SET status = 'shipped', updated_at = $2
     WHERE id = $1 AND status = 'placed' AND EXISTS (SELECT FROM prior WHERE status = 'reserved') RETURNING 1
   )
   SELECT (SELECT ok FROM allowed) AS allowed, (SELECT status FROM prior) AS prior_status, (SELECT items FROM prior) AS prior_items,
     (SELECT count(*) FROM moved) + (SELECT count(*) FROM sold) + (SELECT count(*) FROM shipped) AS changed`,
);

/**
 * The first statement of a batch transaction: locks, in SKU order, every product the
 * batch may touch (the reserves' lines and the released reservations' lines), so that the
 * whole transaction takes its stock locks in one fixed order however its orders interleave.
 * Parameters: the reserves' SKUs, the releases' order ids.
 */
const lockBatch = plan(
  'inventory_lock_batch',
  `SELECT sku FROM products
   WHERE sku = ANY($1::text[])
      OR sku IN (SELECT i.sku FROM reservations r, json_to_recordset(r.items::json) AS i(sku text, quantity bigint)
                 WHERE r.order_id = ANY($2::text[]) AND r.status = 'reserved')
   ORDER BY sku FOR UPDATE`,
);

// --- instances, the inbox and change notifications (several instances) ---------------

/*
 * Leases are kept by the database's clock (`now()`) alone: no instance compares its own
 * clock with another's. Channels: `ordersaga_inbox` (payload: the owner to wake),
 * `ordersaga_changes` (payload: `<instance> <order>:<seq> …`), `ordersaga_handover` (an
 * instance has let its orders go). Notifications only wake; every reader also polls.
 */
const registerInstance = plan(
  'instances_register',
  `INSERT INTO instances (instance_id, started_at, lease_until, stopping)
   VALUES ($1, now(), now() + $2 * interval '1 millisecond', false)
   ON CONFLICT (instance_id) DO UPDATE SET started_at = now(), lease_until = excluded.lease_until, stopping = false
   RETURNING lease_until`,
);
/** Extends a lease that still holds; a lease already past (a process frozen too long) is not revived. */
const renewLease = plan(
  'instances_renew',
  `UPDATE instances SET lease_until = now() + $2 * interval '1 millisecond'
   WHERE instance_id = $1 AND NOT stopping AND lease_until > now() RETURNING lease_until`,
);
/** Shutdown handover: the instance's orders are claimable at once; the others are woken. */
const handOver = plan(
  'instances_hand_over',
  `WITH stopped AS (UPDATE instances SET stopping = true, lease_until = now() WHERE instance_id = $1 RETURNING instance_id)
   SELECT pg_notify('ordersaga_handover', instance_id) FROM stopped`,
);
/** A new instance says it is there (on the handover channel: the others run a reaper round, which also counts instances). */
const announce = plan('instances_announce', `SELECT pg_notify('ordersaga_handover', $1)`);
const othersLive = plan(
  'instances_others_live',
  `SELECT count(*) AS n FROM instances WHERE instance_id <> $1 AND lease_until > now() AND NOT stopping`,
);

/** Where an order's events go: its owner, whether that owner's lease holds, and the order's status. */
const orderOwner = plan(
  'inbox_owner',
  `SELECT s.owner, s.status, ${LIVE_OWNER} AS owner_live FROM order_snapshots s WHERE s.order_id = $1`,
);
/** Stores an event for the order's owner and wakes it (the notification is sent at commit, after the row). */
const postEvent = plan(
  'inbox_post',
  `WITH ev AS (INSERT INTO order_inbox (order_id, kind, created_at) VALUES ($1, $2, now()) RETURNING id)
   SELECT id, pg_notify('ordersaga_inbox', coalesce((SELECT owner FROM order_snapshots WHERE order_id = $1), '')) FROM ev`,
);
/** Events waiting for orders `$1` owns, oldest first. */
const pendingEvents = plan(
  'inbox_pending',
  `SELECT b.id, b.order_id, b.kind FROM order_inbox b JOIN order_snapshots s ON s.order_id = b.order_id
   WHERE b.applied_at IS NULL AND s.owner = $1 ORDER BY b.id LIMIT 100`,
);
const settleEvent = plan(
  'inbox_settle',
  `UPDATE order_inbox SET applied_at = now(), result_status = $2, result_body = $3 WHERE id = $1 AND applied_at IS NULL`,
);
const getEvent = plan('inbox_get', 'SELECT applied_at IS NOT NULL AS applied, result_status, result_body FROM order_inbox WHERE id = $1');

/** Housekeeping: events answered, and instances whose lease ended, more than a day ago. */
const purgeCluster = plan(
  'cluster_purge',
  `WITH events AS (DELETE FROM order_inbox WHERE applied_at < now() - interval '1 day' RETURNING 1),
   gone AS (DELETE FROM instances WHERE lease_until < now() - interval '1 day' RETURNING 1)
   SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM gone) AS instances`,
);

const notifyChanges = plan('changes_notify', `SELECT pg_notify('ordersaga_changes', $1)`);
/** The committed changes named by (order id, seq) pairs. */
const changesAt = plan(
  'changes_at',
  `SELECT c.order_id, c.seq, c.view FROM order_changes c
   JOIN unnest($1::text[], $2::bigint[]) AS w(order_id, seq) ON c.order_id = w.order_id AND c.seq = w.seq
   ORDER BY c.order_id, c.seq`,
);

export const plans = {
  checkFence,
  claimOrphaned,
  registerInstance,
  renewLease,
  handOver,
  othersLive,
  announce,
  orderOwner,
  postEvent,
  pendingEvents,
  settleEvent,
  getEvent,
  notifyChanges,
  changesAt,
  purgeCluster,
  migrationLock,
  createMigrationsTable,
  appliedMigrations,
  recordMigration,
  commitStates,
  MAX_STATES_PER_STATEMENT,
  getView,
  listViews,
  listChanges,
  claimUnfinished,
  claimParked,
  saveView,
  getProduct,
  findProducts,
  listProducts,
  upsertProduct,
  getOrder,
  placeOrder,
  closeOrder,
  findCharge,
  lockCharge,
  insertCharge,
  insertRefund,
  markRefunded,
  insertChargeFenced,
  findShipment,
  insertShipment,
  insertNotification,
  notificationByKey,
  notificationsForOrder,
  claimKey,
  getKey,
  completeKey,
  purgeKeys,
  recordAudit,
  auditList,
  reserve,
  release,
  sell,
  lockBatch,
} as const;
