/**
 * Kill switches stay killed across a crash only if their commits are durable (SPEC §5, §9): SQLite's
 * connections run `synchronous = FULL` (driverChecks), and a Postgres whose settings let a crash undo
 * acknowledged commits is said at start-up.
 */
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startIssuer } from "../../src/server/Issuer.js"
import { listen } from "../../src/server/node.js"
import { postgresDatabase } from "./support.js"

describe("durability of kill switches on Postgres", () => {
  let database: Awaited<ReturnType<typeof postgresDatabase>>
  beforeAll(async () => {
    database = await postgresDatabase()
  }, 60_000)
  afterAll(() => database?.drop())

  const warningsOf = async () => {
    const warnings: Array<string> = []
    const server = await startIssuer({ DATABASE_URL: database.url, PORT: "0" }, listen, "node", {
      info: () => {},
      warn: (line) => warnings.push(line)
    })
    await server.stop()
    return warnings
  }

  it("says nothing when commits are durable (synchronous_commit on, the default)", async () => {
    expect((await warningsOf()).filter((w) => w.includes("synchronous_commit"))).toEqual([])
  })

  it("warns at start-up when synchronous_commit is off: an acknowledged revocation could be undone by a crash", async () => {
    const admin = postgres(database.url, { max: 1, onnotice: () => {} })
    try {
      await admin.unsafe(`ALTER DATABASE "${database.name}" SET synchronous_commit = off`)
    } finally {
      await admin.end()
    }
    expect((await warningsOf()).filter((w) => w.includes("synchronous_commit"))).toEqual([
      "warning: synchronous_commit is off for this database: a kill switch (a revocation, a suspension, a key " +
        "deletion) acknowledged in the last moments before the server crashes can be lost, and the tokens it ended " +
        "work again; set it to on (remote_apply where standbys serve reads)"
    ])
  })
})
