/**
 * `npm run bench:scale`'s history over N shards that are **D1 databases under miniflare** (issue 21:
 * "N shards under miniflare behind a latency-adding wrapper"): the issuer's own D1 driver
 * (src/sql/d1.ts) over each database's binding, reached from this process through miniflare, each
 * behind the same slow, faulty wrapper as the in-process simulation, under `ShardedRegistry`; the
 * same load generator and the same checker. Smaller than the in-process run: every statement
 * crosses into workerd and back.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Miniflare } from "miniflare"
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"
import type { HistoryEntry } from "./scale-checker.js"
import { emptyStats, installationShard, registryOver, type ShardStats, slowAndFaulty } from "./scale-shards.js"
import { type OperationMix, simulate } from "./scale-sim.js"

const MIGRATIONS = fileURLToPath(new URL("../migrations/", import.meta.url))

/** The statements of migrations/, in order, as `wrangler d1 migrations apply` would run them. */
const migrationStatements = (): Array<string> =>
  readdirSync(MIGRATIONS)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .flatMap((file) =>
      readFileSync(join(MIGRATIONS, file), "utf8")
        .replace(/--[^\n]*/g, "")
        .split(/;\s*(?:\n|$)/)
        .map((s) => s.trim())
        .filter((s) => s !== "")
    )

export interface D1HistoryResult {
  readonly history: ReadonlyArray<HistoryEntry>
  readonly stats: ReadonlyArray<ShardStats>
  readonly wallMs: number
  readonly installationsPerShard: ReadonlyArray<number>
}

/** Runs `operations` through `ShardedRegistry` over `shards` D1 databases in miniflare; the recorded history. */
export const runD1History = async (options: {
  readonly shards: number
  readonly operations: number
  readonly concurrency: number
  readonly delayMs: number
  readonly faultRate: number
  readonly mix: OperationMix
  readonly random: () => number
}): Promise<D1HistoryResult> => {
  const names = Array.from({ length: options.shards }, (_, i) => `SHARD_${i}`)
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch: () => new Response('shards') }",
    compatibilityDate: "2026-04-20",
    d1Databases: names
  })
  try {
    await mf.ready
    const statements = migrationStatements()
    /** The part of a D1 binding this bench calls itself (miniflare's proxy of it). */
    interface D1Binding {
      prepare(sql: string): unknown
      batch(statements: ReadonlyArray<unknown>): Promise<unknown>
    }
    const databases: Array<D1Binding> = await Promise.all(
      names.map((name) => mf.getD1Database(name) as Promise<unknown> as Promise<D1Binding>)
    )
    for (const db of databases) await db.batch(statements.map((s) => db.prepare(s)))
    // The issuer's own D1 driver. Imported by a path held in a variable: it is typed against Workers'
    // globals (D1Database), which this Node-side bench is not compiled with; its shape is what we use.
    const driverModule: string = "../src/sql/d1.js"
    const D1 = (await import(driverModule)) as { readonly make: (db: unknown) => SqlDriver }
    const stats = databases.map(emptyStats)
    const registry = registryOver(
      databases.map((db, i) =>
        slowAndFaulty(
          D1.make(db),
          { maxDelayMs: options.delayMs, faultRate: options.faultRate, random: options.random },
          stats[i]!
        )
      )
    )
    const sim = await simulate({
      registry,
      phases: [{ name: "d1", operations: options.operations, concurrency: options.concurrency }],
      apps: 8,
      installationsPerApp: 8,
      mix: options.mix,
      livePool: 512,
      random: options.random,
      installationShard
    })
    return {
      history: sim.history,
      stats,
      wallMs: sim.phases[0]!.wallMs,
      installationsPerShard: sim.installationsPerShard
    }
  } finally {
    await mf.dispose()
  }
}
