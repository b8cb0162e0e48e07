/**
 * The SQLite driver (SPEC §9's embedded default): one file, opened by whichever SQLite the runtime
 * has — `bun:sqlite` on Bun, `node:sqlite` on Deno (and on Node where it is present), `libsql` on
 * Node 20 (native binaries shipped in per-platform npm packages; nothing is downloaded at install).
 * Each is a thin {@link SqliteConnection}; the rules of this file (pragmas, transactions, errors)
 * are the same over all of them.
 *
 * Every engine here is synchronous: a statement runs to completion on the calling thread, so the
 * statements of one `batch` can never interleave with another request's in this process. Other
 * processes on the same file are kept apart by SQLite's own locks (WAL mode, `busy_timeout`).
 */
import type { SqlResult, SqlStatement, SqlValue } from "@icr-apps/core/issuer/Sql"
import type { ServerSqlDriver, SqlTransaction } from "./ServerSql.js"

/** One prepared statement, as each engine's API offers it. */
export interface SqliteStatement {
  /** Whether the statement returns rows (a `SELECT`, a `PRAGMA`, a write with `RETURNING`). */
  readonly reader: boolean
  readonly all: (params: ReadonlyArray<SqlValue>) => Array<Record<string, unknown>>
  readonly get: (params: ReadonlyArray<SqlValue>) => Record<string, unknown> | undefined
  readonly run: (params: ReadonlyArray<SqlValue>) => { readonly changes: number | bigint }
}

/** An open SQLite database, as each engine's API offers it. */
export interface SqliteConnection {
  /** Which engine this is (`bun:sqlite`, `node:sqlite`, `libsql`). */
  readonly engine: string
  readonly prepare: (sql: string) => SqliteStatement
  /** Runs a script of several statements without parameters. */
  readonly exec: (script: string) => void
  readonly close: () => void
}

/** How long a statement waits for another process's write lock before it fails (`SQLITE_BUSY`). */
export const BUSY_TIMEOUT_MS = 5000

/**
 * The pragmas every connection starts with:
 * - `busy_timeout` first: several processes may open one file (instances of the server, a
 *   migration run, the operator's `sqlite3` shell), and a write that finds the lock taken waits for
 *   it instead of failing at once. It must precede `journal_mode`, which itself takes the lock.
 * - `journal_mode = WAL`: readers never block the writer nor it them, so token uses go on while a
 *   mint commits; one writer at a time, which `BEGIN IMMEDIATE` takes up front.
 * - `synchronous = FULL`: every commit is on disk before it is acknowledged, so an acknowledged
 *   kill switch (a revocation, a suspension, a key deletion) survives a power loss as it does on D1
 *   and Postgres (`synchronous_commit = on`): kill switches stay killed. `NORMAL` would lose the last
 *   commits before a power loss — a revocation among them would revive a token for up to its
 *   lifetime. The cost is an fsync per write: measured here (libsql, WAL, one writer) 2.5–2.9k
 *   commits/s against 15k with `NORMAL`, more than a mint path needs (Postgres: ~1k mints/s).
 * - `foreign_keys = ON`: the schema's `ON DELETE CASCADE` (an app's keys and installations) is
 *   honoured as on D1, which enforces foreign keys always.
 */
export const PRAGMAS = [
  `PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`,
  "PRAGMA journal_mode = WAL",
  "PRAGMA synchronous = FULL",
  "PRAGMA foreign_keys = ON"
]

/** Whether an error of any of the engines is a `UNIQUE` or primary-key violation. */
export const isSqliteUniqueViolation = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  const e = error as { code?: unknown; errcode?: unknown; errno?: unknown; rawCode?: unknown; message?: unknown }
  // SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT_PRIMARYKEY (1555), by extended code or name.
  for (const code of [e.errcode, e.errno, e.rawCode]) if (code === 2067 || code === 1555) return true
  if (e.code === "SQLITE_CONSTRAINT_UNIQUE" || e.code === "SQLITE_CONSTRAINT_PRIMARYKEY") return true
  // Some paths (node:sqlite's exec) carry only the message, which SQLite words the same everywhere.
  return typeof e.message === "string" && e.message.startsWith("UNIQUE constraint failed")
}

