import { applyD1Migrations, env } from "cloudflare:test"

// Every test file starts from the schema in migrations/, exactly as `wrangler d1 migrations apply` makes it.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS)
await applyD1Migrations(env.DB_SHARD_1, env.TEST_MIGRATIONS)
await applyD1Migrations(env.DB_SHARD_2, env.TEST_MIGRATIONS)
