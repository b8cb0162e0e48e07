/**
 * `npm run bench:scale`'s simulation and checker end to end, small: the sharded registry over slow,
 * faulty SQLite shards keeps every rule of the checker, and each planted bug — a standing read that
 * lags, a token write acknowledged but lost, a shard that acknowledges an app's copy without writing
 * it — is reported as the violation it causes.
 */
import { describe, expect, it } from "vitest"
import { checkHistory } from "../../bench/scale-checker.js"
import {
  droppingAppCopies,
  emptyStats,
  installationShard,
  openShards,
  type Plant,
  registryOver,
  seededRandom,
  slowAndFaulty,
  withPlant
} from "../../bench/scale-shards.js"
import { simulate } from "../../bench/scale-sim.js"

const run = async (plant: Plant | undefined) => {
  const random = seededRandom(7)
  const databases = await openShards(4)
  let armed = false
  const shards = databases.map((db, i) => {
    const shard = slowAndFaulty(db, { maxDelayMs: 0.5, faultRate: 0.02, random }, emptyStats())
    return plant === "lost-fanout" && i > 0 ? droppingAppCopies(shard, () => armed, random) : shard
  })
  const registry = registryOver(shards)
  try {
    const sim = await simulate({
      // A fifth of token writes lost when planted: a small run then always uses some of them.
      registry: plant === undefined ? registry : withPlant(registry, plant, random, 1000, 0.2),
      phases: [{ name: "load", operations: 6000, concurrency: 32 }],
      onPhase: () => {
        armed = true
      },
      apps: 8,
      installationsPerApp: 8,
      // Kill switches far more often than the bench's mix, so a small run meets each kind many times.
      mix: { mint: 0.1, revoke: 0.03, killInstallation: 0.02, killApp: 0.01 },
      livePool: 256,
      random,
      installationShard
    })
    return { sim, report: checkHistory(sim.history) }
  } finally {
    for (const db of databases) await db.close()
  }
}

describe("the scale simulation over the sharded registry", () => {
  it("records every kind of operation, faults included, and the checker finds nothing", async () => {
    const { sim, report } = await run(undefined)
    expect(report.violations).toEqual([])
    expect(report.operations).toBe(6000)
    for (const kind of ["mint", "use", "revoke", "killInstallation", "killApp"] as const) {
      expect(report.counts[kind].ok).toBeGreaterThan(0)
    }
    expect(report.counts.use.refused).toBeGreaterThan(0)
    expect(report.counts.use.error).toBeGreaterThan(0)
    // The installations are spread over the shards their ids name.
    expect(sim.installationsPerShard.filter((n) => n > 0).length).toBeGreaterThan(1)
  }, 60_000)

  it.each([
    ["stale-standing", ["killedTokenHonoured"]],
    ["lost-mint", ["acknowledgedMintLost"]],
    // A shard left with an app's old epoch honours the app's killed tokens, and mints new ones under
    // that epoch, which the next copy to arrive (a key added) then ends with no kill switch in between.
    ["lost-fanout", ["killedTokenHonoured", "acknowledgedMintLost"]]
  ] as const)(
    "reports a planted %s",
    async (plant, kinds) => {
      const { report } = await run(plant)
      const found = new Set(report.violations.map((v) => v.kind))
      expect(found.has(kinds[0])).toBe(true)
      expect([...found].every((kind) => (kinds as ReadonlyArray<string>).includes(kind))).toBe(true)
    },
    60_000
  )
})
