/**
 * Versioned schema. Each migration runs once, in order, inside one transaction with
 * its bookkeeping row; never edit a shipped migration, add the next one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      -- Stock invariant, per SKU, at all times: added = available + reserved + sold.
      CREATE TABLE products (
        sku          TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
        available    INTEGER NOT NULL CHECK (available >= 0),
        reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
        sold         INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
        added        INTEGER NOT NULL DEFAULT 0,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        CHECK (added = available + reserved + sold)
      ) STRICT;

      CREATE TABLE orders (
        id           TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('placed', 'shipped', 'cancelled', 'failed')),
        items        TEXT NOT NULL,
        total_cents  INTEGER NOT NULL,
        currency     TEXT NOT NULL,
        shipping     TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      ) STRICT;

      -- One row per order: the reservation, or the tombstone of one released before it was made.
      CREATE TABLE reservations (
        order_id     TEXT PRIMARY KEY,
        status       TEXT NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
        items        TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      ) STRICT;

      -- The simulated payment gateway's own ledger. One charge per order at most.
      CREATE TABLE payment_charges (
        charge_id       TEXT PRIMARY KEY,
        order_id        TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL UNIQUE,
        status          TEXT NOT NULL CHECK (status IN ('captured', 'refunded', 'declined', 'voided')),
        amount_cents    INTEGER NOT NULL CHECK (amount_cents >= 0),
        refunded_cents  INTEGER NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
        decline_code    TEXT,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
      ) STRICT;

      CREATE TABLE payment_refunds (
        refund_id       TEXT PRIMARY KEY,
        charge_id       TEXT NOT NULL REFERENCES payment_charges (charge_id),
        order_id        TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        amount_cents    INTEGER NOT NULL CHECK (amount_cents > 0),
        created_at      TEXT NOT NULL
      ) STRICT;

      CREATE TABLE shipments (
        shipment_id     TEXT PRIMARY KEY,
        order_id        TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL UNIQUE,
        carrier         TEXT NOT NULL,
        tracking_number TEXT NOT NULL,
        country         TEXT NOT NULL,
        created_at      TEXT NOT NULL
      ) STRICT;

      CREATE TABLE notifications (
        notification_id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        order_id        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      TEXT NOT NULL
      ) STRICT;
      CREATE INDEX notifications_by_order ON notifications (order_id);

      -- Each order actor's persisted snapshot: what status lookups and recovery read.
      CREATE TABLE order_snapshots (
        order_id     TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL,
        status       TEXT NOT NULL,
        state        TEXT NOT NULL,
        snapshot     TEXT NOT NULL,
        version      INTEGER NOT NULL,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      ) STRICT;
      CREATE INDEX order_snapshots_by_user ON order_snapshots (user_id, order_id DESC);
      CREATE INDEX order_snapshots_by_status ON order_snapshots (status, order_id DESC);
    `,
  },
  {
    version: 2,
    name: 'idempotency keys',
    sql: `
      -- One row per (caller, Idempotency-Key): the order it created and, once answered, the answer.
      CREATE TABLE idempotency_keys (
        user_id         TEXT NOT NULL,
        key             TEXT NOT NULL,
        request_hash    TEXT NOT NULL,
        order_id        TEXT NOT NULL,
        request         TEXT NOT NULL,
        response_status INTEGER,
        response_body   TEXT,
        created_at      TEXT NOT NULL,
        expires_at      TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
      ) STRICT;
      CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    `,
  },
  {
    version: 3,
    name: 'order views and ownership',
    sql: `
      -- What the API shows of each state, computed when it is committed (JSON); null for
      -- rows written before views existed, which the engine fills in at start.
      ALTER TABLE order_snapshots ADD COLUMN view TEXT;
      -- The fence: only the owner holding the current epoch writes the order's state, and
      -- every change of owner bumps the epoch. The version column is the change sequence number.
      ALTER TABLE order_snapshots ADD COLUMN owner TEXT NOT NULL DEFAULT '';
      ALTER TABLE order_snapshots ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 4,
    name: 'order history and audit log',
    sql: `
      -- Every committed change of every order, as the API showed it then (the view, JSON).
      CREATE TABLE order_changes (
        order_id  TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        at        TEXT NOT NULL,
        view      TEXT NOT NULL,
        PRIMARY KEY (order_id, seq)
      ) STRICT, WITHOUT ROWID;
      -- Orders stored before the history have their latest state as their first change.
      INSERT INTO order_changes (order_id, seq, at, view)
        SELECT order_id, version, updated_at, view FROM order_snapshots WHERE view IS NOT NULL;

      -- Admin actions: who, what, to what, from where, and how it ended. Ids sort by time.
      CREATE TABLE audit_log (
        id       TEXT PRIMARY KEY,
        at       TEXT NOT NULL,
        actor    TEXT NOT NULL,
        role     TEXT NOT NULL,
        action   TEXT NOT NULL,
        target   TEXT NOT NULL,
        address  TEXT,
        status   INTEGER NOT NULL,
        code     TEXT,
        details  TEXT
      ) STRICT;
    `,
  },
  {
    version: 5,
    name: 'audit log: issuer, request id, lists by actor and action',
    sql: `
      ALTER TABLE audit_log ADD COLUMN issuer TEXT;
      ALTER TABLE audit_log ADD COLUMN request_id TEXT;
      -- Filtered pages walk one of these newest first, as the unfiltered ones walk the key.
      CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
      CREATE INDEX audit_log_by_action ON audit_log (action, id);
    `,
  },
  {
    version: 6,
    name: 'instances, leases and the order inbox',
    sql: `
      -- One row per order loop (process) that ever ran on this file: its lease. Times are
      -- epoch milliseconds by Date.now(): every process sharing the file runs on one
      -- machine, so one clock. An order whose owner has no live lease here (expired,
      -- stopping, or no row) may be claimed by any live loop.
      CREATE TABLE instances (
        instance_id  TEXT PRIMARY KEY,
        started_at   INTEGER NOT NULL,
        lease_until  INTEGER NOT NULL,
        stopping     INTEGER NOT NULL DEFAULT 0 CHECK (stopping IN (0, 1))
      ) STRICT;

      -- Events (cancel) for an order owned by another loop: stored first, so they survive
      -- the owner dying; its owner (or whoever takes the order over) applies each once and
      -- records the answer the receiving loop gives. AUTOINCREMENT: an id a caller waits on
      -- is never reused after a purge.
      CREATE TABLE order_inbox (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id       TEXT NOT NULL,
        kind           TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        applied_at     INTEGER,
        result_status  INTEGER,
        result_body    TEXT
      ) STRICT;
      -- The owners' polls walk the unapplied events oldest first (only those: answered ones pile up for a day).
      CREATE INDEX order_inbox_pending ON order_inbox (id) WHERE applied_at IS NULL;
      -- The purge walks answered events by age.
      CREATE INDEX order_inbox_applied ON order_inbox (applied_at) WHERE applied_at IS NOT NULL;
    `,
  },
];
