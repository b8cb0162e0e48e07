/**
 * `icr-apps-issuer copy --from <DATABASE_URL> --to <DATABASE_URL>`: moves an issuer's data between
 * engines — SQLite to Postgres when one machine is no longer enough, Postgres back to SQLite, or a D1
 * database (exported to a SQLite file) to either. Every app, key, remembered key deletion,
 * installation and token (by digest; revocations and epochs with them) arrives as it was, so live
 * tokens keep working and every kill switch stays pulled; rate-limit windows are not copied.
 *
 * The target is migrated first and must hold no app (nothing is merged or overwritten). The whole
 * copy is one transaction on the target: it lands completely or not at all. Stop the servers on the
 * source first: writes made during or after the copy would be left behind. (A SQLite source is read
 * under its writer lock, one consistent instant; a Postgres source statement by statement.)
 */
import type { SqlValue } from "@icr-apps/core/issuer/Sql"
import { issuerMigrations, migrate } from "../sql/migrate.js"
import type { ServerSqlDriver, SqlTransaction } from "../sql/ServerSql.js"

/** The issuer's tables in the order their foreign keys need, with the columns every dialect has. */
export const COPIED_TABLES = [
  { table: "apps", columns: ["id", "name", "permissions", "created_at", "updated_at", "token_epoch"] },
  { table: "app_keys", columns: ["id", "app_id", "fingerprint", "spki", "created_at", "not_before"] },
  { table: "deleted_app_keys", columns: ["app_id", "fingerprint", "deleted_at"] },
  {
    table: "installations",
    columns: [
      "id",
      "app_id",
      "organization_id",
      "permissions",
      "created_at",
      "updated_at",
      "suspended_at",
      "token_epoch"
    ]
  },
  {
    table: "tokens",
    columns: [
      "digest",
      "id",
      "kind",
      "app_id",
      "installation_id",
      "organization_id",
      "permissions",
      "created_at",
      "expires_at",
      "app_epoch",
      "installation_epoch",
      "revoked_at"
    ]
  }
] as const

/** Rows per `INSERT`: well under both engines' limits on bound values (SQLite 32,766; Postgres 65,535). */
const ROWS_PER_INSERT = 200

/** How many rows of each table were copied. */
export type CopyReport = Record<(typeof COPIED_TABLES)[number]["table"], number>

/** Why a copy was refused before anything was written. */
export class CopyRefused extends Error {
  override readonly name = "CopyRefused"
}

const readAll = async (source: SqlTransaction) => {
  const rows: Record<string, ReadonlyArray<Record<string, unknown>>> = {}
  for (const { table, columns } of COPIED_TABLES) {
    rows[table] = await source.all(`SELECT ${columns.join(", ")} FROM ${table} ORDER BY ${columns[0]}`)
  }
  return rows
}

/** Copies the issuer's data from `source` to `target` (both open; neither is closed here). */
export const copyIssuerData = async (source: ServerSqlDriver, target: ServerSqlDriver): Promise<CopyReport> => {
  // The source must be an issuer's database at the same schema as this version writes.
  const sourceReport = await migrate(source, issuerMigrations(source.dialect))
  if (sourceReport.unknown.length > 0) {
    throw new CopyRefused(
      "the source was migrated by a newer version of the issuer (it records migrations this one does not have)"
    )
  }
  await migrate(target, issuerMigrations(target.dialect))
  const rows = await source.exclusive("icr-apps/copy", readAll)
  return target.exclusive("icr-apps/copy", async (tx) => {
    const existing = await tx.first<{ n: number }>("SELECT COUNT(*) AS n FROM apps")
    if (Number(existing?.n ?? 0) > 0) {
      throw new CopyRefused("the target already holds apps: copy into an empty database")
    }
    const report = {} as Record<string, number>
    for (const { table, columns } of COPIED_TABLES) {
      const all = rows[table] ?? []
      for (let start = 0; start < all.length; start += ROWS_PER_INSERT) {
        const chunk = all.slice(start, start + ROWS_PER_INSERT)
        const values: Array<SqlValue> = []
        const tuples = chunk.map((row) => {
          for (const column of columns) values.push((row[column] ?? null) as SqlValue)
          return `(${columns.map(() => "?").join(", ")})`
        })
        await tx.run(`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${tuples.join(", ")}`, values)
      }
      report[table] = all.length
    }
    // New apps must not take a copied id: Postgres's identity moves on past the largest one (SQLite's
    // AUTOINCREMENT already has, by the explicit ids inserted).
    if (target.dialect === "postgres" && (rows.apps?.length ?? 0) > 0) {
      await tx.run("SELECT setval(pg_get_serial_sequence('apps', 'id'), (SELECT MAX(id) FROM apps))")
    }
    return report as CopyReport
  })
}