const RETURNING = /\bRETURNING\b/i

/** How many prepared statements are kept per connection (the issuer has a few dozen). */
const STATEMENT_CACHE = 256

/**
 * A {@link ServerSqlDriver} over an open connection: applies {@link PRAGMAS}, caches prepared
 * statements, runs `batch` and `exclusive` as `BEGIN IMMEDIATE` … `COMMIT` (rolled back on error).
 */
export const makeSqliteDriver = (connection: SqliteConnection, path: string): ServerSqlDriver => {
  for (const pragma of PRAGMAS) connection.exec(pragma)
  const statements = new Map<string, SqliteStatement>()
  const prepare = (sql: string) => {
    let statement = statements.get(sql)
    if (statement === undefined) {
      statement = connection.prepare(sql)
      if (statements.size >= STATEMENT_CACHE) statements.clear()
      statements.set(sql, statement)
    }
    return statement
  }
  const one = (statement: SqlStatement): SqlResult => {
    const prepared = prepare(statement.sql)
    if (prepared.reader) {
      const rows = prepared.all(statement.params)
      return { rows, changes: RETURNING.test(statement.sql) ? rows.length : 0 }
    }
    return { rows: [], changes: Number(prepared.run(statement.params).changes) }
  }
  /** `f` inside `BEGIN IMMEDIATE` … `COMMIT`; a throw rolls back. */
  const transaction = <A>(f: () => A): A => {
    connection.exec("BEGIN IMMEDIATE")
    try {
      const result = f()
      connection.exec("COMMIT")
      return result
    } catch (error) {
      try {
        connection.exec("ROLLBACK")
      } catch {
        // SQLite already rolled back (some errors end the transaction themselves).
      }
      throw error
    }
  }

  // While an exclusive transaction awaits, other callers in this process must not slip their
  // statements into it: they wait for it to end. The check and the synchronous call that follows
  // it run in one turn, so nothing can take the lock in between.
  let held: Promise<void> | undefined
  let closed = false
  const gated = async <A>(f: () => A): Promise<A> => {
    while (held !== undefined) await held
    if (closed) throw new Error("the SQLite database is closed")
    return f()
  }

  const inside: SqlTransaction = {
    dialect: "sqlite",
    all: async <R>(sql: string, params: ReadonlyArray<SqlValue> = []) => prepare(sql).all(params) as Array<R>,
    first: async <R>(sql: string, params: ReadonlyArray<SqlValue> = []) => prepare(sql).get(params) as R | undefined,
    run: async (sql, params = []) => ({ changes: one({ sql, params }).changes }),
    // Already inside a transaction: the statements run in order and commit (or not) with it.
    batch: async (batch) => batch.map(one),
    exec: async (script) => connection.exec(script),
    isUniqueViolation: isSqliteUniqueViolation
  }

  return {
    dialect: "sqlite",
    description: `sqlite:${path} (${connection.engine})`,
    all: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) => gated(() => prepare(sql).all(params) as Array<R>),
    first: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) =>
      gated(() => prepare(sql).get(params) as R | undefined),
    run: (sql, params = []) => gated(() => ({ changes: one({ sql, params }).changes })),
    batch: (batch) => gated(() => transaction(() => batch.map(one))),
    isUniqueViolation: isSqliteUniqueViolation,
    exclusive: async (_lockKey, f) => {
      // The file has one writer lock: every exclusive section, whatever its key, takes it.
      while (held !== undefined) await held
      if (closed) throw new Error("the SQLite database is closed")
      let release!: () => void
      held = new Promise((resolve) => {
        release = resolve
      })
      try {
        connection.exec("BEGIN IMMEDIATE")
        try {
          const result = await f(inside)
          connection.exec("COMMIT")
          return result
        } catch (error) {
          try {
            connection.exec("ROLLBACK")
          } catch {
            // Already rolled back.
          }
          throw error
        }
      } finally {
        held = undefined
        release()
      }
    },
    close: () =>
      gated(() => {
        closed = true
        statements.clear()
        connection.close()
      })
  }
}

