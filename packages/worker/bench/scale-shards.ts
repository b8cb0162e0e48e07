/**
 * The shards of `npm run bench:scale`'s simulation: N SQLite databases (libsql, in memory, each with
 * the issuer's migrations), each behind {@link slowAndFaulty} — a random delay before every statement
 * and a fault rate that makes calls throw, before the statement ran or after it committed (the
 * acknowledgement lost) — and the registry over them ({@link registryOver}: the one line that picks
 * the design under test).
 */
import type { Registry, TokenStanding } from "@icr-apps/core/issuer/Registry"
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"
import * as ShardedRegistry from "@icr-apps/core/issuer/ShardedRegistry"
import { shardOfInstallation } from "@icr-apps/core/issuer/Shards"
import { SHARD_STATEMENTS } from "@icr-apps/core/issuer/SqlStatements"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import { issuerMigrations, migrate } from "../src/sql/migrate.js"
import type { ServerSqlDriver } from "../src/sql/ServerSql.js"
import { openSqlite } from "../src/sql/sqlite.js"

/**
 * The registry the simulation drives, over its shards: the sharded registry, shard 0 home, every
 * shard open to new installations.
 */
export const registryOver = (shards: ReadonlyArray<SqlDriver>): Registry["Type"] => ShardedRegistry.make(shards)

/** Which design {@link registryOver} builds, for the report. */
export const REGISTRY_DESIGN = "ShardedRegistry (shard 0 home, every shard open)"

/** The shard an installation lives on, as its id names it. */
export const installationShard: (id: string) => number = shardOfInstallation

/** A fault the wrapper injected (never a real failure of the database). */
export class InjectedFault extends Error {
  constructor(readonly when: "before" | "after") {
    super(`injected fault (${when} the statement)`)
  }
}

/** How a shard misbehaves. */
export interface ShardWeather {
  /** Each call waits a uniform random 0..maxDelayMs before it runs. */
  readonly maxDelayMs: number
  /** The share of calls that throw: half before running, half after committing. */
  readonly faultRate: number
  /** The random source (seeded by the bench, so a run can be repeated). */
  readonly random: () => number
}

/** What one shard saw. */
export interface ShardStats {
  statements: number
  calls: number
  faults: number
  /** Every 16th call's time in the shard (its injected delay and its execution), ms. */
  readonly sampled: Array<number>
}

/** Empty stats for a shard. */
export const emptyStats = (): ShardStats => ({ statements: 0, calls: 0, faults: 0, sampled: [] })

const sleep = (ms: number) =>
  ms < 0.5 ? new Promise<void>((resolve) => setImmediate(resolve)) : new Promise<void>((r) => setTimeout(r, ms))

/** `inner` with a random delay before each call and injected faults; counts what it saw in `stats`. */
export const slowAndFaulty = (inner: SqlDriver, weather: ShardWeather, stats: ShardStats): SqlDriver => {
  const wrap = async <A>(statements: number, f: () => Promise<A>): Promise<A> => {
    const sample = stats.calls++ % 16 === 0
    const start = sample ? performance.now() : 0
    stats.statements += statements
    await sleep(weather.random() * weather.maxDelayMs)
    const roll = weather.random()
    if (roll < weather.faultRate / 2) {
      stats.faults++
      throw new InjectedFault("before")
    }
    const result = await f()
    if (sample) stats.sampled.push(performance.now() - start)
    if (roll < weather.faultRate) {
      stats.faults++
      throw new InjectedFault("after")
    }
    return result
  }
  return {
    dialect: inner.dialect,
    all: (sql, params) => wrap(1, () => inner.all(sql, params)),
    first: (sql, params) => wrap(1, () => inner.first(sql, params)),
    run: (sql, params) => wrap(1, () => inner.run(sql, params)),
    batch: (statements) => wrap(statements.length, () => inner.batch(statements)),
    isUniqueViolation: inner.isUniqueViolation
  }
}

/** N fresh, migrated SQLite databases in memory. */
export const openShards = async (n: number): Promise<Array<ServerSqlDriver>> => {
  const shards: Array<ServerSqlDriver> = []
  for (let i = 0; i < n; i++) {
    const driver = await openSqlite(":memory:", ["libsql"])
    await migrate(driver, issuerMigrations("sqlite"))
    shards.push(driver)
  }
  return shards
}

/** A small seeded PRNG (mulberry32): the simulation's choices, repeatable from `--seed`. */
export const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Bugs `--plant` puts into the registry or a shard, to show the checker catches them end to end. */
export type Plant = "stale-standing" | "lost-mint" | "lost-fanout"

/**
 * A shard (not home) that acknowledges half the writes of an app's copy without making them once
 * `armed()` (after seeding): an app kill switch answers success while that shard still honours the
 * app's old tokens — the fan-out the sharded registry must never skip (`--plant lost-fanout`).
 */
export const droppingAppCopies = (inner: SqlDriver, armed: () => boolean, random: () => number): SqlDriver => ({
  ...inner,
  batch: (statements) =>
    armed() && statements[0]?.sql === SHARD_STATEMENTS.replicaApp && random() < 0.5
      ? Promise.resolve(statements.map(() => ({ rows: [], changes: 1 })))
      : inner.batch(statements)
})

/**
 * `registry` with a planted bug: `stale-standing` answers a token's standing from a copy up to
 * `staleMs` old (a read replica that lags: a revocation or kill switch is missed for that long);
 * `lost-mint` acknowledges `lostMintRate` (1%) of token writes without writing them.
 */
export const withPlant = (
  registry: Registry["Type"],
  plant: Plant,
  random: () => number,
  staleMs = 1000,
  lostMintRate = 0.01
): Registry["Type"] => {
  if (plant === "lost-fanout") return registry
  if (plant === "lost-mint") {
    return {
      ...registry,
      putToken: (digest, token) => (random() < lostMintRate ? Effect.void : registry.putToken(digest, token))
    }
  }
  const copies = new Map<string, { at: number; standing: Option.Option<TokenStanding> }>()
  return {
    ...registry,
    findToken: (digest, shard) =>
      Effect.suspend(() => {
        const copy = copies.get(digest)
        if (copy !== undefined && performance.now() - copy.at < staleMs) return Effect.succeed(copy.standing)
        return Effect.tap(registry.findToken(digest, shard), (standing) =>
          Effect.sync(() => copies.set(digest, { at: performance.now(), standing }))
        )
      })
  }
}
