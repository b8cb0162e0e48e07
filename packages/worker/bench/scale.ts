/**
 * `npm run bench:scale` (issue 21): does the issuer keep SPEC §4's kill switches across N shards,
 * and how many shards does 100,000 token uses a second take on Cloudflare?
 *
 * 1. Simulation (scale-sim.ts): N in-memory SQLite shards, each behind a wrapper that delays every
 *    statement (0..--delay ms) and fails --fault-rate of the calls (before the statement, or after
 *    its commit); a load of mints, uses, revocations and kill switches through the real core
 *    services, --concurrency in flight; every call recorded and checked (scale-checker.ts): no use
 *    that starts after a revocation's or kill switch's acknowledgement succeeds, no acknowledged mint
 *    lost. Its latencies are the p50/p99 "with the injected latency".
 *    Then Postgres (scale-postgres.ts): a primary and two synchronous standbys started here, one
 *    applying WAL late (`recovery_min_apply_delay`), the same kind of load through the standby-routed
 *    driver, and the same checker over its history (skipped, and said so, where Postgres cannot start).
 * 2. Per-shard throughput, measured in this run under miniflare (scale-miniflare.ts): one shard as a
 *    D1 database and one as a SQLite-backed Durable Object behind a tiny Worker, each answering a
 *    token use with the token-standing statement (one statement per use) and a mint with the
 *    registry's own read and write; uses/s, mints/s, and the rows each reads and writes.
 * 3. The model (scale-model.ts): uses/s for N = 1, 2, 4, … 256 from the measured per-shard figure,
 *    capped at the published per-database limit, and from the published figure alone; the cost per
 *    million uses and mints at list prices for each design (prices and limits, with their sources,
 *    in scale-model.ts).
 *
 * Ends with one line: `scale: <operations> operations, <violations> violations, <uses/s> uses/s
 * modelled at N=<shards>` (N: the smallest shard count reaching 100,000 uses/s); exits 1 on any
 * violation.
 *
 *   tsx bench/scale.ts [--quick] [--operations N] [--shards N] [--concurrency N] [--delay MS]
 *                      [--latency-operations N] [--latency-concurrency N] [--plant stale-standing|lost-mint|lost-fanout]
 *                      [--design d1|durableObject] [--postgres-operations N] [--postgres-delay MS] [--skip-postgres] [--d1-shards N] [--d1-operations N] [--d1-concurrency N]
 *                      [--fault-rate R] [--seed N] [--seconds S] [--json FILE] [--skip-miniflare]
 */
import { writeFileSync } from "node:fs"
import { type CheckReport, checkHistory, type HistoryEntry } from "./scale-checker.js"
import { measureShards, type ShardMeasurements } from "./scale-miniflare.js"
import { type PostgresHistoryResult, runPostgresHistory } from "./scale-postgres.js"
import { type Design, DESIGNS, modelFor, percentile } from "./scale-model.js"
import {
  droppingAppCopies,
  emptyStats,
  installationShard,
  openShards,
  type Plant,
  REGISTRY_DESIGN,
  registryOver,
  seededRandom,
  type ShardStats,
  slowAndFaulty,
  withPlant
} from "./scale-shards.js"
import { type D1HistoryResult, runD1History } from "./scale-d1.js"
import { simulate } from "./scale-sim.js"
import { arg, flag } from "../../core/bench/args.js"

const QUICK = flag("quick")
const OPERATIONS = Number(arg("operations", QUICK ? "50000" : "1000000"))
const SHARDS = Number(arg("shards", "8"))
const CONCURRENCY = Number(arg("concurrency", "128"))
/**
 * A second, short phase with few operations in flight: this one process saturates its CPU long before
 * the shards do, so under the full load an operation's latency is mostly its wait for the event loop;
 * with few in flight it is the shard's injected delay and execution (the p50/p99 the model quotes).
 */
