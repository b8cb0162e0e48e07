/**
 * The storage contracts (registry, races included, and the database rate limiter) run inside one
 * runtime's own process, over that runtime's SQLite engine (Deno: node:sqlite, Bun: bun:sqlite,
 * Node: libsql) or over Postgres (postgres.js): argv[2] is the DATABASE_URL. The results come out
 * as one JSON line (runner.ts) for RuntimeContracts.test.ts to report test by test.
 */
import process from "node:process"
import * as SqlRateLimiter from "@icr-apps/core/issuer/SqlRateLimiter"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { rateLimiterContract } from "@icr-apps/testkit/RateLimiterContract"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import { issuerMigrations, migrate } from "../../../src/sql/migrate.js"
import { openDatabase, parseDatabaseUrl } from "../../../src/sql/open.js"
import { runtimeName } from "../../../src/sql/sqlite.js"
import { makeRunner, RESULTS_PREFIX } from "./runner.js"

const location = parseDatabaseUrl(process.argv[2] ?? "")
if (typeof location === "string") throw new Error(location)
const driver = await openDatabase(location)
await migrate(driver, issuerMigrations(driver.dialect))
const runner = makeRunner()
const name = `${location.kind} on ${runtimeName()} (${driver.dialect === "sqlite" ? "its own SQLite engine" : "postgres.js"})`
registryContract(name, () => SqlRegistry.layer(driver), runner)
rateLimiterContract(`${name}, the database limiter`, (limits) => SqlRateLimiter.layer(driver, limits), runner)
const results = await runner.run()
await driver.close()
console.log(`${RESULTS_PREFIX}${JSON.stringify({ results })}`)
// Some engines keep the event loop alive (pools, timers): the results are out, so end here.
process.exit(0)
