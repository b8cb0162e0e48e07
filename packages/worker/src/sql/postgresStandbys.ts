/**
 * Postgres with synchronous standbys (STORAGE.md, "Postgres with standbys"): one driver over the
 * primary (`DATABASE_URL`) and the standbys `DATABASE_STANDBY_URLS` names, routing each statement by
 * its identity (`postgresRoutes.ts`, the audit list):
 *
 * - the token-standing read goes to a standby (round robin); a miss or a failure there is asked
 *   again of the primary (a fresh mint is committed, and flushed on the standby, but may not be
 *   applied there yet);
 * - a revocation or kill switch commits on the primary with `SET LOCAL synchronous_commit =
 *   remote_apply` and a WAL record of its own (`pg_logical_emit_message`), so that even a statement
 *   that changes nothing (a repeated revocation) is acknowledged only once every synchronous standby
 *   has applied everything committed before it. The wait is bounded: past `applyTimeoutMs` the call
 *   fails (the registry answers 503), never succeeds early; a wait the server cancels (it commits
 *   locally and says so only in a WARNING) is a failure too;
 * - every other read and write goes to the primary, committed normally (`synchronous_commit = on`);
 *   writes (mints included) on a pool of their own, so that a read never queues behind a commit
 *   waiting for a standby, and within the same bounded wait.
 *
 * A standby decides standing only while it is synchronous: at start the primary's
 * `synchronous_standby_names` must require every configured standby (else {@link StandbyNotSynchronous},
 * a configuration error), and every `recheckMs` the driver checks again — the setting, each
 * standby's `sync_state`, and that the standby has replayed up to the primary's WAL position read
 * after those — and serves standing from the primary alone while a check fails.
 */
import type { SqlResult, SqlStatement, SqlValue } from "@icr-apps/core/issuer/Sql"
import type postgres from "postgres"
import { ConfigError } from "../server/Config.js"
import { DEFAULT_POOL_SIZE } from "./open.js"
import {
  describePostgresUrl,
  guardFor,
  openPostgres,
  type PostgresTypes,
  postgresClient,
  query,
  toResult
} from "./postgres.js"
import { routeOf, routeOfBatch, type StatementRoute } from "./postgresRoutes.js"
import type { ServerSqlDriver } from "./ServerSql.js"

/** How a kill switch waits for the standbys by default (`DATABASE_STANDBY_APPLY_TIMEOUT_MS`). */
export const DEFAULT_APPLY_TIMEOUT_MS = 5000

/** The primary's `synchronous_standby_names`, read. */
export interface SynchronousStandbyNames {
  readonly method: "first" | "any"
  /** How many of {@link names} must confirm a commit. */
  readonly count: number
  /** Lower-case (the server compares names without case); `*` matches any standby. */
  readonly names: ReadonlyArray<string>
}

/** Splits a list of standby names on commas outside double quotes; a quoted name loses its quotes. */
const splitNames = (list: string): Array<string> => {
  const names: Array<string> = []
  let current = ""
  let quoted = false
  for (let i = 0; i < list.length; i++) {
    const ch = list[i]!
    if (ch === '"') {
      if (quoted && list[i + 1] === '"') {
        current += '"'
        i++
      } else quoted = !quoted
    } else if (ch === "," && !quoted) {
      names.push(current.trim())
      current = ""
    } else current += ch
  }
  names.push(current.trim())
  return names.filter((name) => name !== "").map((name) => name.toLowerCase())
}

/**
 * Reads `synchronous_standby_names` as the server does (`FIRST n (…)`, `ANY n (…)`, `n (…)`, or a
 * bare list, which is `FIRST 1`); `undefined` when it is empty (no synchronous standby).
 */
export const parseSynchronousStandbyNames = (text: string): SynchronousStandbyNames | undefined => {
  const trimmed = text.trim()
  if (trimmed === "") return undefined
  const counted = /^(?:(first|any)\s+)?(\d+)\s*\(([\s\S]*)\)$/i.exec(trimmed)
  if (counted !== null)
    return {
      method: (counted[1]?.toLowerCase() ?? "first") as "first" | "any",
      count: Number(counted[2]),
      names: splitNames(counted[3]!)
    }
  return { method: "first", count: 1, names: splitNames(trimmed) }
}

