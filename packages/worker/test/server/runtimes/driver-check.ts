/**
 * Runs the driver pass (../driverChecks.ts) under whichever runtime runs this file, on the SQLite
 * file or Postgres URL in argv, and prints `driver-check <json>`: how Deno's `node:sqlite` and Bun's
 * `bun:sqlite` are tested on their own runtimes.
 */
import process from "node:process"
import { openDatabase, parseDatabaseUrl } from "../../../src/sql/open.js"
import { driverChecks } from "../driverChecks.js"

const location = parseDatabaseUrl(process.argv[2] ?? "")
if (typeof location === "string") throw new Error(location)
const driver = await openDatabase(location)
const description = driver.description
const result = await driverChecks(driver)
console.log(`driver-check ${JSON.stringify({ description, result })}`)
