import { applyD1Migrations, env } from "cloudflare:test"

// Every test file starts from the schema in migrations/, exactly as `wrangler d1 migrations apply` makes it.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS)
// The issuer's suite binds two more databases, the shards test/Shards.test.ts adds (the broker's suite does not).
for (const shard of [env.DB_SHARD_1, env.DB_SHARD_2]) {
  if (shard !== undefined) await applyD1Migrations(shard, env.TEST_MIGRATIONS)
}
