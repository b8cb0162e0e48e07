/**
 * The storage contracts inside Deno's and Bun's own processes, on their own SQLite engines (Deno:
 * node:sqlite, Bun: bun:sqlite) and on Postgres, reported here test by test: each contract test that
 * ran there is one test here, passing only if it passed there (a crashed or silent run fails every
 * one, by name). Node's engine runs the same contracts in this process (StorageContracts.test.ts).
 */
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { postgresDatabase, type RuntimeName, runFile, tempDir } from "./support.js"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { rateLimiterContract } from "@icr-apps/testkit/RateLimiterContract"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import { makeRunner, RESULTS_PREFIX, type Result } from "./runtimes/runner.js"

const script = join(import.meta.dirname, "runtimes/storage-contracts.ts")

/** How many tests the two contracts have (registered, not run): a run that reports fewer fails. */
const expected = (() => {
  const counting = makeRunner()
  registryContract("count", () => SqlRegistry.layer(undefined as never), counting)
  rateLimiterContract("count", () => undefined as never, counting)
  return counting.count()
})()

const runIn = async (runtime: RuntimeName, databaseUrl: string) => {
  const { code, stdout, stderr } = await runFile(runtime, script, [databaseUrl])
  const line = stdout.split("\n").find((l) => l.startsWith(RESULTS_PREFIX))
  if (line === undefined) {
    return { results: [] as ReadonlyArray<Result>, failure: `exit ${code}, no results:\n${stderr.slice(-2000)}` }
  }
  return { results: (JSON.parse(line.slice(RESULTS_PREFIX.length)) as { results: ReadonlyArray<Result> }).results }
}

const targets: ReadonlyArray<readonly [RuntimeName, "sqlite" | "postgres"]> = [
  ["deno", "sqlite"],
  ["bun", "sqlite"],
  ["deno", "postgres"],
  ["bun", "postgres"]
]

// Run every target before the tests are declared, so that each contract test becomes a test here.
const runs = await Promise.all(
  targets.map(async ([runtime, kind]) => {
    if (kind === "sqlite") {
      const temp = tempDir("icr-runtime-contracts-")
      try {
        return await runIn(runtime, `sqlite:${join(temp.dir, "icr-apps.db")}`)
      } finally {
        temp.remove()
      }
    }
    const database = await postgresDatabase()
    try {
      return await runIn(runtime, database.url)
    } finally {
      await database.drop()
    }
  })
)

for (const [index, [runtime, kind]] of targets.entries()) {
  const run = runs[index]!
  describe(`storage contracts in ${runtime}'s own process, ${kind}`, () => {
    it("ran the whole registry and rate-limiter contracts", () => {
      expect(run.failure).toBeUndefined()
      expect(expected).toBeGreaterThan(20)
      expect(run.results.length).toBe(expected)
    })
    for (const result of run.results) {
      it(result.name, () => {
        expect(result.error).toBeUndefined()
        expect(result.ok).toBe(true)
      })
    }
  })
}
