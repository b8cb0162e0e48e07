/**
 * One pass over a driver's contract (the core's `SqlDriver` seam and the server's `exclusive` and
 * `close`), returning what it observed rather than asserting, so that the same pass runs in this
 * process (libsql, Postgres) and under Deno and Bun (runtimes/driver-check.ts prints it as JSON), and
 * the test asserts one exact expectation for every driver.
 */
import { sql } from "@icr-apps/core/issuer/Sql"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"

/** The largest integer a JS number holds exactly: stored as BIGINT, it must come back as this number. */
export const BIG = 9007199254740991

const failure = async (f: () => Promise<unknown>, driver: ServerSqlDriver) => {
  try {
    await f()
    return "resolved"
  } catch (error) {
    return driver.isUniqueViolation(error) ? "unique violation" : "other error"
  }
}

/** Runs the pass on a fresh table `t` (dropped at the end) and closes the driver. */
export const driverChecks = async (d: ServerSqlDriver) => {
  await d.run("DROP TABLE IF EXISTS driver_check")
  await d.run("CREATE TABLE driver_check (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n BIGINT NOT NULL)")
  const insert = "INSERT INTO driver_check (id, name, n) VALUES (?, ?, ?)"
  const out: Record<string, unknown> = {}
  out.dialect = d.dialect
  // The durability every SQLite connection starts with (sqlite.ts PRAGMAS): WAL, synchronous FULL (2), foreign keys.
  out.settings =
    d.dialect === "sqlite"
      ? {
          journal: await d.first("PRAGMA journal_mode"),
          synchronous: await d.first("PRAGMA synchronous"),
          foreignKeys: await d.first("PRAGMA foreign_keys")
        }
      : null
  out.insertChanges = [(await d.run(insert, [1, "one", BIG])).changes, (await d.run(insert, [2, "two", 2])).changes]
  out.all = await d.all("SELECT id, name, n FROM driver_check ORDER BY id")
  out.types = Object.values(
    (await d.first<Record<string, unknown>>("SELECT id, name, n FROM driver_check WHERE id = 1"))!
  ).map((v) => typeof v)
  out.first = await d.first("SELECT name FROM driver_check WHERE id = ?", [2])
  out.firstMissing = (await d.first("SELECT name FROM driver_check WHERE id = ?", [99])) === undefined
  out.count = await d.first("SELECT COUNT(*) AS c FROM driver_check")
  // One statement read by all, then by first with other values: the second read is of its own values
  // (libsql's get() after an all() once returned the all()'s row).
  const byId = "SELECT name FROM driver_check WHERE id = ?"
  out.firstAfterAll = [await d.all(byId, [1]), await d.first(byId, [2]), await d.all(byId, [1])]
  // An integer is bound as an integer: concatenated, it reads "12", never "12.0" (libsql binds numbers as REAL).
  out.integerText = await d.first("SELECT name || ? AS text FROM driver_check WHERE id = ?", [12, 1])
  out.updateChanges = (await d.run("UPDATE driver_check SET n = n - 1 WHERE id > ?", [0])).changes
  out.noChanges = (await d.run("DELETE FROM driver_check WHERE id = ?", [99])).changes
  out.batch = await d.batch([
    sql(insert, 3, "three", 3),
    sql("SELECT name FROM driver_check WHERE id = ?", 3),
    sql("UPDATE driver_check SET name = ? WHERE id = ?", "three!", 3),
    sql("INSERT INTO driver_check (id, name, n) VALUES (?, ?, ?) RETURNING id", 6, "six", 6)
  ])
  // A batch is one transaction: the second statement's violation undoes the first statement's insert.
  out.failedBatch = await failure(() => d.batch([sql(insert, 4, "four", 4), sql(insert, 5, "one", 5)]), d)
  out.afterFailedBatch = (await d.first("SELECT id FROM driver_check WHERE id = ?", [4])) ?? null
  out.uniqueRun = await failure(() => d.run(insert, [7, "two", 7]), d)
  out.primaryKeyRun = await failure(() => d.run(insert, [1, "another", 7]), d)
  out.notNullRun = await failure(() => d.run(insert, [8, null, 8]), d)
  out.exclusive = await d.exclusive("driver-check", async (tx) => {
    await tx.run(insert, [10, "ten", 10])
    await tx.exec("UPDATE driver_check SET n = 0 WHERE id = 10; UPDATE driver_check SET name = 'TEN' WHERE id = 10")
    const [row] = await tx.batch([sql("SELECT name, n FROM driver_check WHERE id = ?", 10)])
    return row!.rows
  })
  out.exclusiveRollback = await d
    .exclusive("driver-check", async (tx) => {
      await tx.run(insert, [11, "eleven", 11])
      throw new Error("boom")
    })
    .then(
      () => "resolved",
      (e: Error) => e.message
    )
  out.afterRollback = (await d.first("SELECT id FROM driver_check WHERE id = ?", [11])) ?? null
  out.final = await d.all("SELECT id, name, n FROM driver_check ORDER BY id")
  await d.run("DROP TABLE driver_check")
  await d.close()
  out.afterClose = await d.first("SELECT 1 AS one").then(
    () => "resolved",
    () => "rejected"
  )
  return out
}

/** What every driver must observe. */
export const expected = (dialect: "sqlite" | "postgres") => ({
  dialect,
  settings:
    dialect === "sqlite"
      ? { journal: { journal_mode: "wal" }, synchronous: { synchronous: 2 }, foreignKeys: { foreign_keys: 1 } }
      : null,
  insertChanges: [1, 1],
  all: [
    { id: 1, name: "one", n: BIG },
    { id: 2, name: "two", n: 2 }
  ],
  types: ["number", "string", "number"],
  first: { name: "two" },
  firstMissing: true,
  count: { c: 2 },
  firstAfterAll: [[{ name: "one" }], { name: "two" }, [{ name: "one" }]],
  integerText: { text: "one12" },
  updateChanges: 2,
  noChanges: 0,
  batch: [
    { rows: [], changes: 1 },
    { rows: [{ name: "three" }], changes: 0 },
    { rows: [], changes: 1 },
    { rows: [{ id: 6 }], changes: 1 }
  ],
  failedBatch: "unique violation",
  afterFailedBatch: null,
  uniqueRun: "unique violation",
  primaryKeyRun: "unique violation",
  notNullRun: "other error",
  exclusive: [{ name: "TEN", n: 0 }],
  exclusiveRollback: "boom",
  afterRollback: null,
  final: [
    { id: 1, name: "one", n: BIG - 1 },
    { id: 2, name: "two", n: 1 },
    { id: 3, name: "three!", n: 3 },
    { id: 6, name: "six", n: 6 },
    { id: 10, name: "TEN", n: 0 }
  ],
  afterClose: "rejected"
})
