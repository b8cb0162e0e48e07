/**
 * The capacity and cost model of `npm run bench:scale`: uses/s for N = 1, 2, 4, … 256 shards from the
 * per-shard figures measured in the same run (scale-miniflare.ts), capped at Cloudflare's published
 * per-database limit, and from the published figure alone; and the cost per million uses and mints
 * at list prices for each design. Every published figure the model relies on is below, with its
 * source (SCALE.md carries the same table).
 *
 * | figure                                   | value                                    | source |
 * |------------------------------------------|------------------------------------------|--------|
 * | D1: queries one at a time per database   | ~1,000 queries/s at 1 ms per query       | https://developers.cloudflare.com/d1/platform/limits/ (FAQ "How much work can a D1 database do?") |
 * | D1: "overloaded" when its queue fills    | a database that gets too many concurrent requests queues them, then errors | https://developers.cloudflare.com/d1/platform/limits/ (same FAQ) |
 * | D1: maximum database size                | 10 GB (Workers Paid)                     | https://developers.cloudflare.com/d1/platform/limits/ |
 * | D1: databases per account                | 50,000 (Workers Paid; a later revision of the page: 1,000,000, 100,000 included) | https://developers.cloudflare.com/d1/platform/limits/ |
 * | Durable Object: requests per object      | soft limit 1,000 requests/s (single-threaded; overloaded error after queueing) | https://developers.cloudflare.com/durable-objects/reference/faq/ ("How much work can a single Durable Object do?") |
 * | Durable Object: storage per object       | 10 GB (SQLite-backed)                    | https://developers.cloudflare.com/durable-objects/platform/limits/ |
 * | Durable Objects: number of objects       | unlimited                                | https://developers.cloudflare.com/durable-objects/platform/limits/ |
 * | Workers: requests                        | 10 M/month included, then $0.30 per million | https://developers.cloudflare.com/workers/platform/pricing/ |
 * | Workers: CPU time                        | 30 M CPU ms/month included, then $0.02 per million CPU ms | https://developers.cloudflare.com/workers/platform/pricing/ |
 * | D1: rows read                            | 25 billion/month included, then $0.001 per million rows | https://developers.cloudflare.com/d1/platform/pricing/ |
 * | D1: rows written                         | 50 million/month included, then $1.00 per million rows (an index adds a row written) | https://developers.cloudflare.com/d1/platform/pricing/ |
 * | D1: storage                              | 5 GB included, then $0.75 per GB-month   | https://developers.cloudflare.com/d1/platform/pricing/ |
 * | Durable Objects: requests                | 1 M/month included, then $0.15 per million (each RPC session or fetch is one) | https://developers.cloudflare.com/durable-objects/platform/pricing/ |
 * | Durable Objects: duration                | 400,000 GB-s included, then $12.50 per million GB-s; wall-clock while active, at 128 MB | https://developers.cloudflare.com/durable-objects/platform/pricing/ |
 * | Durable Objects (SQLite): rows read      | $0.001 per million rows (as D1)          | https://developers.cloudflare.com/durable-objects/platform/pricing/ (storage billing) |
 * | Durable Objects (SQLite): rows written   | $1.00 per million rows (as D1)           | https://developers.cloudflare.com/durable-objects/platform/pricing/ (storage billing) |
 *
 * Costs are marginal, at list price beyond the included amounts (at 10⁵ uses/s — 259 billion a
 * month — the allowances are noise), and leave out the Worker's own CPU time, which this machine
 * cannot measure as Cloudflare bills it: it is the same in both designs ($0.02 per million CPU ms,
 * so $0.02 per million uses for every CPU millisecond a use takes).
 */
import type { DesignMeasurement, ShardMeasurements } from "./scale-miniflare.js"

/** The throughput the plan must reach (issue 21). */
export const TARGET_USES_PER_SECOND = 100_000

/** The shard counts the model reports. */
export const SHARD_COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256] as const

