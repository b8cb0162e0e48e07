/**
 * The migration runner of a server (SPEC §9: "migrations run at start under a lock"): applies the
 * `.sql` files of a folder in name order, each pending one in its own transaction together with the
 * row that records it, under an exclusive lock, so that several instances starting at once apply
 * each migration exactly once (the others wait, then find it recorded).
 *
 * The issuer's SQLite migrations are the very files `wrangler d1 migrations apply` gives D1, recorded
 * in wrangler's own table (`d1_migrations`), so a D1 export loaded into SQLite (or the reverse)
 * knows which it has. Postgres has its own folder and table (`icr_migrations`); the broker's cache
 * its own small set for both dialects (`broker_migrations`).
 */
import { readdir, readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import type { SqlDialect } from "@icr-apps/core/issuer/Sql"
import type { ServerSqlDriver } from "./ServerSql.js"

/** A folder of migrations and where their application is recorded. */
export interface MigrationSet {
  /** What the start-up line calls it (`issuer`, `broker`). */
  readonly name: string
  /** The folder of `.sql` files, applied in name order. */
  readonly directory: string
  /** The table that records applied migrations, one row per file name. */
  readonly table: string
  /** The statement that creates {@link table} when it does not exist. */
  readonly createTable: string
  /** The lock all runners of this set share (a Postgres advisory lock; SQLite's writer lock). */
  readonly lockKey: string
}

/** What a run did. */
export interface MigrationReport {
  /** The migrations this run applied, in order (none on a second start). */
  readonly applied: ReadonlyArray<string>
  /** Every migration recorded as applied once the run ended. */
  readonly recorded: ReadonlyArray<string>
  /** Recorded migrations with no file here: the database was migrated by a newer version. */
  readonly unknown: ReadonlyArray<string>
}

/** The package's root folder (this file is `src/sql/migrate.ts`, or `dist/sql/migrate.js` once built). */
const packageRoot = new URL("../../", import.meta.url)
const folder = (name: string) => fileURLToPath(new URL(`${name}/`, packageRoot))

/** wrangler's own table, exactly as `wrangler d1 migrations apply` creates it. */
const D1_MIGRATIONS =
  "CREATE TABLE IF NOT EXISTS d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, " +
  "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"

/** The issuer's migrations for a dialect. */
export const issuerMigrations = (dialect: SqlDialect): MigrationSet =>
  dialect === "sqlite"
    ? {
        name: "issuer",
        directory: folder("migrations"),
        table: "d1_migrations",
        createTable: D1_MIGRATIONS,
        lockKey: "icr-apps/migrations"
      }
    : {
        name: "issuer",
        directory: folder("migrations-postgres"),
        table: "icr_migrations",
        createTable:
          "CREATE TABLE IF NOT EXISTS icr_migrations (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, " +
          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        lockKey: "icr-apps/migrations"
      }

/** The broker's migrations (its token cache): one folder, written for both dialects. */
export const brokerMigrations = (dialect: SqlDialect): MigrationSet => ({
  name: "broker",
  directory: folder("migrations-broker"),
  table: "broker_migrations",
  createTable:
    dialect === "sqlite"
      ? "CREATE TABLE IF NOT EXISTS broker_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, " +
        "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
      : "CREATE TABLE IF NOT EXISTS broker_migrations (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, " +
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
  lockKey: "icr-apps/broker-migrations"
})

/** The `.sql` files of a folder, in name order (none when the folder does not exist). */
export const migrationFiles = async (directory: string): Promise<ReadonlyArray<string>> => {
  try {
    return (await readdir(directory)).filter((name) => name.endsWith(".sql")).sort()
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return []
    throw error
  }
}

/**
 * Applies every pending migration of `set`, each in its own exclusive transaction with its record.
 * A runner that waited for the lock re-reads the record inside it, so a migration another instance
 * applied meanwhile is skipped, never applied twice. A failing migration rolls back (with its
 * record) and rejects, naming the file.
 */
export const migrate = async (driver: ServerSqlDriver, set: MigrationSet): Promise<MigrationReport> => {
  const files = await migrationFiles(set.directory)
  const recordedNames = async (tx: { all: ServerSqlDriver["all"] }) =>
    new Set((await tx.all<{ name: string }>(`SELECT name FROM ${set.table}`)).map((row) => row.name))

  const before = await driver.exclusive(set.lockKey, async (tx) => {
    await tx.exec(set.createTable)
    return recordedNames(tx)
  })
  const applied: Array<string> = []
  for (const name of files) {
    if (before.has(name)) continue
    const script = await readFile(`${set.directory}${name}`, "utf8")
    const did = await driver.exclusive(set.lockKey, async (tx) => {
      if ((await tx.first(`SELECT name FROM ${set.table} WHERE name = ?`, [name])) !== undefined) return false
      try {
        await tx.exec(script)
      } catch (error) {
        throw new Error(`${set.name} migration ${name} failed: ${error instanceof Error ? error.message : error}`)
      }
      await tx.run(`INSERT INTO ${set.table} (name) VALUES (?)`, [name])
      return true
    })
    if (did) applied.push(name)
  }
  const recorded = [...(await recordedNames(driver))].sort()
  const known = new Set(files)
  return { applied, recorded, unknown: recorded.filter((name) => !known.has(name)) }
}
