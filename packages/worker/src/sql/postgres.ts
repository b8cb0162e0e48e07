/**
 * The Postgres driver (SPEC §9: Postgres and the engines that speak its protocol), over postgres.js
 * (`postgres`). Chosen over `pg` by measurement (see the servers note): it prepares statements on
 * every connection of its pool by itself, and `sql.batch` sends a whole batch in one round trip as
 * one implicit transaction, where `pg` needs BEGIN, each statement and COMMIT one after the other.
 * Pure JavaScript: it runs unchanged on Node, Deno and Bun.
 *
 * Statements come with `?` placeholders (the seam's) and are numbered for Postgres once each.
 * `BIGINT` (and `NUMERIC`, e.g. a `SUM`) come back as JS numbers: every integer the issuer stores is
 * below 2^53. A unique violation is SQLSTATE 23505.
 */
import { numberPlaceholders, type SqlResult, type SqlStatement, type SqlValue } from "@icr-apps/core/issuer/Sql"
import postgres from "postgres"
import { DEFAULT_POOL_SIZE } from "./open.js"
import type { ServerSqlDriver, SqlTransaction } from "./ServerSql.js"

/** How the pool is opened. */
export interface PostgresOptions {
  /** Most connections at a time (default {@link DEFAULT_POOL_SIZE}). */
  readonly poolSize?: number | undefined
  /** The session's `application_name` (shown in `pg_stat_activity`); absent: the client's default. */
  readonly applicationName?: string | undefined
  /** Run-time parameters every session of the pool starts with (`synchronous_commit`, …). */
  readonly sessionSettings?: Readonly<Record<string, string>> | undefined
}

/** Whether `error` is a violation of a `UNIQUE` or primary-key constraint (SQLSTATE 23505). */
export const isPostgresUniqueViolation = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { code?: unknown }).code === "23505"

/**
 * A Postgres URL as it may be shown: without its password (and without any query parameter, which
 * may carry one, as `password=` or `sslpassword=`). Never throws: a URL that does not parse is
 * shown as `postgres://…`.
 */
export const describePostgresUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    const user = parsed.username === "" ? "" : `${decodeURIComponent(parsed.username)}@`
    return `${parsed.protocol}//${user}${parsed.host}${parsed.pathname}`
  } catch {
    return "postgres://…"
  }
}

/** Every way `secret` may appear in a message (as is, and percent-encoded as in the URL). */
const redactor = (url: string) => {
  let password = ""
  try {
    password = new URL(url).password
  } catch {
    // Not a URL: postgres() rejects it below, and the message quotes nothing of it.
  }
  let decoded = password
  try {
    decoded = decodeURIComponent(password)
  } catch {
    // Not percent-encoded (DATABASE_URL refuses such a URL; a caller of openPostgres may not have).
  }
  const secrets = password === "" ? [] : [password, decoded]
  return (text: string) => secrets.reduce((out, secret) => out.split(secret).join("***"), text.split(url).join("***"))
}

/**
 * An error from the pool with any trace of the password removed from its message (the client's
 * own messages never quote it; this is a second guard, since a message may be printed at start-up).
 */
const scrubbed = (error: unknown, redact: (text: string) => string): unknown => {
  if (error instanceof Error) {
    const clean = redact(error.message)
    if (clean !== error.message) error.message = clean
  }
  return error
}

const numbered = new Map<string, string>()
/** `?` placeholders numbered as `$n`, once per distinct statement. */
const toPostgres = (sql: string): string => {
  let text = numbered.get(sql)
  if (text === undefined) {
    text = numberPlaceholders(sql)
    if (numbered.size >= 1024) numbered.clear()
    numbered.set(sql, text)
  }
  return text
}

// Parsed as numbers: 20 int8 (BIGINT, COUNT(*)), 1700 numeric (SUM of integers).
const asNumber = (x: string) => Number(x)
const NUMBER_TYPES = {
  bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: asNumber },
  numeric: { to: 1700, from: [1700], serialize: (x: number) => String(x), parse: asNumber }
}

/** The custom types every pool of the issuer's is opened with (integers as JS numbers). */
export type PostgresTypes = { readonly bigint: number; readonly numeric: number }
type Client = postgres.ISql<PostgresTypes>

