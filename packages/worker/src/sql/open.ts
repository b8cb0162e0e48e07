/**
 * Opens the database a `DATABASE_URL` names (SPEC §9): `sqlite:<path>` (the embedded default, one
 * file; `sqlite::memory:` for one that lives as long as the process) or `postgres://…` /
 * `postgresql://…`. Each driver is loaded only when asked for, so a server on SQLite never loads the
 * Postgres client, and a runtime never meets a module it cannot load.
 */
import type { ServerSqlDriver } from "./ServerSql.js"

/** The default number of connections in a Postgres pool (`DATABASE_POOL_SIZE`). */
export const DEFAULT_POOL_SIZE = 10

/** Which database a URL names. */
export type DatabaseLocation =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string }

/** Reads a `DATABASE_URL`, or says (without quoting it: it may hold a password) why it is not one. */
export const parseDatabaseUrl = (url: string): DatabaseLocation | string => {
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "")
    return path === "" ? "DATABASE_URL sqlite: needs a path (sqlite:./icr-apps.db)" : { kind: "sqlite", path }
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return "DATABASE_URL is not a valid postgres:// URL"
    }
    try {
      // The client decodes both; a bare `%` would fail there, later, as "URI malformed".
      decodeURIComponent(parsed.username)
      decodeURIComponent(parsed.password)
    } catch {
      return "DATABASE_URL: the user name or password is not percent-encoded (write % as %25)"
    }
    return { kind: "postgres", url }
  }
  return "DATABASE_URL must be sqlite:<path> or postgres://user:password@host:port/database"
}

/** Opens the database at `location` (Postgres with a pool of `poolSize` connections). */
export const openDatabase = async (
  location: DatabaseLocation,
  options: { readonly poolSize?: number | undefined } = {}
): Promise<ServerSqlDriver> => {
  if (location.kind === "sqlite") return (await import("./sqlite.js")).openSqlite(location.path)
  return (await import("./postgres.js")).openPostgres(location.url, { poolSize: options.poolSize })
}
