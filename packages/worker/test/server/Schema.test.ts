/**
 * The two schema folders describe one schema: migrations/ (D1 and SQLite, applied one file after
 * another) and migrations-postgres/ give, once applied, the same tables, the same columns (type,
 * nullability, default), the same primary keys, the same unique and plain indexes (by their columns)
 * and the same foreign keys. Read back from each engine's own catalogue, not from the files.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { issuerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { postgresDatabase } from "./support.js"

/** One table as both engines can describe it. */
interface TableShape {
  readonly columns: Record<string, { type: string; notNull: boolean; default: string | null }>
  readonly primaryKey: ReadonlyArray<string>
  readonly indexes: ReadonlyArray<string>
  readonly foreignKeys: ReadonlyArray<string>
}

/** The tables that record migrations differ by design (wrangler's d1_migrations, icr_migrations). */
const BOOKKEEPING = new Set(["d1_migrations", "icr_migrations", "sqlite_sequence"])

/** INTEGER and BIGINT are the same 64-bit integer here; TEXT is text. */
const typeOf = (declared: string) => {
  const t = declared.toLowerCase()
  if (t === "integer" || t === "bigint" || t === "int8") return "integer"
  if (t === "text") return "text"
  return t
}
const defaultOf = (value: string | null) =>
  value === null ? null : value.replace(/::[a-z ]+$/, "").replace(/^'(.*)'$/, "$1")

const sqliteShape = async (db: ServerSqlDriver): Promise<Record<string, TableShape>> => {
  const tables = await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
  const out: Record<string, TableShape> = {}
  for (const { name } of tables) {
    if (BOOKKEEPING.has(name)) continue
    const info = await db.all<{ name: string; type: string; notnull: number; dflt_value: string | null; pk: number }>(
      `PRAGMA table_info("${name}")`
    )
    const primaryKey = info
      .filter((c) => c.pk > 0)
      .sort((a, b) => a.pk - b.pk)
      .map((c) => c.name)
    const columns: TableShape["columns"] = {}
    // A primary-key column is never NULL, whatever SQLite's catalogue says of INTEGER PRIMARY KEY.
    for (const c of info)
      columns[c.name] = { type: typeOf(c.type), notNull: c.notnull === 1 || c.pk > 0, default: defaultOf(c.dflt_value) }
    const indexes: Array<string> = []
    for (const index of await db.all<{ name: string; unique: number; origin: string }>(
      `PRAGMA index_list("${name}")`
    )) {
      if (index.origin === "pk") continue
      const cols = (await db.all<{ seqno: number; name: string }>(`PRAGMA index_info("${index.name}")`))
        .sort((a, b) => a.seqno - b.seqno)
        .map((c) => c.name)
      indexes.push(`${index.unique ? "unique " : ""}(${cols.join(", ")})`)
    }
    const foreignKeys = (
      await db.all<{ table: string; from: string; to: string; on_delete: string }>(`PRAGMA foreign_key_list("${name}")`)
    ).map((fk) => `(${fk.from}) -> ${fk.table}(${fk.to}) on delete ${fk.on_delete.toLowerCase()}`)
    out[name] = { columns, primaryKey, indexes: indexes.sort(), foreignKeys: foreignKeys.sort() }
  }
  return out
}

const postgresShape = async (db: ServerSqlDriver): Promise<Record<string, TableShape>> => {
  const tables = await db.all<{ name: string }>(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
  )
  const out: Record<string, TableShape> = {}
  for (const { name } of tables) {
    if (BOOKKEEPING.has(name)) continue
    const columns: TableShape["columns"] = {}
    for (const c of await db.all<{
      name: string
      type: string
      nullable: string
      dflt: string | null
      identity: string
    }>(
      `SELECT column_name AS name, data_type AS type, is_nullable AS nullable, column_default AS dflt,
              is_identity AS identity
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ?`,
      [name]
    ))
      columns[c.name] = { type: typeOf(c.type), notNull: c.nullable === "NO", default: defaultOf(c.dflt) }
    const indexRows = await db.all<{ unique: boolean; primary: boolean; columns: string }>(
      `SELECT ix.indisunique AS unique, ix.indisprimary AS primary,
              string_agg(a.attname, ', ' ORDER BY k.ord) AS columns
       FROM pg_class t
       JOIN pg_index ix ON ix.indrelid = t.oid
       JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
       WHERE t.relname = ? AND t.relnamespace = 'public'::regnamespace
       GROUP BY ix.indexrelid, ix.indisunique, ix.indisprimary`,
      [name]
    )
    const primary = indexRows.find((i) => i.primary)
    const indexes = indexRows.filter((i) => !i.primary).map((i) => `${i.unique ? "unique " : ""}(${i.columns})`)
    const foreignKeys = (
      await db.all<{ definition: string }>(
        "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = ?::regclass AND contype = 'f'",
        [`public.${name}`]
      )
    ).map(({ definition }) => {
      const m = /^FOREIGN KEY \((\w+)\) REFERENCES (\w+)\((\w+)\)(?: ON DELETE ([A-Z ]+))?$/.exec(definition)
      return m === null ? definition : `(${m[1]}) -> ${m[2]}(${m[3]}) on delete ${(m[4] ?? "no action").toLowerCase()}`
    })
    out[name] = {
      columns,
      primaryKey: primary === undefined ? [] : primary.columns.split(", "),
      indexes: indexes.sort(),
      foreignKeys: foreignKeys.sort()
    }
  }
  return out
}

describe("one schema in two dialects", () => {
  let sqlite: ServerSqlDriver
  let postgres: ServerSqlDriver
  let database: Awaited<ReturnType<typeof postgresDatabase>>
  beforeAll(async () => {
    database = await postgresDatabase()
    sqlite = await openSqlite(":memory:")
    postgres = openPostgres(database.url, { poolSize: 2 })
    await migrate(sqlite, issuerMigrations("sqlite"))
    await migrate(postgres, issuerMigrations("postgres"))
  }, 60_000)
  afterAll(async () => {
    await sqlite?.close()
    await postgres?.close()
    await database?.drop()
  })

  it("migrations/ and migrations-postgres/ give the same tables, columns, keys, indexes and foreign keys", async () => {
    const [fromSqlite, fromPostgres] = await Promise.all([sqliteShape(sqlite), postgresShape(postgres)])
    expect(Object.keys(fromSqlite).sort()).toEqual([
      "app_keys",
      "apps",
      "deleted_app_keys",
      "deleted_installations",
      "installation_claims",
      "installations",
      "rate_limits",
      "tokens"
    ])
    // Table by table, so a difference names its table.
    for (const table of Object.keys(fromSqlite))
      expect({ table, ...fromPostgres[table] }).toEqual({ table, ...fromSqlite[table] })
    expect(Object.keys(fromPostgres).sort()).toEqual(Object.keys(fromSqlite).sort())
  })
})
