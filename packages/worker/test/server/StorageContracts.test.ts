/**
 * The storage contracts (the testkit's registry contract, races included, and the database rate
 * limiter's) through the same `SqlRegistry` the served issuer uses, over the server's drivers in this
 * process: SQLite through libsql (Node's engine) and Postgres through postgres.js. (Deno's and Bun's
 * SQLite engines meet the same rules through the issuer contract served on them: Contract.test.ts.)
 */
import { join } from "node:path"
import * as SqlRateLimiter from "@icr-apps/core/issuer/SqlRateLimiter"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { rateLimiterContract } from "@icr-apps/testkit/RateLimiterContract"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { issuerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { postgresDatabase, tempDir } from "./support.js"

const runner = { afterAll, beforeAll, describe, expect, it }

/** One migrated database per backend, opened before the suites (which build their layers on it) and closed after. */
const backend = (open: () => Promise<{ driver: ServerSqlDriver; cleanup: () => Promise<void> }>) => {
  let opened: { driver: ServerSqlDriver; cleanup: () => Promise<void> } | undefined
  beforeAll(async () => {
    opened = await open()
    await migrate(opened.driver, issuerMigrations(opened.driver.dialect))
  }, 60_000)
  afterAll(async () => {
    await opened?.driver.close()
    await opened?.cleanup()
  })
  return () => opened!.driver
}

describe("SQLite through libsql", () => {
  const driver = backend(async () => {
    const temp = tempDir("icr-storage-")
    return { driver: await openSqlite(join(temp.dir, "icr-apps.db"), ["libsql"]), cleanup: async () => temp.remove() }
  })
  registryContract("SQLite (libsql, Node)", () => SqlRegistry.layer(driver()), runner)
  rateLimiterContract(
    "SQLite (libsql, Node), the database limiter",
    (limits) => SqlRateLimiter.layer(driver(), limits),
    runner
  )
})

describe("Postgres through postgres.js", () => {
  const driver = backend(async () => {
    const database = await postgresDatabase()
    return { driver: openPostgres(database.url, { poolSize: 8 }), cleanup: database.drop }
  })
  registryContract("Postgres (postgres.js, Node)", () => SqlRegistry.layer(driver()), runner)
  rateLimiterContract(
    "Postgres (postgres.js, Node), the database limiter",
    (limits) => SqlRateLimiter.layer(driver(), limits),
    runner
  )
})
