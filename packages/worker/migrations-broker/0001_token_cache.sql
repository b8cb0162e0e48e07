-- The broker's token cache off Cloudflare (SPEC §8, §9): what the KV namespace BROKER_CACHE holds on
-- Workers, as rows. Values are sealed before they get here (AES-GCM under a key derived from
-- BROKER_CACHE_SECRET) and keys are HMACs, exactly as in KV. An entry whose expires_at has passed is
-- never read back, and is pruned by later writes. One file for both dialects (SQLite and Postgres).
CREATE TABLE broker_kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  expires_at BIGINT NOT NULL   -- epoch milliseconds
);
-- Pruning walks expired rows oldest first.
CREATE INDEX broker_kv_by_expiry ON broker_kv (expires_at);
