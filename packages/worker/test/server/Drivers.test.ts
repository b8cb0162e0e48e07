/**
 * Each SQL driver under its own runtime, held to one expectation (driverChecks.ts): all/first/run,
 * a batch is one transaction (a failing statement undoes the ones before it), unique and primary-key
 * violations are recognised (and nothing else is), integers (BIGINT included) come back as numbers,
 * `exclusive` commits or rolls back, and a closed driver refuses calls.
 */
import { statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeSqliteDriver, openSqlite, type SqliteConnection } from "../../src/sql/sqlite.js"
import { describePostgresUrl, openPostgres } from "../../src/sql/postgres.js"
import { driverChecks, expected } from "./driverChecks.js"
import { postgresDatabase, runFile, type RuntimeName, tempDir } from "./support.js"

const check = join(import.meta.dirname, "runtimes/driver-check.ts")

describe("SQLite drivers", () => {
  const temp = tempDir("icr-drivers-")
  afterAll(temp.remove)

  it("libsql on Node", async () => {
    const driver = await openSqlite(join(temp.dir, "libsql.db"), ["libsql"])
    expect(driver.description).toBe(`sqlite:${join(temp.dir, "libsql.db")} (libsql)`)
    expect(await driverChecks(driver)).toEqual(expected("sqlite"))
  })

  it("on Node, the SQLite driver is chosen at run time (libsql on Node 20)", async () => {
    const driver = await openSqlite(":memory:")
    expect(driver.description).toBe("sqlite::memory: (libsql)")
    await driver.close()
  })

  it("creates the database file (and so its -wal and -shm) readable and writable by its owner only", async () => {
    // It holds app keys' fingerprints, token digests and, with RATE_LIMIT_STORE=database, clients'
    // addresses: nothing another account on the machine should read, whatever the umask.
    const file = join(temp.dir, "private.db")
    const driver = await openSqlite(file, ["libsql"])
    await driver.run("CREATE TABLE t (a TEXT)")
    await driver.run("INSERT INTO t (a) VALUES (?)", ["x"])
    const modes = ["", "-wal", "-shm"].map((suffix) => (statSync(`${file}${suffix}`).mode & 0o777).toString(8))
    await driver.close()
    expect(modes).toEqual(["600", "600", "600"])
  })

  it("leaves the mode of a database file that exists already as the operator set it", async () => {
    const file = join(temp.dir, "shared.db")
    writeFileSync(file, "", { mode: 0o640 })
    const driver = await openSqlite(file, ["libsql"])
    await driver.run("CREATE TABLE t (a TEXT)")
    await driver.close()
    expect((statSync(file).mode & 0o777).toString(8)).toBe("640")
  })

  it("prepares each statement once, whatever the environment says (no variable turns the cache off)", async () => {
    // A knob left in the environment must not change how the issuer runs; under Deno without
    // --allow-env, reading it on every statement would have failed every statement.
    let prepared = 0
    const connection: SqliteConnection = {
      engine: "fake",
      prepare: () => {
        prepared++
        return { reader: true, all: () => [], get: () => undefined, run: () => ({ changes: 0 }) }
      },
      exec: () => {},
      close: () => {}
    }
    const saved = process.env.NOCACHE
    process.env.NOCACHE = "1"
    try {
      const driver = makeSqliteDriver(connection, ":memory:")
      await driver.all("SELECT 1")
      await driver.all("SELECT 1")
      await driver.first("SELECT 1")
    } finally {
      if (saved === undefined) delete process.env.NOCACHE
      else process.env.NOCACHE = saved
    }
    expect(prepared).toBe(1)
  })

  it("names what it tried when no engine loads", async () => {
    await expect(openSqlite(":memory:", ["bun:sqlite"])).rejects.toThrow(
      /^no SQLite driver is available on node v\d+\.\d+\.\d+ \(bun:sqlite: .*\)\. Install the libsql package/
    )
  })

  for (const [runtime, engine] of [
    ["deno", "node:sqlite"],
    ["bun", "bun:sqlite"]
  ] as const satisfies ReadonlyArray<readonly [RuntimeName, string]>) {
    it(`${engine} on ${runtime}`, async () => {
      const file = join(temp.dir, `${runtime}.db`)
      const { code, stdout, stderr } = await runFile(runtime, check, [`sqlite:${file}`])
      const line = stdout.split("\n").find((l) => l.startsWith("driver-check "))
      expect(line, `${stdout}\n${stderr}`).toBeDefined()
      const { description, result } = JSON.parse(line!.slice("driver-check ".length))
      expect(description).toBe(`sqlite:${file} (${engine})`)
      expect(result).toEqual(expected("sqlite"))
      expect((statSync(file).mode & 0o777).toString(8)).toBe("600")
      expect(code).toBe(0)
    }, 120_000)
  }
})

describe("Postgres driver (postgres.js)", () => {
  let database: Awaited<ReturnType<typeof postgresDatabase>>
  beforeAll(async () => {
    database = await postgresDatabase()
  }, 60_000)
  afterAll(() => database?.drop())

  it("on Node", async () => {
    const driver = openPostgres(database.url, { poolSize: 3 })
    expect(driver.description).toBe(`${describePostgresUrl(database.url)} (postgres.js, pool 3)`)
    expect(await driverChecks(driver)).toEqual(expected("postgres"))
  })

  it("on Bun and Deno too (pure JavaScript)", async () => {
    for (const runtime of ["bun", "deno"] as const) {
      const { stdout, stderr } = await runFile(runtime, check, [database.url])
      const line = stdout.split("\n").find((l) => l.startsWith("driver-check "))
      expect(line, `${runtime}: ${stdout}\n${stderr}`).toBeDefined()
      expect(JSON.parse(line!.slice("driver-check ".length)).result).toEqual(expected("postgres"))
    }
  }, 120_000)

  it("a connection error never shows the password", async () => {
    const secret = "pw-7f3a9c1e-never-printed"
    // Nothing listens on port 9 of the loopback: the connection is refused.
    const driver = openPostgres(`postgres://icr:${secret}@127.0.0.1:9/icr`, { poolSize: 1 })
    expect(driver.description).toBe("postgres://icr@127.0.0.1:9/icr (postgres.js, pool 1)")
    const error = await driver.first("SELECT 1").then(
      () => undefined,
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(Error)
    expect(`${(error as Error).message} ${(error as Error).stack} ${JSON.stringify(error)}`).not.toContain(secret)
    await driver.close()
  })

  it("describes a URL without its password or query", () => {
    expect(describePostgresUrl("postgresql://u%40x:p%40ss@db.example:6543/icr?sslmode=require&password=x")).toBe(
      "postgresql://u@x@db.example:6543/icr"
    )
    expect(describePostgresUrl("postgres://:secret@[bad")).toBe("postgres://…")
  })
})
