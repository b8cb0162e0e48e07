-- Access tokens move from KV into D1 (issue 12): one statement answers every use of a token (the
-- token, its revocation, the installation and app it stands on, and their epochs), where KV needed
-- a KV read and then a D1 batch. D1's primary is strongly consistent, so a minted token is usable at
-- once everywhere and a revocation acts on the very next request, with no KV propagation to wait
-- for. See STORAGE.md.
--
-- A row is keyed by the SHA-256 of the secret; the secret itself is never stored. Rows are pruned
-- once expired (a few at every mint, see D1Registry.putToken). Revocation sets revoked_at and keeps
-- the row until it expires, so a revoked token stays refused as "revoked" rather than "unknown".
CREATE TABLE tokens (
  digest TEXT PRIMARY KEY,              -- sha256 hex of the secret crs_…
  id TEXT NOT NULL,                     -- the token's id (UUID), as GET /app/installations/token tells it
  kind TEXT NOT NULL CHECK (kind IN ('app', 'installation')),
  app_id INTEGER NOT NULL,              -- not a foreign key: a token outlives nothing, it is checked on use
  installation_id TEXT,                 -- NULL for app tokens
  organization_id TEXT,                 -- NULL for app tokens
  permissions TEXT NOT NULL,            -- JSON object, canonical key order, as minted
  created_at INTEGER NOT NULL,          -- epoch milliseconds
  expires_at INTEGER NOT NULL,
  app_epoch INTEGER NOT NULL,           -- apps.token_epoch as minted (0004_token_epochs.sql)
  installation_epoch INTEGER NOT NULL,  -- installations.token_epoch as minted (0 for app tokens)
  revoked_at INTEGER                    -- NULL unless revoked (DELETE /app/installations/token)
) WITHOUT ROWID;
-- Pruning walks expired rows oldest first.
CREATE INDEX tokens_by_expiry ON tokens (expires_at);

-- Revocations were recorded here while tokens lived in KV. Tokens minted into KV before this
-- migration are not carried over (KV cannot be read from SQL): they are refused after the deploy, as
-- unknown, and apps mint again (they lived 2 hours at most). Their revocations go with them.
DROP TABLE revoked_tokens;
