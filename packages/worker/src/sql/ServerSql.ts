/**
 * What a server needs of a database beyond the core's {@link SqlDriver} seam: an interactive
 * transaction under an exclusive lock (the migration runner reads what is applied, then applies,
 * with other instances kept out), and a way to close the connection or pool at shutdown.
 *
 * The core seam has no interactive transaction on purpose — D1 has none, and the issuer's rules are
 * written as single statements or atomic batches. Only server-side code (migrations at start-up)
 * uses {@link ServerSqlDriver.exclusive}.
 */
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"

/** A transaction in progress: the seam's calls, each inside it, and scripts of several statements. */
export interface SqlTransaction extends SqlDriver {
  /** Runs a script of several `;`-separated statements without parameters (a migration file). */
  readonly exec: (script: string) => Promise<void>
}

/** A database a server opened: the core's seam, an exclusive transaction, and close. */
export interface ServerSqlDriver extends SqlDriver {
  /**
   * Where it is and which driver speaks to it, for the start-up line: never a password
   * (`sqlite:./icr-apps.db (libsql)`, `postgres://icr@db.example:5432/icr (postgres.js, pool 10)`).
   */
  readonly description: string
  /**
   * Runs `f` in one transaction that holds the database's writer lock for its whole length —
   * SQLite's `BEGIN IMMEDIATE` (other processes wait up to `busy_timeout`), Postgres's transaction
   * advisory lock `lockKey` — so that every caller of `exclusive` with the same key, in any process,
   * runs one at a time. Commits when `f` resolves, rolls back when it rejects. Other calls on this
   * driver wait until it ends.
   */
  readonly exclusive: <A>(lockKey: string, f: (tx: SqlTransaction) => Promise<A>) => Promise<A>
  /** Closes the database (waits for calls in flight). Later calls fail. */
  readonly close: () => Promise<void>
}