/** A published figure and where it is published. */
export interface Published {
  readonly value: number
  readonly unit: string
  readonly source: string
}

/** The published figures the model uses (see the table above). */
export const PUBLISHED = {
  d1QueriesPerSecond: {
    value: 1000,
    unit: "queries/s per database (1 ms per query, one at a time)",
    source: "https://developers.cloudflare.com/d1/platform/limits/"
  },
  d1MaxDatabaseGb: {
    value: 10,
    unit: "GB per database",
    source: "https://developers.cloudflare.com/d1/platform/limits/"
  },
  d1DatabasesPerAccount: {
    value: 50_000,
    unit: "databases per account (Workers Paid)",
    source: "https://developers.cloudflare.com/d1/platform/limits/"
  },
  doRequestsPerSecond: {
    value: 1000,
    unit: "requests/s per object (soft limit)",
    source: "https://developers.cloudflare.com/durable-objects/reference/faq/"
  },
  doMaxStorageGb: {
    value: 10,
    unit: "GB per object (SQLite-backed)",
    source: "https://developers.cloudflare.com/durable-objects/platform/limits/"
  },
  workersRequestPerMillion: {
    value: 0.3,
    unit: "USD per million requests",
    source: "https://developers.cloudflare.com/workers/platform/pricing/"
  },
  workersCpuPerMillionMs: {
    value: 0.02,
    unit: "USD per million CPU ms",
    source: "https://developers.cloudflare.com/workers/platform/pricing/"
  },
  d1RowsReadPerMillion: {
    value: 0.001,
    unit: "USD per million rows read",
    source: "https://developers.cloudflare.com/d1/platform/pricing/"
  },
  d1RowsWrittenPerMillion: {
    value: 1.0,
    unit: "USD per million rows written",
    source: "https://developers.cloudflare.com/d1/platform/pricing/"
  },
  doRequestsPerMillion: {
    value: 0.15,
    unit: "USD per million requests",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/"
  },
  doDurationPerMillionGbS: {
    value: 12.5,
    unit: "USD per million GB-s (128 MB per active object)",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/"
  },
  doRowsReadPerMillion: {
    value: 0.001,
    unit: "USD per million rows read",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/"
  },
  doRowsWrittenPerMillion: {
    value: 1.0,
    unit: "USD per million rows written",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/"
  }
} as const satisfies Record<string, Published>

/** The two designs for a shard. */
export type Design = "d1" | "durableObject"

/** What each design is, for the report. */
export const DESIGNS: Record<Design, string> = {
  d1: "each shard a D1 database; the Worker runs the statement through the D1 binding",
  durableObject: "each shard a SQLite-backed Durable Object; the Worker forwards the use to it (one DO request)"
}

/** The q-quantile (0..1) by nearest rank; NaN for none. */
export const percentile = (xs: ReadonlyArray<number>, q: number): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = Float64Array.from(xs).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]!
}

/** GB a Durable Object is billed for while active. */
const DO_GB = 0.128

