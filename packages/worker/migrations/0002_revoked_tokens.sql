-- Token revocations, read on every use of an access token. KV (where tokens live) is eventually
-- consistent across locations; this table makes a revocation take effect everywhere at once.
-- Rows are kept until the token would have expired anyway, then pruned on later revocations.
CREATE TABLE revoked_tokens (
  id TEXT PRIMARY KEY,                -- the token's id (a UUID), never its secret
  expires_at INTEGER NOT NULL         -- epoch milliseconds
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
