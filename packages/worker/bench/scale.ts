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
 *                      [--fault-rate R] [--seed N] [--seconds S] [--json FILE] [--skip-miniflare]
 */
import { writeFileSync } from "node:fs"
import { checkHistory, type HistoryEntry } from "./scale-checker.js"
import { measureShards, type ShardMeasurements } from "./scale-miniflare.js"
import { DESIGNS, modelFor, percentile } from "./scale-model.js"
import {
  emptyStats,
  openShards,
  type Plant,
  REGISTRY_DESIGN,
  registryOver,
  seededRandom,
  type ShardStats,
  slowAndFaulty,
  withPlant
} from "./scale-shards.js"
import { simulate } from "./scale-sim.js"

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback
}
const QUICK = flag("quick")
const OPERATIONS = Number(arg("operations", QUICK ? "50000" : "1000000"))
const SHARDS = Number(arg("shards", "8"))
const CONCURRENCY = Number(arg("concurrency", "128"))
const DELAY_MS = Number(arg("delay", "2"))
const FAULT_RATE = Number(arg("fault-rate", "0.01"))
const SEED = Number(arg("seed", "21"))
const SECONDS = Number(arg("seconds", QUICK ? "2" : "5"))
const jsonOut = arg("json", "")
/** `--plant stale-standing|lost-mint`: a known bug in the registry, which the checker must report. */
const PLANT = arg("plant", "") as Plant | ""
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
    `  ${fmt(OPERATIONS)} operations, ${CONCURRENCY} in flight, delay 0–${DELAY_MS} ms/statement, faults ${FAULT_RATE * 100}%`
  )
  const random = seededRandom(SEED)
  const databases = await openShards(SHARDS)
  const stats: Array<ShardStats> = databases.map(emptyStats)
  const shards = databases.map((db, i) =>
    slowAndFaulty(db, { maxDelayMs: DELAY_MS, faultRate: FAULT_RATE, random }, stats[i]!)
  )
  const registry = registryOver(shards)
  if (PLANT !== "") log(`  PLANTED BUG: ${PLANT} (the checker must report violations)`)
  const cpuBefore = process.cpuUsage()
  const sim = await simulate({
    registry: PLANT === "" ? registry : withPlant(registry, PLANT, random),
    operations: OPERATIONS,
    concurrency: CONCURRENCY,
    apps: 64,
    installationsPerApp: 16,
    mix: MIX,
    livePool: 2048,
    random,
    onProgress: (done) => log(`  ${fmt(done)} operations`)
  })
  const cpu = process.cpuUsage(cpuBefore)
  for (const db of databases) await db.close()
  log(
    `  done in ${fmt(sim.wallMs / 1000, 1)} s (${fmt((sim.history.length / sim.wallMs) * 1000)} operations/s in-process, ` +
      `CPU ${fmt((cpu.user + cpu.system) / 1000 / sim.wallMs, 2)} cores); ${fmt(sim.minted)} tokens minted`
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
  const latency = (kind: HistoryEntry["kind"]) => ({
    p50: percentile(sim.durations[kind], 0.5),
    p99: percentile(sim.durations[kind], 0.99)
  })
  const latencies = {
    use: latency("use"),
    mint: latency("mint"),
    revoke: latency("revoke"),
    killInstallation: latency("killInstallation"),
    killApp: latency("killApp")
  }
  for (const [kind, l] of Object.entries(latencies)) {
    log(`  ${kind.padEnd(17)} p50 ${fmt(l.p50, 2)} ms  p99 ${fmt(l.p99, 2)} ms`)
  }
  const inShard = stats.flatMap((s) => s.sampled)
  const shardCall = { p50: percentile(inShard, 0.5), p99: percentile(inShard, 0.99) }
  log(
    `  a call's time in its shard (injected delay + execution): p50 ${fmt(shardCall.p50, 2)} ms  p99 ${fmt(shardCall.p99, 2)} ms`
  )
  log(
    `  statements per shard: ${stats.map((s) => fmt(s.statements)).join(" / ")}; injected faults ${fmt(stats.reduce((n, s) => n + s.faults, 0))}`
  )

  // --- 2. per-shard throughput under miniflare --------------------------------------------------------
  let measured: ShardMeasurements | undefined
  if (!flag("skip-miniflare")) {
    log(`miniflare: one shard as D1 and as a SQLite-backed Durable Object, ${SECONDS} s per measurement`)
    measured = await measureShards({ seconds: SECONDS, log })
  }

  // --- 3. model ------------------------------------------------------------------------------------
  const model = modelFor(measured)
  for (const line of model.lines) log(line)

  const result = {
    when: new Date().toISOString(),
    machine: { node: process.version, cores: (await import("node:os")).availableParallelism() },
    simulation: {
      design: REGISTRY_DESIGN,
      shards: SHARDS,
      operations: sim.history.length,
      concurrency: CONCURRENCY,
      delayMs: [0, DELAY_MS],
      faultRate: FAULT_RATE,
      seed: SEED,
      mix: MIX,
      plant: PLANT === "" ? undefined : PLANT,
      wallSeconds: sim.wallMs / 1000,
      operationsPerSecond: (sim.history.length / sim.wallMs) * 1000,
      minted: sim.minted,
      installations: sim.installations,
      statementsPerShard: stats.map((s) => s.statements),
      injectedFaults: stats.reduce((n, s) => n + s.faults, 0),
      latencyMs: latencies,
      shardCallLatencyMs: shardCall
    },
    checker: {
      operations: report.operations,
      violations: report.violations.length,
      byKind: violationsByKind(report.violations),
      counts: report.counts,
      unjudged: report.unjudged,
      checkMs
    },
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
    `scale: ${report.operations} operations, ${report.violations.length} violations, ` +
      `${Math.round(model.json.headline.usesPerSecond)} uses/s modelled at N=${model.json.headline.shards}`
  )
  process.exit(report.violations.length > 0 ? 1 : 0)
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