/**
 * Why `setting` does not make every standby in `required` synchronous (none: it does). A standby
 * is sure to confirm every commit only when the count equals the number of names listed (FIRST n
 * or ANY n of n) and no name is `*`; a list may name more standbys than the issuer reads from.
 */
export const synchronousProblems = (setting: string, required: ReadonlyArray<string>): ReadonlyArray<string> => {
  const shown = `synchronous_standby_names = '${setting.trim()}'`
  const parsed = parseSynchronousStandbyNames(setting)
  if (parsed === undefined)
    return [`the primary has no synchronous standby (${shown}): no standby may decide a token's standing`]
  const problems: Array<string> = []
  const listed = new Set(parsed.names)
  if (listed.has("*"))
    problems.push(`the primary's ${shown} matches any standby with *: name each standby the issuer reads from`)
  else if (parsed.count !== listed.size)
    problems.push(
      `the primary's ${shown} requires ${parsed.count} of ${listed.size} standbys: a standby outside those ` +
        `${parsed.count} may lag; require all of them (${parsed.method.toUpperCase()} ${listed.size} (…))`
    )
  for (const name of required)
    if (!listed.has(name.toLowerCase()))
      problems.push(`standby ${name} is not in the primary's ${shown}: it is not synchronous`)
  return problems
}

/** The `application_name` a standby's WAL receiver gives the primary, from its `conninfo`. */
export const applicationNameOf = (conninfo: string): string | undefined => {
  const values = new Map<string, string>()
  const pattern = /(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)/g
  for (const [, key, raw] of conninfo.matchAll(pattern))
    values.set(key!, raw!.startsWith("'") ? raw!.slice(1, -1).replace(/\\(.)/g, "$1") : raw!)
  return values.get("application_name") ?? values.get("fallback_application_name")
}

/** The standbys cannot decide standing: a configuration error, said at start (every problem). */
export class StandbyNotSynchronous extends ConfigError {
  constructor(problems: ReadonlyArray<string>) {
    super(problems.map((problem) => `DATABASE_STANDBY_URLS: ${problem}`))
    this.name = "StandbyNotSynchronous"
  }
}

/**
 * A write was not confirmed by every synchronous standby within the bounded wait (a kill switch: not
 * applied there): not acknowledged, the registry answers 503.
 */
export class StandbyApplyTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`a write was not confirmed by every synchronous standby within ${timeoutMs} ms`)
    this.name = "StandbyApplyTimeout"
  }
}

/** The server stopped waiting for the standbys (it committed locally, unconfirmed): not acknowledged. */
export class StandbyWaitCanceled extends Error {
  constructor() {
    super("the wait for the synchronous standbys was canceled: the kill switch is not confirmed on them")
    this.name = "StandbyWaitCanceled"
  }
}

/** How many statements went where, since the driver opened (for the audit and the tests). */
export interface RoutingCounts {
  /** Standing reads a standby answered with a row. */
  readonly standbyHits: number
  /** Standing reads a standby had no row for (asked again of the primary). */
  readonly standbyMisses: number
  /** Standing reads a standby failed (asked again of the primary). */
  readonly standbyErrors: number
  /** Standing reads sent to the primary first (no standby trusted). */
  readonly standingOnPrimary: number
  readonly killSwitches: number
  readonly killSwitchFailures: number
  readonly mints: number
  /** Other writes. */
  readonly writes: number
  /** Other reads. */
  readonly primary: number
  /** Writes (mints included) not confirmed within the bounded wait. */
  readonly writeTimeouts: number
}

/** How the primary and standbys are opened. */
export interface StandbyOptions {
  readonly standbyUrls: ReadonlyArray<string>
  /** Connections per pool (primary, each standby); default {@link DEFAULT_POOL_SIZE}. */
  readonly poolSize?: number | undefined
  /** Most a kill switch waits for every synchronous standby to apply it (default {@link DEFAULT_APPLY_TIMEOUT_MS}). */
  readonly applyTimeoutMs?: number | undefined
  /** Connections that commit kill switches, each one at a time (default 4). */
  readonly killSwitchConnections?: number | undefined
  /** How often the standbys' standing is checked again, in ms (default 1000; 0: only at start). */
  readonly recheckMs?: number | undefined
  /** Where a change of trust is said (a standby stops or starts serving standing). */
  readonly onWarning?: ((line: string) => void) | undefined
}

