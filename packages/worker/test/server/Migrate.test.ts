/**
 * The migration runner: several instances starting at once apply each migration exactly once (on
 * one SQLite file: a Node, a Deno and a Bun process, each with its own SQLite engine; on one
 * Postgres database: two pools), a second start applies nothing, and a failing migration leaves
 * nothing of itself behind, its record included.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  issuerMigrations,
  type MigrationReport,
  type MigrationSet,
  migrate,
  migrationFiles
} from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { postgresDatabase, runFile, type RuntimeName, tempDir } from "./support.js"

const race = join(import.meta.dirname, "runtimes/migrate-race.ts")

/** Every migration applied once, by one contender or another. */
const appliedOnce = (reports: ReadonlyArray<MigrationReport>, files: ReadonlyArray<string>) => {
  const applied = reports.flatMap((r) => r.applied)
  expect([...applied].sort()).toEqual([...files])
  for (const report of reports) expect(report.recorded).toEqual(files)
}

describe("migrations on SQLite", () => {
  const temp = tempDir("icr-migrate-")
  afterAll(temp.remove)

  it("a Node, a Deno and a Bun process racing on one file apply each migration once", async () => {
    const files = await migrationFiles(issuerMigrations("sqlite").directory)
    expect(files.length).toBeGreaterThanOrEqual(6)
    const url = `sqlite:${join(temp.dir, "race.db")}`
    // Every contender waits for the same instant, a little after the slowest (tsx) can have started.
    const at = String(Date.now() + 8000)
    const runtimes: ReadonlyArray<RuntimeName> = ["node", "deno", "bun"]
    const runs = await Promise.all(runtimes.map((runtime) => runFile(runtime, race, [url, at])))
    const reports = runs.map(({ stdout, stderr }, i) => {
      const line = stdout.split("\n").find((l) => l.startsWith("migrated "))
      expect(line, `${runtimes[i]}: ${stdout}\n${stderr}`).toBeDefined()
      const { ready, ...report } = JSON.parse(line!.slice("migrated ".length))
      expect({ runtime: runtimes[i], ready }).toEqual({ runtime: runtimes[i], ready: true })
      return report as MigrationReport
    })
    appliedOnce(reports, files)

    const driver = await openSqlite(join(temp.dir, "race.db"))
    // wrangler's own table, one row per file, in order: a D1 export moved here knows what it has.
    expect(await driver.all("SELECT id, name FROM d1_migrations ORDER BY id")).toEqual(
      files.map((name, i) => ({ id: i + 1, name }))
    )
    const second = await migrate(driver, issuerMigrations("sqlite"))
    expect(second).toEqual({ applied: [], recorded: files, unknown: [] })
    await driver.close()
  }, 120_000)

  it("a failing migration rolls back with its record", async () => {
    const driver = await openSqlite(join(temp.dir, "failing.db"))
    await failing(driver, temp.dir)
  })
})

describe("migrations on Postgres", () => {
  let database: Awaited<ReturnType<typeof postgresDatabase>>
  beforeAll(async () => {
    database = await postgresDatabase()
  }, 60_000)
  afterAll(() => database?.drop())

  it("two pools racing on one database apply each migration once; a second start applies nothing", async () => {
    const set = issuerMigrations("postgres")
    const files = await migrationFiles(set.directory)
    expect(files.length).toBeGreaterThanOrEqual(1)
    const a = openPostgres(database.url, { poolSize: 2 })
    const b = openPostgres(database.url, { poolSize: 2 })
    try {
      appliedOnce(await Promise.all([migrate(a, set), migrate(b, set), migrate(a, set)]), files)
      expect((await a.all<{ name: string }>("SELECT name FROM icr_migrations ORDER BY id")).map((r) => r.name)).toEqual(
        files
      )
      expect(await migrate(b, set)).toEqual({ applied: [], recorded: files, unknown: [] })
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it("a failing migration rolls back with its record", async () => {
    const driver = openPostgres(database.url, { poolSize: 2 })
    const temp = tempDir("icr-migrate-pg-")
    try {
      await failing(driver, temp.dir)
    } finally {
      temp.remove()
    }
  })
})

/** A set whose second file fails half-way: the first stays, the second leaves nothing behind. */
const failing = async (driver: ServerSqlDriver, dir: string) => {
  writeFileSync(join(dir, "0001_ok.sql"), "CREATE TABLE fine (id INTEGER PRIMARY KEY);\n")
  writeFileSync(
    join(dir, "0002_bad.sql"),
    "CREATE TABLE half (id INTEGER PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n"
  )
  const set: MigrationSet = {
    name: "test",
    directory: `${dir}/`,
    table: "test_migrations",
    createTable: "CREATE TABLE IF NOT EXISTS test_migrations (name TEXT PRIMARY KEY, applied_at TEXT DEFAULT 'now')",
    lockKey: "test"
  }
  try {
    await expect(migrate(driver, set)).rejects.toThrow(/^test migration 0002_bad\.sql failed: .*no_such_table/)
    expect(await driver.all("SELECT name FROM test_migrations")).toEqual([{ name: "0001_ok.sql" }])
    expect(await driver.all("SELECT COUNT(*) AS n FROM fine")).toEqual([{ n: 0 }])
    // The statement before the failing one went with it.
    await expect(driver.all("SELECT COUNT(*) AS n FROM half")).rejects.toThrow(/half/)
  } finally {
    await driver.close()
  }
}
