import { applyD1Migrations, env } from "cloudflare:test"

// Every test file starts from the schema in migrations/, exactly as `wrangler d1 migrations apply` makes it.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS)
