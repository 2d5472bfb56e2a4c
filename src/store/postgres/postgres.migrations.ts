/**
 * Versioned schema for PostgreSQL, numbered like SQLite's and applied by `migrate()` in one
 * transaction under an advisory lock (postgres.database.ts). Never edit a shipped migration;
 * add the next one.
 *
 * Tables and columns are those of `sqlite/sqlite.migrations.ts` (version 1 here is SQLite's
 * versions 1 to 4, version 2 its 5), with the same constraints (the stock invariant above
 * all), so the same queries read the ledger on either store. The differences are PostgreSQL's own:
 * - ids and SKUs are `COLLATE "C"`: byte order, as SQLite's BINARY, whatever the database's
 *   collation is. Order ids are ULIDs and serve as list cursors, so their order matters.
 * - times are `timestamptz` (the adapter reads them back as the same ISO strings);
 * - amounts and counts are `bigint` (SQLite's INTEGER is 64-bit too);
 * - JSON documents (views, snapshots, items) stay `text`: the store never looks inside them
 *   but for a reservation's items, and text is written and read back byte for byte, faster
 *   than jsonb (see README "PostgreSQL").
 * - `order_snapshots.view` is NOT NULL: no release ever stored an order here without one.
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
        sku          text COLLATE "C" PRIMARY KEY,
        name         text NOT NULL,
        price_cents  bigint NOT NULL CHECK (price_cents >= 0),
        available    bigint NOT NULL CHECK (available >= 0),
        reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
        sold         bigint NOT NULL DEFAULT 0 CHECK (sold >= 0),
        added        bigint NOT NULL DEFAULT 0,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL,
        CONSTRAINT products_stock_invariant CHECK (added = available + reserved + sold)
      );

      CREATE TABLE orders (
        id           text COLLATE "C" PRIMARY KEY,
        user_id      text NOT NULL,
        status       text NOT NULL CHECK (status IN ('placed', 'shipped', 'cancelled', 'failed')),
        items        text NOT NULL,
        total_cents  bigint NOT NULL,
        currency     text NOT NULL,
        shipping     text NOT NULL,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL
      );

      -- One row per order: the reservation, or the tombstone of one released before it was made.
      CREATE TABLE reservations (
        order_id     text COLLATE "C" PRIMARY KEY,
        status       text NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
        items        text NOT NULL,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL
      );

      -- The simulated payment gateway's own ledger. One charge per order at most.
      CREATE TABLE payment_charges (
        charge_id       text PRIMARY KEY,
        order_id        text COLLATE "C" NOT NULL UNIQUE,
        idempotency_key text NOT NULL UNIQUE,
        status          text NOT NULL CHECK (status IN ('captured', 'refunded', 'declined', 'voided')),
        amount_cents    bigint NOT NULL CHECK (amount_cents >= 0),
        refunded_cents  bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
        decline_code    text,
        created_at      timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL
      );

      CREATE TABLE payment_refunds (
        refund_id       text PRIMARY KEY,
        charge_id       text NOT NULL REFERENCES payment_charges (charge_id),
        order_id        text COLLATE "C" NOT NULL,
        idempotency_key text NOT NULL UNIQUE,
        amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
        created_at      timestamptz NOT NULL
      );
      CREATE INDEX payment_refunds_by_order ON payment_refunds (order_id);

      CREATE TABLE shipments (
        shipment_id     text PRIMARY KEY,
        order_id        text COLLATE "C" NOT NULL UNIQUE,
        idempotency_key text NOT NULL UNIQUE,
        carrier         text NOT NULL,
        tracking_number text NOT NULL,
        country         text NOT NULL,
        created_at      timestamptz NOT NULL
      );

      CREATE TABLE notifications (
        notification_id text PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        order_id        text COLLATE "C" NOT NULL,
        kind            text NOT NULL,
        recipient       text NOT NULL,
        payload         text NOT NULL,
        created_at      timestamptz NOT NULL
      );
      CREATE INDEX notifications_by_order ON notifications (order_id);

      -- Each order actor's latest persisted snapshot and view: what status reads and recovery
      -- read. The fence: only the owner holding the current epoch writes the order's state,
      -- and every change of owner bumps the epoch. version is the change sequence number.
      CREATE TABLE order_snapshots (
        order_id     text COLLATE "C" PRIMARY KEY,
        user_id      text NOT NULL,
        status       text NOT NULL,
        state        text NOT NULL,
        snapshot     text NOT NULL,
        view         text NOT NULL,
        version      bigint NOT NULL,
        owner        text NOT NULL,
        epoch        bigint NOT NULL,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL
      );
      CREATE INDEX order_snapshots_by_user ON order_snapshots (user_id, order_id DESC);
      CREATE INDEX order_snapshots_by_status ON order_snapshots (status, order_id DESC);
      -- Unfinished orders by owner: what a restart (and, later, a takeover) claims.
      CREATE INDEX order_snapshots_unfinished ON order_snapshots (owner) WHERE status = 'processing';

      -- Every committed change of every order, as the API showed it then (the view, JSON).
      CREATE TABLE order_changes (
        order_id  text COLLATE "C" NOT NULL,
        seq       bigint NOT NULL,
        at        timestamptz NOT NULL,
        view      text NOT NULL,
        PRIMARY KEY (order_id, seq)
      );

      -- One row per (caller, Idempotency-Key): the order it created and, once answered, the answer.
      CREATE TABLE idempotency_keys (
        user_id         text NOT NULL,
        key             text NOT NULL,
        request_hash    text NOT NULL,
        order_id        text NOT NULL,
        request         text NOT NULL,
        response_status integer,
        response_body   text,
        created_at      timestamptz NOT NULL,
        expires_at      timestamptz NOT NULL,
        PRIMARY KEY (user_id, key)
      );
      CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

      -- Admin actions: who, what, to what, from where, and how it ended. Ids sort by time.
      CREATE TABLE audit_log (
        id       text COLLATE "C" PRIMARY KEY,
        at       timestamptz NOT NULL,
        actor    text NOT NULL,
        role     text NOT NULL,
        action   text NOT NULL,
        target   text NOT NULL,
        address  text,
        status   integer NOT NULL,
        code     text,
        details  text
      );
    `,
  },
  {
    version: 2,
    name: 'audit log: issuer, request id, lists by actor and action (SQLite version 5)',
    sql: `
      ALTER TABLE audit_log ADD COLUMN issuer text;
      ALTER TABLE audit_log ADD COLUMN request_id text;
      CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
      CREATE INDEX audit_log_by_action ON audit_log (action, id);
    `,
  },
  {
    version: 3,
    name: 'instances, leases and the order inbox',
    sql: `
      -- One row per instance that ever ran on this database: its lease, by the database's
      -- clock. An order whose owner has no live lease here (expired, stopping, or no row)
      -- may be claimed by any live instance.
      CREATE TABLE instances (
        instance_id  text PRIMARY KEY,
        started_at   timestamptz NOT NULL,
        lease_until  timestamptz NOT NULL,
        stopping     boolean NOT NULL DEFAULT false
      );

      -- Events (cancel) for an order owned by another instance: stored first, so they
      -- survive the owner dying; its owner (or whoever takes the order over) applies each
      -- once and records the answer the receiving instance gives.
      CREATE TABLE order_inbox (
        id             bigserial PRIMARY KEY,
        order_id       text COLLATE "C" NOT NULL,
        kind           text NOT NULL,
        created_at     timestamptz NOT NULL,
        applied_at     timestamptz,
        result_status  integer,
        result_body    text
      );
      CREATE INDEX order_inbox_pending ON order_inbox (order_id) WHERE applied_at IS NULL;
    `,
  },
];
