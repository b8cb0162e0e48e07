/**
 * Where the issuer's time goes on one path, in process (memory storage): a warm-up, then the V8
 * sampling profiler (node:inspector) around N sequential requests only, summarised as the top
 * self-time functions, the top inclusive ones, and self time by package/module. PROFILE.md holds a
 * reading of its output.
 *
 *   tsx bench/profile.ts healthz|describe|mint [--n 5000] [--interval-us 100] [--top 30] [--out FILE.cpuprofile]
 *                        [--callers NAME] [--built]
 *
 * `--built` profiles core as tsc emits it (`tsc -p tsconfig.build.json --outDir dist/profile`, run
 * first), so the project's own functions show with their real lines: tsx's output places every
 * function of a module on line 1.
 *
 * Open FILE.cpuprofile in Chrome DevTools (Performance → Load profile) for the flame chart.
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { generateKey, loadSeededIssuer } from "./fixtures.js"
import { fileURLToPath } from "node:url"
import { arg } from "./args.js"

const path = process.argv[2] ?? "describe"
const N = Number(arg("n", "5000"))
const TOP = Number(arg("top", "30"))
const out = arg("out", "")

const source = process.argv.includes("--built") ? "../dist/profile/src" : "../src"
const key = await generateKey()
const { issuer, requests } = await loadSeededIssuer(fileURLToPath(new URL(source, import.meta.url)), key)
const make = requests[path]
if (make === undefined) throw new Error(`unknown path ${path}: one of ${Object.keys(requests).join(", ")}`)
const loop = async (n: number) => {
  for (let i = 0; i < n; i++) {
    const response = await issuer.handler(make())
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`${path}: ${response.status}`)
  }
}
await loop(Math.max(200, N / 5)) // warm-up: JIT, caches

const session = new Session()
session.connect()
await session.post("Profiler.enable")
await session.post("Profiler.setSamplingInterval", { interval: Number(arg("interval-us", "100")) })
await session.post("Profiler.start")
const t0 = performance.now()
const cpu0 = process.cpuUsage()
await loop(N)
const cpu = process.cpuUsage(cpu0)
const wall = performance.now() - t0
const { profile } = await session.post("Profiler.stop")
session.disconnect()
await issuer.dispose()
if (out) writeFileSync(out, JSON.stringify(profile))

// --- summary -----------------------------------------------------------------------------------------

interface Node {
  readonly id: number
  readonly callFrame: { functionName: string; url: string; lineNumber: number }
  readonly children?: ReadonlyArray<number> | undefined
}
const nodes = new Map<number, Node>((profile.nodes as ReadonlyArray<Node>).map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of profile.nodes as ReadonlyArray<Node>) for (const c of n.children ?? []) parent.set(c, n.id)

/** A short name for where a function lives: package and file, or the project's own file. */
const where = (url: string) => {
  if (url === "") return ""
  const m =
    /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(?:dist\/(?:esm|cjs|dist\/[^/]+)\/)?(.*)$/.exec(
      url
    )
  if (m) return `${m[1]}/${m[2]}`
  return url.replace(/^.*\/packages\//, "").replace(/^node:/, "node:")
}
const pkgOf = (url: string) => {
  if (url === "") return "(native/V8)"
  if (url.startsWith("node:")) return "node: internals (undici Request/Response, streams, webcrypto)"
  const m =
    /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(?:dist\/(?:esm|cjs)\/)?(?:(internal)\/)?/.exec(
      url
    )
  if (m) return m[1]!
  if (url.includes("packages/core/src/")) return `@icr-apps/core ${url.replace(/^.*packages\/core\/src\//, "")}`
  return url
}
const label = (n: Node) =>
  `${n.callFrame.functionName || "(anonymous)"} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`

/** Effect's own machinery (fiber loop, scheduler, context): present in every stack, so uninformative inclusively. */
const runtime =
  /effect\/(internal\/(fiberRuntime|core|core-effect|runtime|context|fiberRefs|tracer)|Function|Utils|Scheduler)\.js|(^|\/)(Effect|Micro)\.js|bench\/profile\.ts/
const self = new Map<string, number>()
const inclusive = new Map<string, number>()
const byPackage = new Map<string, number>()
const samples: ReadonlyArray<number> = profile.samples ?? []
const deltas: ReadonlyArray<number> = profile.timeDeltas ?? []
let total = 0
for (let i = 0; i < samples.length; i++) {
  const dt = deltas[i + 1] ?? deltas[i] ?? 0 // µs until the next sample: this sample's weight
  const leaf = nodes.get(samples[i]!)!
  if (leaf.callFrame.functionName === "(idle)") continue
  total += dt
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt)
  byPackage.set(pkgOf(leaf.callFrame.url), (byPackage.get(pkgOf(leaf.callFrame.url)) ?? 0) + dt)
  const seen = new Set<string>()
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const l = label(nodes.get(id)!)
    if (seen.has(l)) continue
    seen.add(l)
    inclusive.set(l, (inclusive.get(l) ?? 0) + dt)
  }
}
// `--callers NAME`: for samples spent in functions named NAME (self time), the nearest frames outside
// Effect's runtime that led there: who is paying for it.
const callersOf = arg("callers", "")
const callers = new Map<string, number>()
if (callersOf) {
  for (let i = 0; i < samples.length; i++) {
    const leaf = nodes.get(samples[i]!)!
    if (leaf.callFrame.functionName !== callersOf) continue
    const chain: Array<string> = []
    for (let id = parent.get(leaf.id); id !== undefined && chain.length < 4; id = parent.get(id)) {
      const n = nodes.get(id)!
      if (!runtime.test(n.callFrame.url) && n.callFrame.functionName !== "") chain.push(label(n))
    }
    const k = chain.join(" ← ")
    callers.set(k, (callers.get(k) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0))
  }
}
const perRequest = (us: number) =>
  `${(us / N).toFixed(1).padStart(7)} µs/req ${((100 * us) / total).toFixed(1).padStart(5)}%`
const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
console.log(
  `${path}: ${N} requests, wall ${((wall * 1000) / N).toFixed(0)} µs/req, CPU ${((cpu.user + cpu.system) / N).toFixed(0)} µs/req (all threads), main-thread samples ${(total / N).toFixed(0)} µs/req`
)
console.log("\nself time by package/module:")
for (const [p, us] of top(byPackage, 15)) console.log(`  ${perRequest(us)}  ${p}`)
console.log(`\ntop ${TOP} functions by self time:`)
for (const [f, us] of top(self, TOP)) console.log(`  ${perRequest(us)}  ${f}`)
console.log(`\ntop ${TOP} functions by inclusive time (outside Effect's fiber runtime, which is in every stack):`)
for (const [f, us] of top(inclusive, inclusive.size)
  .filter(([f]) => !runtime.test(f) && !f.startsWith("(anonymous)  ") && !f.startsWith("(root)"))
  .slice(0, TOP))
  console.log(`  ${perRequest(us)}  ${f}`)
if (callersOf) {
  console.log(`\nwho calls ${callersOf} (nearest named frames outside Effect's runtime):`)
  for (const [chain, us] of top(callers, 15)) console.log(`  ${perRequest(us)}  ${chain}`)
}
