/**
 * `libsql` (a better-sqlite3-compatible API over libSQL, SQLite's fork) as a {@link SqliteConnection}:
 * the driver for Node 20, whose native binary comes from a per-platform npm package
 * (`@libsql/linux-x64-gnu`, …), never from a download at install time.
 */
import Database from "libsql"
import { integersAsBigInts as bind, type SqliteConnection } from "./sqlite.js"

/** Opens (creating) the file at `path`. */
export const open = (path: string): SqliteConnection => {
  const db = new Database(path)
  return {
    engine: "libsql",
    prepare: (sql) => {
      const statement = db.prepare(sql)
      return {
        reader: statement.reader,
        all: (params) => statement.all(...bind(params)) as Array<Record<string, unknown>>,
        // Not statement.get(): in libsql 0.5.29 a get() right after an all() on the same statement
        // ignores its new bindings and returns the all()'s first row again (`s.all("a"); s.get("b")`
        // gives a's row). The issuer's `first` reads one row by key, so all()[0] costs nothing more.
        get: (params) => statement.all(...bind(params))[0] as Record<string, unknown> | undefined,
        run: (params) => statement.run(...bind(params))
      }
    },
    exec: (script) => {
      db.exec(script)
    },
    close: () => db.close()
  }
}