/** A standby the driver reads standing from. */
export interface StandbyState {
  /** Its URL without password. */
  readonly description: string
  /** Its `application_name` on the primary. */
  readonly name: string
  /** Whether it serves standing now (synchronous, and caught up when last checked). */
  readonly trusted: boolean
}

/** The routed driver: the seam, plus what it routed and which standbys it trusts. */
export interface RoutedPostgresDriver extends ServerSqlDriver {
  readonly routing: () => RoutingCounts
  readonly standbys: () => ReadonlyArray<StandbyState>
  /** Checks the standbys now (as the periodic check does); resolves when trust is updated. */
  readonly recheck: () => Promise<void>
}

type Client = postgres.Sql<PostgresTypes>

const WARNING_OF_CANCELED_WAIT = /synchronous replication/i

/** One connection that commits kill switches one at a time, with the notices of the one in progress. */
interface Lane {
  readonly client: Client
  notices: Array<postgres.Notice>
}

/** What a standby says about itself. */
interface StandbyProbe {
  readonly recovery: boolean
  readonly status: string | null
  readonly conninfo: string | null
}

/**
 * Opens the primary and standbys and checks, before serving, that every standby is synchronous
 * (throws {@link StandbyNotSynchronous} naming every problem; nothing stays open).
 */
export const openRoutedPostgres = async (
  primaryUrl: string,
  options: StandbyOptions
): Promise<RoutedPostgresDriver> => {
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE
  const applyTimeoutMs = options.applyTimeoutMs ?? DEFAULT_APPLY_TIMEOUT_MS
  const warn = options.onWarning ?? (() => {})
  // Mints and ordinary writes commit `on` whatever the server's default (an operator's
  // `remote_apply` would make every mint wait for the standbys' apply).
  const primary = openPostgres(primaryUrl, {
    poolSize,
    applicationName: "icr-apps issuer",
    sessionSettings: { synchronous_commit: "on" }
  })
  const writes = openPostgres(primaryUrl, {
    poolSize,
    applicationName: "icr-apps issuer (writes)",
    sessionSettings: { synchronous_commit: "on" }
  })
  const standbys = options.standbyUrls.map((url) => ({
    url,
    description: describePostgresUrl(url),
    driver: openPostgres(url, { poolSize, applicationName: "icr-apps issuer (standing)" }),
    name: "",
    trusted: false,
    everTrusted: false,
    barrier: undefined as string | undefined
  }))
  const guard = guardFor(primaryUrl)
  const lanes: Array<Lane> = Array.from({ length: options.killSwitchConnections ?? 4 }, () => {
    const lane: Lane = {
      notices: [],
      client: postgresClient(primaryUrl, {
        max: 1,
        applicationName: "icr-apps issuer (kill switch)",
        onnotice: (notice) => lane.notices.push(notice)
      })
    }
    return lane
  })
  const idle: Array<Lane> = [...lanes]
  const waiting: Array<(lane: Lane) => void> = []
  const counts = {
    standbyHits: 0,
    standbyMisses: 0,
    standbyErrors: 0,
    standingOnPrimary: 0,
    killSwitches: 0,
    killSwitchFailures: 0,
    mints: 0,
    writes: 0,
    primary: 0,
    writeTimeouts: 0
  }
  let timer: ReturnType<typeof setInterval> | undefined
  let closed = false

  const closeAll = async () => {
    closed = true
    if (timer !== undefined) clearInterval(timer)
    await Promise.allSettled([
      primary.close(),
      writes.close(),
      ...standbys.map((s) => s.driver.close()),
      ...lanes.map((lane) => lane.client.end({ timeout: 5 }))
    ])
  }

  /** Each standby's own word: in recovery, streaming, and the name it gives the primary. */
  const probe = (standby: (typeof standbys)[number]) =>
    standby.driver.first<StandbyProbe>(
      `SELECT pg_is_in_recovery() AS recovery, (SELECT status FROM pg_stat_wal_receiver) AS status,
         (SELECT conninfo FROM pg_stat_wal_receiver) AS conninfo`
    )

  /** What the primary says of the standbys: problems (none: all synchronous) and its WAL position. */
  const primaryProblems = async (): Promise<{ problems: Array<string>; lsn: string | undefined }> => {
    const [setting, replication, position] = await primary.batch([
      {
        sql: "SELECT current_setting('synchronous_standby_names') AS names, pg_is_in_recovery() AS recovery",
        params: []
      },
      {
        sql: "SELECT lower(application_name) AS name, sync_state, state FROM pg_stat_replication",
        params: []
      },
      // Read after the two above: a kill switch acknowledged before this check is at or below it.
      { sql: "SELECT CAST(pg_current_wal_lsn() AS TEXT) AS lsn", params: [] }
    ])
    const row = setting!.rows[0] as { names: string; recovery: boolean }
    if (row.recovery) return { problems: ["DATABASE_URL names a standby, not the primary"], lsn: undefined }
    const problems = [
      ...synchronousProblems(
        row.names,
        standbys.map((s) => s.name)
      )
    ]
    const rows = replication!.rows as Array<{ name: string | null; sync_state: string | null; state: string | null }>
    for (const standby of standbys) {
      const mine = rows.filter((r) => r.name === standby.name.toLowerCase())
      if (mine.length > 1)
        problems.push(`${mine.length} standbys stream from the primary as ${standby.name}: give each its own name`)
      else if (mine.length === 0) problems.push(`standby ${standby.name} is not connected to the primary`)
      else if (mine[0]!.sync_state === null)
        problems.push(
          "the issuer's database role cannot read pg_stat_replication.sync_state on the primary: GRANT pg_monitor TO it"
        )
      else if (mine[0]!.sync_state !== "sync" && mine[0]!.sync_state !== "quorum")
        problems.push(`standby ${standby.name} is ${mine[0]!.sync_state} on the primary, not synchronous`)
    }
    return { problems, lsn: (position!.rows[0] as { lsn: string }).lsn }
  }

  /** Whether `standby` has replayed the primary's WAL up to `lsn`. */
  const caughtUp = async (standby: (typeof standbys)[number], lsn: string) => {
    const row = await standby.driver.first<{ ok: boolean | null }>(
      "SELECT pg_last_wal_replay_lsn() >= CAST(? AS pg_lsn) AS ok",
      [lsn]
    )
    return row?.ok === true
  }

  /**
   * Decides which standbys serve standing now; a check that cannot reach the primary changes
   * nothing. A standby found synchronous serves standing once it has replayed the primary's WAL up
   * to the position read at the first check that found it so (its barrier): every kill switch
   * acknowledged before that check is below it, and every one after waited for the standby. A
   * check that finds it not synchronous takes it out, and its barrier with it.
   */
  let checking: Promise<void> | undefined
  /** One check at a time: a check called while one runs waits for it and then runs its own. */
  const recheck = async (): Promise<void> => {
    while (checking !== undefined) await checking
    checking = checkOnce().finally(() => {
      checking = undefined
    })
    return checking
  }
  const checkOnce = async () => {
    let verdict: { problems: Array<string>; lsn: string | undefined }
    try {
      verdict = await primaryProblems()
    } catch {
      // A primary that does not answer acknowledges no kill switch: the standbys stay as they were.
      return
    }
    for (const standby of standbys) {
      let trusted = false
      if (verdict.problems.length > 0 || verdict.lsn === undefined) standby.barrier = undefined
      else if (standby.trusted) trusted = true
      else {
        standby.barrier ??= verdict.lsn
        trusted = await caughtUp(standby, standby.barrier).catch(() => false)
      }
      if (trusted !== standby.trusted && !closed && (trusted || standby.everTrusted))
        warn(
          trusted
            ? `standby ${standby.name} (${standby.description}) serves token standing`
            : `standby ${standby.name} (${standby.description}) no longer serves token standing (the primary ` +
                `decides it): ${verdict.problems.join("; ")}`
        )
      standby.trusted = trusted
      if (trusted) standby.everTrusted = true
    }
  }

  try {
    const problems: Array<string> = []
    await Promise.all(
      standbys.map(async (standby, i) => {
        const label = `standby ${i + 1} (${standby.description})`
        const row = await probe(standby).catch((error: unknown) => {
          problems.push(`${label} does not answer: ${error instanceof Error ? error.message : "no reason given"}`)
          return undefined
        })
        if (row === undefined) return
        if (!row.recovery) problems.push(`${label} is not a standby (pg_is_in_recovery() is false)`)
        else if (row.status === null) problems.push(`${label} is not streaming from a primary`)
        else if (row.conninfo === null)
          problems.push(`${label}: the role cannot read pg_stat_wal_receiver.conninfo there: GRANT pg_monitor TO it`)
        else standby.name = applicationNameOf(row.conninfo) ?? ""
        if (row.conninfo !== null && standby.name === "") problems.push(`${label} gives the primary no name`)
      })
    )
    const names = standbys.map((s) => s.name.toLowerCase()).filter((name) => name !== "")
    if (new Set(names).size !== names.length)
      problems.push("two configured standbys give the primary the same name: they are one standby, or neither is sure")
    if (problems.length === 0) problems.push(...(await primaryProblems()).problems)
    if (problems.length > 0) throw new StandbyNotSynchronous(problems)
    // Synchronous now; each serves standing once it has replayed what the primary had committed
    // (waited for here up to the kill switches' own bound; a standby still behind joins at a later check).
    await recheck()
    for (const deadline = Date.now() + applyTimeoutMs; standbys.some((s) => !s.trusted) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      await recheck()
    }
    for (const standby of standbys)
      if (!standby.trusted)
        warn(
          `standby ${standby.name} (${standby.description}) has not replayed the primary's WAL within ` +
            `${applyTimeoutMs} ms: the primary decides token standing until it has`
        )
  } catch (error) {
    await closeAll()
    throw error
  }
  if ((options.recheckMs ?? 1000) > 0) {
    timer = setInterval(() => void recheck(), options.recheckMs ?? 1000)
    timer.unref?.()
  }

  let next = 0
  /** The standby to ask next (round robin over the trusted ones), if any. */
  const pickStandby = () => {
    for (let i = 0; i < standbys.length; i++) {
      const standby = standbys[(next + i) % standbys.length]!
      if (standby.trusted) {
        next = (next + i + 1) % standbys.length
        return standby
      }
    }
    return undefined
  }

  /** A standing read: a standby first, the primary when it has no row or fails. */
  const standing = async <A>(
    ask: (driver: ServerSqlDriver) => Promise<A>,
    found: (answer: A) => boolean
  ): Promise<A> => {
    const standby = pickStandby()
    if (standby === undefined) {
      counts.standingOnPrimary++
      return ask(primary)
    }
    try {
      const answer = await ask(standby.driver)
      if (found(answer)) {
        counts.standbyHits++
        return answer
      }
      counts.standbyMisses++
    } catch {
      counts.standbyErrors++
      // Skipped until a check finds it answering, synchronous and caught up (an unreachable host
      // would otherwise cost every use a connect timeout).
      if (standby.trusted && !closed)
        warn(`standby ${standby.name} (${standby.description}) did not answer: the primary decides token standing`)
      standby.trusted = false
      standby.barrier = undefined
    }
    return ask(primary)
  }

  const lease = (deadline: number): Promise<Lane> => {
    const lane = idle.pop()
    if (lane !== undefined) return Promise.resolve(lane)
    return new Promise<Lane>((resolve, reject) => {
      const take = (lane: Lane) => {
        clearTimeout(giveUp)
        resolve(lane)
      }
      const giveUp = setTimeout(
        () => {
          waiting.splice(waiting.indexOf(take), 1)
          reject(new StandbyApplyTimeout(applyTimeoutMs))
        },
        Math.max(0, deadline - Date.now())
      )
      waiting.push(take)
    })
  }
  const giveBack = (lane: Lane) => {
    const take = waiting.shift()
    if (take !== undefined) take(lane)
    else idle.push(lane)
  }

  /**
   * A kill switch: one transaction on a lane, committed once every synchronous standby applied it,
   * within the bounded wait. The lane is given back only when the transaction has ended (a commit
   * still waiting for a standby after the caller was told 503 keeps its lane).
   */
  const killSwitch = async (statements: ReadonlyArray<SqlStatement>): Promise<ReadonlyArray<SqlResult>> => {
    counts.killSwitches++
    const deadline = Date.now() + applyTimeoutMs
    const lane = await lease(deadline).catch((error: unknown) => {
      counts.killSwitchFailures++
      throw error
    })
    lane.notices = []
    const work = guard(async () => {
      const results = await lane.client.begin(async (tx) => {
        const all = await Promise.all([
          tx.unsafe("SET LOCAL synchronous_commit = remote_apply"),
          // A WAL record of its own: the commit waits even when the statements change nothing, so a
          // repeated revocation is acknowledged only once the first one is applied everywhere.
          tx.unsafe("SELECT pg_logical_emit_message(true, 'icr-apps', 'kill switch')"),
          ...statements.map((s) => query(tx, s.sql, s.params))
        ])
        return all.slice(2) as Array<postgres.RowList<Array<postgres.Row>>>
      })
      if (lane.notices.some((notice) => WARNING_OF_CANCELED_WAIT.test(notice.message ?? "")))
        throw new StandbyWaitCanceled()
      return results.map(toResult)
    })
    const released = work.then(
      () => giveBack(lane),
      () => giveBack(lane)
    )
    void released
    let expire: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      expire = setTimeout(() => reject(new StandbyApplyTimeout(applyTimeoutMs)), Math.max(0, deadline - Date.now()))
    })
    try {
      return await Promise.race([work, timeout])
    } catch (error) {
      counts.killSwitchFailures++
      throw error
    } finally {
      clearTimeout(expire)
    }
  }

  /** A write committed normally, failing (never succeeding) once the bounded wait is over. */
  const bounded = <A>(work: Promise<A>): Promise<A> => {
    let expire: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      expire = setTimeout(() => {
        counts.writeTimeouts++
        reject(new StandbyApplyTimeout(applyTimeoutMs))
      }, applyTimeoutMs)
    })
    return Promise.race([work, timeout]).finally(() => clearTimeout(expire))
  }

  /** Runs a statement (or batch) on the pool its route names: reads on the primary's, writes on their own, bounded. */
  const onPrimary = <A>(
    route: Exclude<StatementRoute, "standing" | "killSwitch">,
    f: (driver: ServerSqlDriver) => Promise<A>
  ) => {
    if (route === "primary") {
      counts.primary++
      return f(primary)
    }
    if (route === "mint") counts.mints++
    else counts.writes++
    return bounded(f(writes))
  }

  return {
    dialect: "postgres",
    description:
      `${primary.description}; token standing also from ${standbys.length} synchronous ` +
      `standby(s) ${standbys.map((s) => `${s.name} ${s.description}`).join(", ")}`,
    all: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) => {
      const route = routeOf(sql)
      if (route === "standing")
        return standing(
          (driver) => driver.all<R>(sql, params),
          (rows) => rows.length > 0
        )
      if (route === "killSwitch")
        return killSwitch([{ sql, params }]).then(([result]) => Array.from(result!.rows) as Array<R>)
      return onPrimary(route, (d) => d.all<R>(sql, params))
    },
    first: <R>(sql: string, params: ReadonlyArray<SqlValue> = []) => {
      const route = routeOf(sql)
      if (route === "standing")
        return standing(
          (driver) => driver.first<R>(sql, params),
          (row) => row !== undefined
        )
      if (route === "killSwitch")
        return killSwitch([{ sql, params }]).then(([result]) => result!.rows[0] as R | undefined)
      return onPrimary(route, (d) => d.first<R>(sql, params))
    },
    run: (sql: string, params: ReadonlyArray<SqlValue> = []) => {
      const route = routeOf(sql)
      if (route === "killSwitch")
        return killSwitch([{ sql, params }]).then(([result]) => ({ changes: result!.changes }))
      return onPrimary(route === "standing" ? "primary" : route, (d) => d.run(sql, params))
    },
    batch: (statements) => {
      if (statements.length === 0) return Promise.resolve([])
      const route = routeOfBatch(statements.map((s) => s.sql))
      if (route === "killSwitch") return killSwitch(statements)
      return onPrimary(route, (d) => d.batch(statements))
    },
    isUniqueViolation: primary.isUniqueViolation,
    // Migrations, on the primary.
    exclusive: (lockKey, f) => primary.exclusive(lockKey, f),
    close: closeAll,
    routing: () => ({ ...counts }),
    standbys: () => standbys.map((s) => ({ description: s.description, name: s.name, trusted: s.trusted && !closed })),
    recheck
  }
}
