/**
 * One contender of the migration race (Migrate.test.ts): opens the database in argv[2], waits until
 * the instant in argv[3] (epoch ms, shared by every contender), migrates the issuer's set, and
 * prints `migrated <json report>` (with `ready`: whether it reached the start line in time).
 */
import process from "node:process"
import { issuerMigrations, migrate } from "../../../src/sql/migrate.js"
import { openDatabase, parseDatabaseUrl } from "../../../src/sql/open.js"

const location = parseDatabaseUrl(process.argv[2] ?? "")
if (typeof location === "string") throw new Error(location)
const driver = await openDatabase(location)
// Whether it was ready before the instant (else it did not race: the test says so rather than pass).
const ready = Number(process.argv[3]) - Date.now() > 0
await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(process.argv[3]) - Date.now())))
const report = await migrate(driver, issuerMigrations(driver.dialect))
await driver.close()
console.log(`migrated ${JSON.stringify({ ...report, ready })}`)
