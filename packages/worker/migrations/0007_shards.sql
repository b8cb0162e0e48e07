-- Sharding past one database (issue 21, SCALE.md). Every shard is a whole issuer database with this
-- schema; shard 0 ("home") keeps the apps, and the claims below. A database that is never sharded
-- keeps these columns at 0 and the table empty.

-- apps.version moves on with every change the shards' copies of an app must see (a key added or
-- deleted, revokeTokens). On home: the app's truth, and how far its copies are known to have caught
-- up (replicated_version). On another shard: the version of the copy it holds; a copy is only ever
-- replaced by a newer one.
ALTER TABLE apps ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN replicated_version INTEGER NOT NULL DEFAULT 0;

-- Home only: one installation per app and organization across every shard, and which shards hold
-- an app's installations (where its kill switches must reach). Installations made before sharding
-- live on home and have no claim (their own UNIQUE constraint holds them).
CREATE TABLE installation_claims (
  app_id INTEGER NOT NULL,
  organization_id TEXT NOT NULL,
  installation_id TEXT NOT NULL,
  shard INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('creating', 'active', 'deleting')),
  PRIMARY KEY (app_id, organization_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX installation_claims_by_installation ON installation_claims (installation_id);
CREATE INDEX installation_claims_by_shard ON installation_claims (app_id, shard);

-- Every shard: the ids of installations deleted there, for good. A claim completed late (by a call that
-- read it before an uninstall finished) can never write a deleted id again: tokens minted for the old
-- installation would stand on it. Uninstalls are rare; the table only grows by them.
CREATE TABLE deleted_installations (
  id TEXT PRIMARY KEY
) WITHOUT ROWID;
