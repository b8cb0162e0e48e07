-- Sharding past one database (issue 21, SCALE.md): the twin of migrations/0007_shards.sql, which
-- says what each column is for.
ALTER TABLE apps ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN replicated_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE installation_claims (
  app_id BIGINT NOT NULL,
  organization_id TEXT NOT NULL,
  installation_id TEXT NOT NULL,
  shard BIGINT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('creating', 'active', 'deleting')),
  PRIMARY KEY (app_id, organization_id)
);
CREATE UNIQUE INDEX installation_claims_by_installation ON installation_claims (installation_id);
CREATE INDEX installation_claims_by_shard ON installation_claims (app_id, shard);

CREATE TABLE deleted_installations (
  id TEXT PRIMARY KEY
);
