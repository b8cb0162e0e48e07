/**
 * The black-box issuer contract (the testkit's `issuerContract`, the same suite the in-memory issuer
 * and the Worker in workerd pass) over real HTTP against the served issuer: `icr-apps-issuer serve`
 * as a child process on SQLite and on Postgres, under Node, Deno and Bun. Each target is
 * two servers on one database — one with ADMIN_TOKEN, one without — whose audit lines are read from
 * their standard output, and whose storage is read directly from the database.
 */
import { join } from "node:path"
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import { issuerContract } from "@icr-apps/testkit/Contract"
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openSqlite } from "../../src/sql/sqlite.js"
import { httpFetch, postgresDatabase, type RuntimeName, type ServedProcess, startServer, tempDir } from "./support.js"

const ADMIN_TOKEN = "contract-admin-token-of-at-least-32-characters"
/** The suite's own origin: the servers are configured with it, as a deployment behind a proxy would be. */
const ORIGIN = "http://icr.test"

/** Every row of every table of the database, as JSON text. */
type Dump = () => Promise<ReadonlyArray<string>>

const sqliteDump =
  (file: string): Dump =>
  async () => {
    const driver = await openSqlite(file)
    try {
      const tables = await driver.all<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
      )
      const rows: Array<string> = []
      for (const { name } of tables)
        for (const row of await driver.all(`SELECT * FROM "${name}"`)) rows.push(JSON.stringify(row))
      return rows
    } finally {
      await driver.close()
    }
  }

const postgresDump =
  (url: string): Dump =>
  async () => {
    const client = postgres(url, { max: 1, onnotice: false })
    try {
      const tables = await client.unsafe<Array<{ table_name: string }>>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
      )
      const rows: Array<string> = []
      for (const { table_name } of tables)
        for (const row of await client.unsafe(`SELECT * FROM "${table_name}"`)) rows.push(JSON.stringify(row))
      return rows
    } finally {
      await client.end()
    }
  }

/** The contract against two servers under `runtime` on the database `openDatabase` gives. */
const servedContract = (
  name: string,
  runtime: RuntimeName,
  openDatabase: () => Promise<{ readonly url: string; readonly dump: Dump; readonly close: () => Promise<void> }>
) =>
  describe(name, () => {
    const servers: Array<ServedProcess> = []
    let close: (() => Promise<void>) | undefined
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()))
      await close?.()
    })
    issuerContract(
      name,
      async () => {
        const database = await openDatabase()
        close = database.close
        const env = { DATABASE_URL: database.url, PUBLIC_BASE_URL: ORIGIN }
        // One at a time: both migrate the same database at start (the second finds nothing to do).
        const admin = await startServer(runtime, "serve", { ...env, ADMIN_TOKEN })
        servers.push(admin)
        const withoutAdmin = await startServer(runtime, "serve", env)
        servers.push(withoutAdmin)
        return {
          fetch: httpFetch(admin.url),
          fetchWithoutAdmin: httpFetch(withoutAdmin.url),
          adminToken: ADMIN_TOKEN,
          origin: ORIGIN,
          dumpStorage: database.dump,
          auditEvents: async () => {
            // A line is written before its response is sent, but reaches this process over a pipe.
            await new Promise((resolve) => setTimeout(resolve, 200))
            return AuditLog.fromLogLines([...admin.stdout, ...withoutAdmin.stdout])
          }
        }
      },
      { describe, it, expect, beforeAll }
    )
  })

const sqlite = (runtime: RuntimeName) => async () => {
  const temp = tempDir(`icr-contract-${runtime}-`)
  const file = join(temp.dir, "icr-apps.db")
  return { url: `sqlite:${file}`, dump: sqliteDump(file), close: async () => temp.remove() }
}

servedContract("served on Node, SQLite (libsql)", "node", sqlite("node"))
servedContract("served on Deno, SQLite (node:sqlite)", "deno", sqlite("deno"))
servedContract("served on Bun, SQLite (bun:sqlite)", "bun", sqlite("bun"))
const postgresTarget = async () => {
  const database = await postgresDatabase()
  return { url: database.url, dump: postgresDump(database.url), close: database.drop }
}
servedContract("served on Node, Postgres (postgres.js)", "node", postgresTarget)
servedContract("served on Deno, Postgres (postgres.js)", "deno", postgresTarget)
servedContract("served on Bun, Postgres (postgres.js)", "bun", postgresTarget)
