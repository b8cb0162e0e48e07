/**
 * Before/after for an optimization, in one process and one run: two builds of the issuer side by side
 * (interleaved rounds, CPU per request, median of per-round ratios), so machine noise between two
 * separate runs — easily ±20 % on a shared 2-core machine — does not decide the verdict.
 *
 *   npx tsc -p tsconfig.build.json --outDir dist/base     # the code before the change (e.g. on main)
 *   # …edit src/…
 *   tsx bench/compare.ts [--a dist/base/src] [--b src] [--rounds 9] [--batch-ms 200] [--paths healthz,describe,mint]
 *
 * Prints, per path, CPU µs/request of A and B and B ÷ A (below 1 = B is faster).
 */
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { generateKey, loadSeededIssuer } from "./fixtures.js"
import { median, ratioOf } from "./stats.js"
import { arg } from "./args.js"

const core = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const ROUNDS = Number(arg("rounds", "9"))
const BATCH_MS = Number(arg("batch-ms", "200"))
const paths = arg("paths", "healthz,describe,mint").split(",")
const key = await generateKey()

/** One build of the issuer, by folder relative to packages/core. */
const load = (dir: string) => loadSeededIssuer(resolve(core, dir), key)

const a = await load(arg("a", "dist/base/src"))
const b = await load(arg("b", "src"))
const batch = async (side: typeof a, path: string, n: number) => {
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    const response = await side.issuer.handler(side.requests[path]!())
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`${path}: ${response.status}`)
  }
  const cpu = process.cpuUsage(cpu0)
  return (cpu.user + cpu.system) / n
}
for (const path of paths) {
  let n = 10
  for (const side of [a, b, a, b]) {
    const start = performance.now()
    let count = 0
    while (performance.now() - start < BATCH_MS) {
      await batch(side, path, 10)
      count += 10
    }
    n = Math.max(n, count)
  }
  const samples = { a: [] as Array<number>, b: [] as Array<number> }
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? (["a", "b"] as const) : (["b", "a"] as const)) {
      samples[side].push(await batch(side === "a" ? a : b, path, n))
    }
  }
  const { ratio, spread } = ratioOf(samples.b, samples.a)
  console.log(
    `${path.padEnd(9)} A ${median(samples.a).toFixed(0).padStart(5)} µs  B ${median(samples.b).toFixed(0).padStart(5)} µs  B÷A ${ratio.toFixed(2)} (${spread[0].toFixed(2)}–${spread[1].toFixed(2)})  ${ROUNDS} rounds × ${n} requests`
  )
}
await a.issuer.dispose()
await b.issuer.dispose()