/**
 * Values as libsql and `node:sqlite` should be given them: both bind every JS number as a REAL,
 * integers included (`typeof(?)` is `real` for 1, and `'a' || ?` gives `a1.0`), but a BigInt as an
 * INTEGER — so an integer goes in as a BigInt and `?` compares, sorts and concatenates as on D1 and
 * Bun. (Rows still come back as numbers.)
 */
export const integersAsBigInts = (params: ReadonlyArray<SqlValue>): Array<SqlValue | bigint> =>
  params.map((p) => (typeof p === "number" && Number.isSafeInteger(p) ? BigInt(p) : p))

/** Normalises `null` (bun:sqlite's "no row") to `undefined`, the seam's. */
export const rowOrUndefined = (row: unknown): Record<string, unknown> | undefined =>
  row === null || row === undefined ? undefined : (row as Record<string, unknown>)

/** The engines, in the order they are tried on each runtime. */
type Engine = "bun:sqlite" | "node:sqlite" | "libsql"

/** Which runtime this is. */
export const runtimeName = (): "bun" | "deno" | "node" =>
  "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node"

const enginesFor = (runtime: "bun" | "deno" | "node"): ReadonlyArray<Engine> =>
  runtime === "bun"
    ? ["bun:sqlite"]
    : runtime === "deno"
      ? ["node:sqlite"]
      : // libsql first on Node: measured and tested on Node 20 here, and not experimental; node:sqlite
        // (Node >= 22.5) when libsql has no binary for the platform.
        ["libsql", "node:sqlite"]

const openWith = async (engine: Engine, path: string): Promise<SqliteConnection> => {
  switch (engine) {
    case "bun:sqlite":
      return (await import("./sqliteBun.js")).open(path)
    case "node:sqlite":
      return (await import("./sqliteNode.js")).open(path)
    case "libsql":
      return (await import("./sqliteLibsql.js")).open(path)
  }
}

/**
 * Creates the database file at `path`, readable and writable by its owner only (0600), when there is
 * none yet. Every engine would create it world-readable (0644 under the usual umask), and SQLite gives
 * its `-wal` and `-shm` files the mode of the database file: this one mode covers all three. The file
 * holds no secret (public keys, token digests), but fingerprints, organizations and, with
 * `RATE_LIMIT_STORE=database`, clients' addresses are no other account's business. A file that exists
 * keeps the mode its operator gave it; a failure here (no such folder, no right to write) is left to
 * the engine, which reports it as it opens the same path.
 */
const createOwnerOnly = async (path: string): Promise<void> => {
  if (path === ":memory:" || path.startsWith("file:")) return
  const { closeSync, openSync } = await import("node:fs")
  try {
    // O_CREAT | O_EXCL: never an existing file, never through a symbolic link.
    closeSync(openSync(path, "wx", 0o600))
  } catch {
    // It exists (EEXIST), or the engine below will say why it cannot open it.
  }
}

/**
 * Opens the SQLite file at `path` with the first engine this runtime can load (`:memory:` for a
 * database that lives as long as the process), creating it for its owner only. Fails with a message
 * that names what was tried.
 */
export const openSqlite = async (path: string, engines?: ReadonlyArray<Engine>): Promise<ServerSqlDriver> => {
  const runtime = runtimeName()
  const tried: Array<string> = []
  await createOwnerOnly(path)
  for (const engine of engines ?? enginesFor(runtime)) {
    let connection: SqliteConnection
    try {
      connection = await openWith(engine, path)
    } catch (error) {
      tried.push(`${engine}: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`)
      continue
    }
    try {
      return makeSqliteDriver(connection, path)
    } catch (error) {
      connection.close()
      throw error
    }
  }
  throw new Error(
    `no SQLite driver is available on ${runtime} ${runtimeVersion()} (${tried.join("; ")}). ` +
      (runtime === "node"
        ? "Install the libsql package (a dependency of @icr-apps/worker), or use Node >= 22.5 (node:sqlite)."
        : "Use Deno >= 2 or Bun >= 1.")
  )
}

const runtimeVersion = () => {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } }
  return g.Bun?.version ?? g.Deno?.version.deno ?? (globalThis as { process?: { version?: string } }).process?.version
}
