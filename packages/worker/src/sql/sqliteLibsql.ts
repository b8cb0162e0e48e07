/**
 * `libsql` (a better-sqlite3-compatible API over libSQL, SQLite's fork) as a {@link SqliteConnection}:
 * the driver for Node 20, whose native binary comes from a per-platform npm package
 * (`@libsql/linux-x64-gnu`, …), never from a download at install time.
 */
import Database from "libsql"
import { rowOrUndefined, type SqliteConnection } from "./sqlite.js"

/** Opens (creating) the file at `path`. */
export const open = (path: string): SqliteConnection => {
  const db = new Database(path)
  return {
    engine: "libsql",
    prepare: (sql) => {
      const statement = db.prepare(sql)
      return {
        reader: statement.reader,
        all: (params) => statement.all(...params) as Array<Record<string, unknown>>,
        get: (params) => {
          const row = rowOrUndefined(statement.get(...params))
          // libsql adds its timing to a row read with get(): not a column.
          if (row !== undefined) delete row._metadata
          return row
        },
        run: (params) => statement.run(...params)
      }
    },
    exec: (script) => {
      db.exec(script)
    },
    close: () => db.close()
  }
}