const LATENCY_OPERATIONS = Number(arg("latency-operations", QUICK ? "5000" : "20000"))
const LATENCY_CONCURRENCY = Number(arg("latency-concurrency", "4"))
const DELAY_MS = Number(arg("delay", "2"))
const FAULT_RATE = Number(arg("fault-rate", "0.01"))
const SEED = Number(arg("seed", "21"))
const SECONDS = Number(arg("seconds", QUICK ? "2" : "5"))
const jsonOut = arg("json", "")
/** `--plant stale-standing|lost-mint|lost-fanout`: a known bug, which the checker must report. */
const PLANT = arg("plant", "") as Plant | ""
/** The Postgres part: operations in its history, and the delayed standby's `recovery_min_apply_delay`. */
const PG_OPERATIONS = Number(arg("postgres-operations", QUICK ? "2000" : "20000"))
const PG_APPLY_DELAY_MS = Number(arg("postgres-delay", "50"))
/** The history over D1 databases under miniflare: shards, operations, in flight. */
const D1_SHARDS = Number(arg("d1-shards", "4"))
const D1_OPERATIONS = Number(arg("d1-operations", QUICK ? "1000" : "4000"))
const D1_CONCURRENCY = Number(arg("d1-concurrency", "32"))
/** `--design d1|durableObject|auto`: the design the final line is for (default: D1, the one the issuer keeps — SCALE.md says why; `auto`: the one the numbers favour). */
const DESIGN = arg("design", "d1") as Design | "auto"
if (!["auto", "d1", "durableObject"].includes(DESIGN)) throw new Error("--design is d1, durableObject or auto")
/** Shares of all operations (uses take the rest): kills frequent enough to interleave with uses everywhere. */
const MIX = { mint: 0.05, revoke: 0.01, killInstallation: 0.005, killApp: 0.0005 }
const log = (text: string) => console.error(`» ${text}`)
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "—"

const violationsByKind = (violations: ReadonlyArray<{ readonly kind: string }>) => {
  const byKind: Record<string, number> = {}
  for (const v of violations) byKind[v.kind] = (byKind[v.kind] ?? 0) + 1
  return byKind
}

