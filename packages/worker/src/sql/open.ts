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

/** How a database is opened. */
export interface OpenOptions {
  /** Connections per Postgres pool. */
  readonly poolSize?: number | undefined
  /**
   * Postgres: synchronous standbys that may serve the token-standing read (`DATABASE_STANDBY_URLS`);
   * checked at open (see `postgresStandbys.ts`).
   */
  readonly standbyUrls?: ReadonlyArray<string> | undefined
  /** Most a kill switch waits for the standbys to apply it (`DATABASE_STANDBY_APPLY_TIMEOUT_MS`). */
  readonly standbyApplyTimeoutMs?: number | undefined
  /** Where the standbys' changes of trust are said. */
  readonly onWarning?: ((line: string) => void) | undefined
}

/** Opens the database at `location` (Postgres with a pool of `poolSize` connections, and its standbys). */
export const openDatabase = async (location: DatabaseLocation, options: OpenOptions = {}): Promise<ServerSqlDriver> => {
  if (location.kind === "sqlite") return (await import("./sqlite.js")).openSqlite(location.path)
  if (options.standbyUrls !== undefined && options.standbyUrls.length > 0)
    return (await import("./postgresStandbys.js")).openRoutedPostgres(location.url, {
      standbyUrls: options.standbyUrls,
      poolSize: options.poolSize,
      applyTimeoutMs: options.standbyApplyTimeoutMs,
      onWarning: options.onWarning
    })
  return (await import("./postgres.js")).openPostgres(location.url, { poolSize: options.poolSize })
}