/** One statement on a client (pool, transaction or reserved connection), prepared on each connection. */
export const query = (client: Client, sql: string, params: ReadonlyArray<SqlValue>) =>
  client.unsafe(toPostgres(sql), params as Array<SqlValue>, { prepare: true, simple: false })

/** A statement's rows and changes, as the seam gives them. */
export const toResult = (rows: postgres.RowList<Array<postgres.Row>>): SqlResult => ({
  rows: Array.from(rows) as Array<Record<string, unknown>>,
  // `count` is the rows a write changed (and, for a SELECT, the rows it returned).
  changes: rows.command === "SELECT" ? 0 : (rows.count ?? 0)
})

/**
 * A postgres.js pool as every driver here opens one: integers as numbers, no notice printed (unless
 * `onnotice` takes them), a 10 s connect timeout.
 */
export const postgresClient = (
  url: string,
  options: {
    readonly max: number
    readonly onnotice?: ((notice: postgres.Notice) => void) | undefined
    readonly applicationName?: string | undefined
    readonly sessionSettings?: Readonly<Record<string, string>> | undefined
  }
): postgres.Sql<PostgresTypes> =>
  postgres(url, {
    max: options.max,
    types: NUMBER_TYPES,
    // Notices (e.g. "relation already exists, skipping") are not the operator's business.
    onnotice: options.onnotice ?? false,
    // A server that does not answer fails the request rather than holding it for half a minute.
    connect_timeout: 10,
    connection: {
      ...options.sessionSettings,
      ...(options.applicationName === undefined ? {} : { application_name: options.applicationName })
    }
  })

/** Runs `f`; an error it throws leaves without any trace of the password in `url`. */
export const guardFor = (url: string) => {
  const redact = redactor(url)
  return async <A>(f: () => Promise<A>): Promise<A> => {
    try {
      return await f()
    } catch (error) {
      throw scrubbed(error, redact)
    }
  }
}

/** Opens a pool to the database at `url` (`postgres://` or `postgresql://`). Connects lazily. */
export const openPostgres = (url: string, options: PostgresOptions = {}): ServerSqlDriver => {
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE
  const pool = postgresClient(url, {
    max: poolSize,
    applicationName: options.applicationName,
    sessionSettings: options.sessionSettings
  })
  const guard = guardFor(url)
  const calls = (client: Client) => ({
    all: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) =>
      guard(async () => Array.from(await query(client, sql, params)) as Array<R>),
    first: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) =>
      guard(async () => (await query(client, sql, params))[0] as R | undefined),
    run: (sql: string, params: ReadonlyArray<SqlValue> = []) =>
      guard(async () => ({ changes: toResult(await query(client, sql, params)).changes }))
  })
  const inTransaction = (tx: postgres.TransactionSql<PostgresTypes>): SqlTransaction => ({
    dialect: "postgres",
    ...calls(tx),
    // Pipelined, in order, inside the transaction already open.
    batch: (statements: ReadonlyArray<SqlStatement>) =>
      guard(async () => (await Promise.all(statements.map((s) => query(tx, s.sql, s.params)))).map(toResult)),
    exec: (script) =>
      guard(async () => {
        await tx.unsafe(script, { simple: true })
      }),
    isUniqueViolation: isPostgresUniqueViolation
  })

  return {
    dialect: "postgres",
    description: `${describePostgresUrl(url)} (postgres.js, pool ${poolSize})`,
    ...calls(pool),
    batch: (statements) =>
      guard(async () => {
        if (statements.length === 0) return []
        if (statements.length === 1) return [toResult(await query(pool, statements[0]!.sql, statements[0]!.params))]
        // One round trip, one implicit transaction: all commit, or (one failing) none.
        const results = await pool.batch(statements.map((s) => query(pool, s.sql, s.params)))
        return (results as Array<postgres.RowList<Array<postgres.Row>>>).map(toResult)
      }),
    isUniqueViolation: isPostgresUniqueViolation,
    exclusive: <A>(lockKey: string, f: (tx: SqlTransaction) => Promise<A>) =>
      guard(async () => {
        let result: { readonly value: A } | undefined
        await pool.begin(async (tx) => {
          // Held until this transaction ends; every instance asking for the same key waits here.
          await tx.unsafe("SELECT pg_advisory_xact_lock(hashtext($1))", [lockKey], { simple: false })
          result = { value: await f(inTransaction(tx)) }
        })
        return result!.value
      }),
    close: () => pool.end({ timeout: 5 })
  }
}