const main = async () => {
  const began = performance.now()

  // --- 1. simulation ---------------------------------------------------------------------------------
  log(`simulation: ${SHARDS} shards (libsql in memory), ${REGISTRY_DESIGN}`)
  log(
    `  ${fmt(OPERATIONS)} operations, ${CONCURRENCY} in flight, then ${fmt(LATENCY_OPERATIONS)} with ` +
      `${LATENCY_CONCURRENCY} in flight (latency); delay 0–${DELAY_MS} ms/statement, faults ${FAULT_RATE * 100}%`
  )
  const random = seededRandom(SEED)
  const databases = await openShards(SHARDS)
  const stats: Array<ShardStats> = databases.map(emptyStats)
  let armed = false
  const shards = databases.map((db, i) => {
    const shard = slowAndFaulty(db, { maxDelayMs: DELAY_MS, faultRate: FAULT_RATE, random }, stats[i]!)
    return PLANT === "lost-fanout" && i > 0 ? droppingAppCopies(shard, () => armed, random) : shard
  })
  const registry = registryOver(shards)
  if (PLANT !== "") log(`  PLANTED BUG: ${PLANT} (the checker must report violations)`)
  const cpuBefore = process.cpuUsage()
  /** Where each phase's samples of a call's time in its shard begin. */
  const sampledAt = new Map<string, Array<number>>()
  const sim = await simulate({
    registry: PLANT === "" ? registry : withPlant(registry, PLANT, random),
    phases: [
      { name: "load", operations: OPERATIONS, concurrency: CONCURRENCY },
      { name: "latency", operations: LATENCY_OPERATIONS, concurrency: LATENCY_CONCURRENCY }
    ],
    onPhase: (name) => {
      armed = true
      sampledAt.set(
        name,
        stats.map((s) => s.sampled.length)
      )
    },
    apps: 64,
    installationsPerApp: 16,
    mix: MIX,
    livePool: 2048,
    random,
    installationShard,
    onProgress: (done) => log(`  ${fmt(done)} operations`)
  })
  const cpu = process.cpuUsage(cpuBefore)
  for (const db of databases) await db.close()
  const loadPhase = sim.phases[0]!
  const wallMs = sim.phases.reduce((ms, p) => ms + p.wallMs, 0)
  log(
    `  done in ${fmt(wallMs / 1000, 1)} s (load: ${fmt((loadPhase.operations / loadPhase.wallMs) * 1000)} operations/s ` +
      `in-process, CPU ${fmt((cpu.user + cpu.system) / 1000 / wallMs, 2)} cores); ${fmt(sim.minted)} tokens minted`
  )

  const checkBegan = performance.now()
  const report = checkHistory(sim.history)
  const checkMs = performance.now() - checkBegan
  log(`checker: ${fmt(report.operations)} operations in ${fmt(checkMs)} ms, ${report.violations.length} violations`)
  for (const [kind, counts] of Object.entries(report.counts)) {
    log(
      `  ${kind.padEnd(17)} ok ${fmt(counts.ok).padStart(9)}  refused ${fmt(counts.refused).padStart(8)}  error ${fmt(counts.error).padStart(7)}`
    )
  }
  for (const v of report.violations.slice(0, 10)) {
    const show = (i: number | undefined) => (i === undefined ? "" : JSON.stringify(sim.history[i]))
    log(`  VIOLATION ${v.kind} token ${v.tokenId}: use ${show(v.use)} mint ${show(v.mint)} kill ${show(v.kill)}`)
  }
  const KINDS = ["use", "mint", "revoke", "killInstallation", "killApp"] as const
  const latencies = sim.phases.map((phase, k) => {
    const from = sampledAt.get(phase.name) ?? stats.map(() => 0)
    const to = sim.phases[k + 1] === undefined ? undefined : sampledAt.get(sim.phases[k + 1]!.name)
    const inShard = stats.flatMap((s, i) => s.sampled.slice(from[i], to?.[i]))
    return {
      phase: phase.name,
      concurrency: phase.concurrency,
      operations: phase.operations,
      wallSeconds: phase.wallMs / 1000,
      byKind: Object.fromEntries(
        KINDS.map((kind) => [
          kind,
          { p50: percentile(phase.durations[kind], 0.5), p99: percentile(phase.durations[kind], 0.99) }
        ])
      ) as Record<HistoryEntry["kind"], { p50: number; p99: number }>,
      shardCall: { p50: percentile(inShard, 0.5), p99: percentile(inShard, 0.99) }
    }
  })
  for (const l of latencies) {
    log(
      `  latency, ${l.phase} phase (${l.concurrency} in flight): ` +
        KINDS.map((k) => `${k} ${fmt(l.byKind[k].p50, 1)}/${fmt(l.byKind[k].p99, 1)}`).join(", ") +
        ` ms (p50/p99); a call's time in its shard (delay + execution) ${fmt(l.shardCall.p50, 2)}/${fmt(l.shardCall.p99, 2)} ms`
    )
  }
  log(`  installations per shard: ${sim.installationsPerShard.map((n) => fmt(n ?? 0)).join(" / ")}`)
  log(
    `  statements per shard: ${stats.map((s) => fmt(s.statements)).join(" / ")}; injected faults ${fmt(stats.reduce((n, s) => n + s.faults, 0))}`
  )

  // --- 1b. Postgres with synchronous standbys (scale-postgres.ts), the same checker --------------------
  let postgres:
    | { readonly result: PostgresHistoryResult; readonly report: CheckReport }
    | { readonly skipped: string }
    | undefined
  if (!flag("skip-postgres")) {
    log(
      `postgres: a primary and two synchronous standbys (one applying WAL ${PG_APPLY_DELAY_MS} ms late), ${fmt(PG_OPERATIONS)} operations`
    )
    try {
      const result = await runPostgresHistory({ operations: PG_OPERATIONS, applyDelayMs: PG_APPLY_DELAY_MS })
      const pgReport = checkHistory(result.history)
      postgres = { result, report: pgReport }
      log(`  ${result.postgres}`)
      log(
        `  checker: ${fmt(pgReport.operations)} operations, ${pgReport.violations.length} violations; ` +
          `${fmt(result.usesPerSecond)} uses/s during the history; standing from the standbys ` +
          `${fmt(result.measured.standbyUsesPerSecond)} uses/s, from the primary alone ${fmt(result.measured.primaryUsesPerSecond)}; ` +
          `a revocation with remote_apply p50 ${result.measured.killSwitchRemoteApply.p50} ms (on: ${result.measured.killSwitchOn.p50} ms)`
      )
      for (const v of pgReport.violations.slice(0, 10)) {
        log(`  VIOLATION ${v.kind} token ${v.tokenId}: use ${JSON.stringify(result.history[v.use])}`)
      }
    } catch (error) {
      // A machine without Postgres binaries (the cluster is started here) still runs the rest.
      const reason = error instanceof Error ? error.message.split("\n")[0]! : String(error)
      postgres = { skipped: reason }
      log(`  skipped: ${reason}`)
    }
  }
  const pgChecked = postgres !== undefined && "report" in postgres ? postgres.report : undefined

  // --- 1c. the same load over D1 databases under miniflare (scale-d1.ts), the same checker -------------
  let d1: { readonly result: D1HistoryResult; readonly report: CheckReport } | undefined
  if (!flag("skip-miniflare")) {
    log(
      `d1 shards: ${D1_SHARDS} D1 databases under miniflare (the issuer's D1 driver), ${fmt(D1_OPERATIONS)} operations, ` +
        `${D1_CONCURRENCY} in flight, delay 0–${DELAY_MS} ms/statement, faults ${FAULT_RATE * 100}%`
    )
    const result = await runD1History({
      shards: D1_SHARDS,
      operations: D1_OPERATIONS,
      concurrency: D1_CONCURRENCY,
      delayMs: DELAY_MS,
      faultRate: FAULT_RATE,
      mix: { mint: 0.1, revoke: 0.02, killInstallation: 0.01, killApp: 0.002 },
      random: seededRandom(SEED + 1)
    })
    const d1Report = checkHistory(result.history)
    d1 = { result, report: d1Report }
    log(
      `  checker: ${fmt(d1Report.operations)} operations, ${d1Report.violations.length} violations; ` +
        `${fmt((d1Report.operations / result.wallMs) * 1000)} operations/s through miniflare; installations per shard ` +
        `${result.installationsPerShard.map((n) => fmt(n ?? 0)).join(" / ")}; injected faults ${fmt(result.stats.reduce((n, s) => n + s.faults, 0))}`
    )
    for (const [kind, counts] of Object.entries(d1Report.counts)) {
      log(
        `  ${kind.padEnd(17)} ok ${fmt(counts.ok).padStart(9)}  refused ${fmt(counts.refused).padStart(8)}  error ${fmt(counts.error).padStart(7)}`
      )
    }
    for (const v of d1Report.violations.slice(0, 10)) {
      log(`  VIOLATION ${v.kind} token ${v.tokenId}: use ${JSON.stringify(result.history[v.use])}`)
    }
  }
  const operations = report.operations + (pgChecked?.operations ?? 0) + (d1?.report.operations ?? 0)
  const violations =
    report.violations.length + (pgChecked?.violations.length ?? 0) + (d1?.report.violations.length ?? 0)

  // --- 2. per-shard throughput under miniflare --------------------------------------------------------
  let measured: ShardMeasurements | undefined
  if (!flag("skip-miniflare")) {
    log(`miniflare: one shard as D1 and as a SQLite-backed Durable Object, ${SECONDS} s per measurement`)
    measured = await measureShards({ seconds: SECONDS, log })
  }

  // --- 3. model ------------------------------------------------------------------------------------
  const quiet = latencies[latencies.length - 1]!
  const model = modelFor(
    measured,
    { use: quiet.byKind.use, mint: quiet.byKind.mint, injectedDelayMs: DELAY_MS },
    DESIGN === "auto" ? undefined : DESIGN
  )
  for (const line of model.lines) log(line)

  const result = {
    when: new Date().toISOString(),
    machine: { node: process.version, cores: (await import("node:os")).availableParallelism() },
    simulation: {
      design: REGISTRY_DESIGN,
      shards: SHARDS,
      operations: sim.history.length,
      concurrency: CONCURRENCY,
      latencyPhase: { operations: LATENCY_OPERATIONS, concurrency: LATENCY_CONCURRENCY },
      delayMs: [0, DELAY_MS],
      faultRate: FAULT_RATE,
      seed: SEED,
      mix: MIX,
      plant: PLANT === "" ? undefined : PLANT,
      wallSeconds: wallMs / 1000,
      operationsPerSecond: (loadPhase.operations / loadPhase.wallMs) * 1000,
      minted: sim.minted,
      installations: sim.installations,
      installationsPerShard: sim.installationsPerShard,
      statementsPerShard: stats.map((s) => s.statements),
      injectedFaults: stats.reduce((n, s) => n + s.faults, 0),
      latencyMs: latencies
    },
    checker: {
      operations: report.operations,
      violations: report.violations.length,
      byKind: violationsByKind(report.violations),
      counts: report.counts,
      unjudged: report.unjudged,
      checkMs
    },
    postgres:
      postgres === undefined
        ? undefined
        : "skipped" in postgres
          ? postgres
          : {
              description: postgres.result.postgres,
              operations: postgres.report.operations,
              violations: postgres.report.violations.length,
              byKind: violationsByKind(postgres.report.violations),
              counts: postgres.report.counts,
              usesPerSecond: postgres.result.usesPerSecond,
              latencyMs: postgres.result.latency,
              measured: postgres.result.measured,
              routing: postgres.result.routing
            },
    d1Shards:
      d1 === undefined
        ? undefined
        : {
            shards: D1_SHARDS,
            operations: d1.report.operations,
            violations: d1.report.violations.length,
            byKind: violationsByKind(d1.report.violations),
            counts: d1.report.counts,
            wallSeconds: d1.result.wallMs / 1000,
            installationsPerShard: d1.result.installationsPerShard,
            injectedFaults: d1.result.stats.reduce((n, s) => n + s.faults, 0)
          },
    total: { operations, violations },
    miniflare: measured,
    model: model.json,
    designs: DESIGNS,
    benchSeconds: (performance.now() - began) / 1000
  }
  if (jsonOut !== "") {
    writeFileSync(jsonOut, `${JSON.stringify(result, null, 2)}\n`)
    log(`wrote ${jsonOut}`)
  }
  log(`bench took ${fmt(result.benchSeconds, 1)} s`)
  console.log(
    `scale: ${operations} operations, ${violations} violations, ` +
      `${Math.round(model.json.headline.usesPerSecond)} uses/s modelled at N=${model.json.headline.shards}`
  )
  process.exit(violations > 0 ? 1 : 0)
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
