/**
 * `node:sqlite` (Deno 2; Node >= 22.5, behind `--experimental-sqlite` before 22.13) as a
 * {@link SqliteConnection}. Loaded only where that module exists.
 */
import { DatabaseSync } from "node:sqlite"
import { integersAsBigInts as bind, rowOrUndefined, type SqliteConnection } from "./sqlite.js"

/** Opens (creating) the file at `path`. */
export const open = (path: string): SqliteConnection => {
  // Integers come back as JS numbers (readBigInts off): every integer the issuer stores is < 2^53.
  const db = new DatabaseSync(path)
  return {
    engine: "node:sqlite",
    prepare: (sql) => {
      const statement = db.prepare(sql)
      return {
        reader: statement.columns().length > 0,
        all: (params) => statement.all(...bind(params)) as Array<Record<string, unknown>>,
        get: (params) => rowOrUndefined(statement.get(...bind(params))),
        run: (params) => statement.run(...bind(params))
      }
    },
    exec: (script) => db.exec(script),
    close: () => db.close()
  }
}
