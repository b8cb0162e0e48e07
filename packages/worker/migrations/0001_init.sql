-- Apps, their public keys, and installations. See STORAGE.md for what reads and writes each.

CREATE TABLE apps (
  -- Exposed as the opaque string app id (and JWT "iss").
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  permissions TEXT NOT NULL,          -- JSON object, canonical key order
  created_at INTEGER NOT NULL,        -- epoch milliseconds
  updated_at INTEGER NOT NULL
);

CREATE TABLE app_keys (
  id TEXT PRIMARY KEY,                -- UUID
  app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
  fingerprint TEXT NOT NULL,          -- SHA256:base64(sha256(spki))
  spki TEXT NOT NULL,                 -- base64 SPKI DER
  created_at INTEGER NOT NULL
);
CREATE INDEX app_keys_by_app ON app_keys (app_id, created_at);

CREATE TABLE installations (
  id TEXT PRIMARY KEY,                -- UUID, lower-case
  app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
  organization_id TEXT NOT NULL,      -- UUID, lower-case
  permissions TEXT NOT NULL,          -- JSON object, canonical key order
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  suspended_at INTEGER,               -- NULL unless suspended
  UNIQUE (app_id, organization_id)
);
-- Serves the paged listing: active installations of one app in (created_at, id) order.
CREATE INDEX installations_active_by_app ON installations (app_id, suspended_at, created_at, id);