/** USD per million uses and mints for a design, from its measured rows and its per-shard rate. */
export const costsOf = (
  design: Design,
  m: DesignMeasurement | undefined,
  usesPerShard: number,
  mintsPerShard: number
) => {
  const P = PUBLISHED
  const rowsReadUse = m?.rowsReadPerUse ?? Number.NaN
  const rowsReadMint = m?.rowsReadPerMint ?? Number.NaN
  const rowsWrittenMint = m?.rowsWrittenPerMint ?? Number.NaN
  if (design === "d1") {
    const use = P.workersRequestPerMillion.value + rowsReadUse * P.d1RowsReadPerMillion.value
    const mint =
      P.workersRequestPerMillion.value +
      rowsReadMint * P.d1RowsReadPerMillion.value +
      rowsWrittenMint * P.d1RowsWrittenPerMillion.value
    return { perMillionUses: use, perMillionMints: mint }
  }
  // A Durable Object kept busy at its per-shard rate is active 1/rate s per request: that share of
  // its wall-clock duration, at 128 MB, is each request's (a lower bound: an idler object is billed
  // for its idle time in memory too).
  const durationUse = (1e6 / usesPerShard) * DO_GB * (P.doDurationPerMillionGbS.value / 1e6)
  const durationMint = (1e6 / mintsPerShard) * DO_GB * (P.doDurationPerMillionGbS.value / 1e6)
  const use =
    P.workersRequestPerMillion.value +
    P.doRequestsPerMillion.value +
    durationUse +
    rowsReadUse * P.doRowsReadPerMillion.value
  const mint =
    P.workersRequestPerMillion.value +
    P.doRequestsPerMillion.value +
    durationMint +
    rowsReadMint * P.doRowsReadPerMillion.value +
    rowsWrittenMint * P.doRowsWrittenPerMillion.value
  return { perMillionUses: use, perMillionMints: mint, durationPerMillionUses: durationUse }
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "—"

/** The smallest listed N whose modelled uses/s reaches the target (undefined when none does). */
const smallestReaching = (perShard: number) => SHARD_COUNTS.find((n) => n * perShard >= TARGET_USES_PER_SECOND)

/** Seconds in a 30-day month: what a steady rate costs per month. */
const MONTH_SECONDS = 30 * 24 * 3600

/** Latency a use and a mint showed in the simulation (p50/p99, ms), with the injected delay. */
export interface SimulatedLatency {
  readonly use: { readonly p50: number; readonly p99: number }
  readonly mint: { readonly p50: number; readonly p99: number }
  /** What each statement waited, injected (ms, uniform from 0). */
  readonly injectedDelayMs: number
}

/** The model from this run's measurements (or, without them, the published figures alone). */
export const modelFor = (
  measured: ShardMeasurements | undefined,
  simulated?: SimulatedLatency | undefined,
  /** The design the headline is for; by default the one the numbers favour (below). */
  chosen?: Design | undefined
) => {
  const published: Record<Design, number> = {
    d1: PUBLISHED.d1QueriesPerSecond.value,
    durableObject: PUBLISHED.doRequestsPerSecond.value
  }
  const designs = (["d1", "durableObject"] as const).map((design) => {
    const m = measured?.[design]
    const usesMeasured = m?.usesPerSecond ?? Number.NaN
    const mintsMeasured = m?.mintsPerSecond ?? Number.NaN
    // The measured figure, never above what Cloudflare publishes for one database/object.
    const usesPerShard = Number.isFinite(usesMeasured) ? Math.min(usesMeasured, published[design]) : published[design]
    // A mint is one request to a Durable Object, but two queries (the read, then the write) on D1.
    const mintCap = design === "d1" ? published[design] / 2 : published[design]
    const mintsPerShard = Number.isFinite(mintsMeasured) ? Math.min(mintsMeasured, mintCap) : mintCap
    const shards = smallestReaching(usesPerShard)
    const cost = costsOf(design, m, usesPerShard, mintsPerShard)
    return {
      design,
      usesPerShardMeasured: usesMeasured,
      mintsPerShardMeasured: mintsMeasured,
      usesPerShardPublished: published[design],
      usesPerShard,
      mintsPerShard,
      shardsFor100k: shards,
      exactShardsFor100k: Math.ceil(TARGET_USES_PER_SECOND / usesPerShard),
      byShards: SHARD_COUNTS.map((n) => ({
        shards: n,
        usesPerSecondMeasured: n * usesMeasured,
        usesPerSecondCapped: n * usesPerShard,
        usesPerSecondPublished: n * published[design],
        mintsPerSecondCapped: n * mintsPerShard
      })),
      latencyMs: m === undefined ? undefined : { use: m.useLatencyMs, mint: m.mintLatencyMs },
      rows:
        m === undefined
          ? undefined
          : { readPerUse: m.rowsReadPerUse, readPerMint: m.rowsReadPerMint, writtenPerMint: m.rowsWrittenPerMint },
      cost,
      // Uses alone, at the target rate every second of a month (the allowances left out).
      usesPerMonthAtTargetUsd: (cost.perMillionUses * TARGET_USES_PER_SECOND * MONTH_SECONDS) / 1e6
    }
  })
  // The design kept: the one asked for, else the fewest shards for the target, then the cheaper use.
  const ranked = [...designs].sort(
    (a, b) =>
      (a.shardsFor100k ?? Number.POSITIVE_INFINITY) - (b.shardsFor100k ?? Number.POSITIVE_INFINITY) ||
      a.cost.perMillionUses - b.cost.perMillionUses
  )
  const kept = designs.find((d) => d.design === chosen) ?? ranked[0]!
  const headlineShards = kept.shardsFor100k ?? SHARD_COUNTS[SHARD_COUNTS.length - 1]!
  const headline = { design: kept.design, shards: headlineShards, usesPerSecond: headlineShards * kept.usesPerShard }

  const lines: Array<string> = []
  lines.push("model: uses/s by shard count (per-shard figure measured here, capped at the published limit)")
  lines.push(
    `  ${"N".padStart(4)}  ${"D1 measured".padStart(12)} ${"D1 capped".padStart(10)}  ${"DO measured".padStart(12)} ${"DO capped".padStart(10)}  ${"published".padStart(10)}`
  )
  SHARD_COUNTS.forEach((n, i) => {
    const d = designs[0]!.byShards[i]!
    const o = designs[1]!.byShards[i]!
    lines.push(
      `  ${String(n).padStart(4)}  ${fmt(d.usesPerSecondMeasured).padStart(12)} ${fmt(d.usesPerSecondCapped).padStart(10)}  ` +
        `${fmt(o.usesPerSecondMeasured).padStart(12)} ${fmt(o.usesPerSecondCapped).padStart(10)}  ${fmt(d.usesPerSecondPublished).padStart(10)}`
    )
  })
  for (const d of designs) {
    lines.push(
      `  ${d.design}: ${fmt(d.usesPerShardMeasured)} uses/s and ${fmt(d.mintsPerShardMeasured)} mints/s per shard measured, ` +
        `${fmt(d.usesPerShard)} modelled; 100,000 uses/s at N=${d.shardsFor100k ?? ">256"} (exactly ${d.exactShardsFor100k}); ` +
        `$${fmt(d.cost.perMillionUses, 4)} per million uses, $${fmt(d.cost.perMillionMints, 4)} per million mints ` +
        `($${fmt(d.usesPerMonthAtTargetUsd)} a month for uses at 100,000/s)`
    )
  }
  lines.push(
    `  kept: ${headline.design} (${chosen === undefined ? "fewest shards for 100,000 uses/s, then the cheaper use" : "the design the issuer keeps, SCALE.md; --design auto picks by these numbers"}): at N=${headline.shards}, ` +
      `${fmt(headline.usesPerSecond)} uses/s and ${fmt(headline.shards * kept.mintsPerShard)} mints/s`
  )
  if (simulated !== undefined) {
    lines.push(
      `  latency: a use is one statement on one shard whatever N (while each shard is below its limit): ` +
        `p50 ${fmt(simulated.use.p50, 1)} ms, p99 ${fmt(simulated.use.p99, 1)} ms in the simulation with 0–${simulated.injectedDelayMs} ms ` +
        `injected per statement (a mint: ${fmt(simulated.mint.p50, 1)}/${fmt(simulated.mint.p99, 1)} ms)`
    )
  }
  return {
    lines,
    json: { target: TARGET_USES_PER_SECOND, published: PUBLISHED, designs, headline, simulatedLatencyMs: simulated }
  }
}
