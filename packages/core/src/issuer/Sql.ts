/**
 * The seam between the issuer's storage rules and a SQL engine (SPEC §9): the few calls the rules
 * need of any engine — D1 on Workers, SQLite on a server (`bun:sqlite`, `node:sqlite`, libsql),
 * Postgres — and nothing else. The rules and their statements are written once, over this, in
 * `SqlRegistry`; each driver (in `@icr-apps/worker`, which may import a runtime or a client
 * library) is a thin adapter. Web-standard: nothing here imports a runtime.
 *
 * Statements are written with `?` placeholders whatever the dialect; a Postgres driver numbers them
 * (`$1`, `$2`, …, see {@link numberPlaceholders}). Integers come back as JS numbers on every driver
 * (a Postgres `BIGINT` included: every integer the issuer stores is below 2^53).
 */

/** The SQL dialects the statements are written for: SQLite's (D1, SQLite) and Postgres's. */
export type SqlDialect = "sqlite" | "postgres"

/** A value bound to a `?` placeholder. */
export type SqlValue = string | number | null

/** A statement and the values of its `?` placeholders, in order. */
export interface SqlStatement {
  readonly sql: string
  readonly params: ReadonlyArray<SqlValue>
}

/** What one statement returned: its rows (none for most writes) and how many rows it changed. */
export interface SqlResult {
  readonly rows: ReadonlyArray<Record<string, unknown>>
  /** Rows inserted, updated or deleted (0 for a read). */
  readonly changes: number
}

/**
 * A connection (or pool) to one database. Every call may fail by throwing (rejecting): the
 * registry turns any failure into `StorageUnavailable`, except a unique-constraint violation, which
 * {@link SqlDriver.isUniqueViolation} recognises and the registry reports as the conflict it is.
 */
export interface SqlDriver {
  readonly dialect: SqlDialect
  /** Every row of one statement. */
  readonly all: <R = Record<string, unknown>>(sql: string, params?: ReadonlyArray<SqlValue>) => Promise<Array<R>>
  /** The first row of one statement, or `undefined`. */
  readonly first: <R = Record<string, unknown>>(sql: string, params?: ReadonlyArray<SqlValue>) => Promise<R | undefined>
  /** Runs one statement for its effect: how many rows it changed. */
  readonly run: (sql: string, params?: ReadonlyArray<SqlValue>) => Promise<{ readonly changes: number }>
  /**
   * Runs the statements in order as **one transaction**: all of them take effect, or (when one
   * throws) none. Each statement sees the writes of those before it. The results are in order.
   */
  readonly batch: (statements: ReadonlyArray<SqlStatement>) => Promise<ReadonlyArray<SqlResult>>
  /** Whether `error`, thrown by a call above, is a violation of a `UNIQUE` or primary-key constraint. */
  readonly isUniqueViolation: (error: unknown) => boolean
}

/** A statement with its values. */
export const sql = (text: string, ...params: ReadonlyArray<SqlValue>): SqlStatement => ({ sql: text, params })

/**
 * `?` placeholders numbered as Postgres wants them (`$1`, `$2`, …), outside quoted strings and
 * identifiers (`'…'`, `"…"`, a doubled quote inside) and comments (`-- …` to the end of the line,
 * `/* … *\/`): a `?` there is text, and a quote in a comment opens nothing. Every other `?` is a
 * placeholder (so Postgres's `?` operators cannot be written; use their functions). For drivers: the
 * statements are written once, with `?`.
 */
export const numberPlaceholders = (text: string): string => {
  let out = ""
  let n = 0
  let i = 0
  /** Copies `text` up to and including the first `end` from `from` (to the end when there is none). */
  const copyThrough = (from: number, end: string) => {
    const at = text.indexOf(end, from)
    const stop = at === -1 ? text.length : at + end.length
    out += text.slice(i, stop)
    i = stop
  }
  while (i < text.length) {
    const ch = text[i]!
    if (ch === "'" || ch === '"') copyThrough(i + 1, ch)
    else if (ch === "-" && text[i + 1] === "-") copyThrough(i + 2, "\n")
    else if (ch === "/" && text[i + 1] === "*") copyThrough(i + 2, "*/")
    else {
      out += ch === "?" ? `$${++n}` : ch
      i++
    }
  }
  return out
}
