-- One schema for D1 and SQLite on a server (issue 16; the Postgres twin is migrations-postgres/, proven
-- equivalent by test/server/Schema.test.ts). See STORAGE.md.

-- The same key twice for one app is refused by a constraint, not only by a check before the insert: on an
-- engine that runs writes in parallel (Postgres) two additions of one key could both pass the check.
CREATE UNIQUE INDEX app_keys_by_fingerprint ON app_keys (app_id, fingerprint);

-- A key deletion is remembered per (app, fingerprint): registered again, the key never verifies a JWT issued
-- (iat) at or before that deletion (SPEC §4). NULL: the key was never deleted from this app before.
ALTER TABLE app_keys ADD COLUMN not_before INTEGER;
CREATE TABLE deleted_app_keys (
  app_id INTEGER NOT NULL,              -- not a foreign key: apps are never deleted, and the memory must outlive a key
  fingerprint TEXT NOT NULL,            -- SHA256:base64(sha256(spki)), as app_keys.fingerprint
  deleted_at INTEGER NOT NULL,          -- epoch milliseconds of the latest deletion
  PRIMARY KEY (app_id, fingerprint)
) WITHOUT ROWID;

-- Request budgets shared by every instance on one database (a server's RATE_LIMIT_STORE=database; on
-- Workers, Cloudflare's rate-limiting bindings count instead and this table stays empty). One row per
-- budget and key, holding the current fixed window.
CREATE TABLE rate_limits (
  key TEXT PRIMARY KEY,                 -- "<scope> <key>": "address 203.0.113.7", "principal app:12"
  window_start INTEGER NOT NULL,        -- epoch milliseconds
  count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX rate_limits_by_window ON rate_limits (window_start);
