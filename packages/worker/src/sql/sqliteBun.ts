/** Bun's built-in SQLite (`bun:sqlite`) as a {@link SqliteConnection}. Loaded only on Bun. */
import { Database } from "bun:sqlite"
import { rowOrUndefined, type SqliteConnection } from "./sqlite.js"

/** Opens (creating) the file at `path`. */
export const open = (path: string): SqliteConnection => {
  // Integers come back as JS numbers (safeIntegers off): every integer the issuer stores is < 2^53.
  const db = new Database(path, { create: true, readwrite: true })
  return {
    engine: "bun:sqlite",
    prepare: (sql) => {
      const statement = db.prepare(sql)
      return {
        reader: statement.columnNames.length > 0,
        all: (params) => statement.all(...params) as Array<Record<string, unknown>>,
        get: (params) => rowOrUndefined(statement.get(...params)),
        run: (params) => statement.run(...params)
      }
    },
    exec: (script) => {
      db.exec(script)
    },
    close: () => db.close()
  }
}
