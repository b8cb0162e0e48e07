/**
 * Where a server's time went under `bench:storage --profile DIR`: reads a `.cpuprofile` (Node's or
 * Bun's `--cpu-prof`) and prints self time by package/module, the top functions by self time, and
 * the top by inclusive time outside Effect's fiber runtime (core/bench/profile.ts's summary, for a
 * served process rather than an in-process loop). Shares are of the busy (non-idle) samples.
 *
 *   tsx bench/storage.ts --only sqlite-node --paths describe --profile /tmp/prof
 *   tsx bench/storage-profile.ts /tmp/prof/sqlite-node-served/CPU.….cpuprofile [--after S] [--requests N] [--top 25]
 *
 * (storage.ts prints each server's --after and --requests when it profiles.)
 *
 * (Node writes a profile per thread into the server's folder: the main thread's is the largest.)
 */
import { readFileSync } from "node:fs"

const file = process.argv[2]
if (file === undefined) throw new Error("usage: storage-profile.ts FILE.cpuprofile [--top N]")
const topIndex = process.argv.indexOf("--top")
const TOP = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 25
const option = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : undefined
}
/** `--after S`: only samples from S seconds after the profile began (the load, not start-up and seeding). */
const AFTER_US = (option("after") ?? 0) * 1e6
/** `--requests N`: the requests the server handled in that window, for µs per request. */
const REQUESTS = option("requests")
const profile = JSON.parse(readFileSync(file, "utf8"))

interface Node {
  readonly id: number
  readonly callFrame: { functionName: string; url: string; lineNumber: number }
  readonly children?: ReadonlyArray<number> | undefined
}
const nodes = new Map<number, Node>((profile.nodes as ReadonlyArray<Node>).map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of profile.nodes as ReadonlyArray<Node>) for (const c of n.children ?? []) parent.set(c, n.id)

const where = (url: string) => {
  if (url === "") return ""
  const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(?:dist\/(?:esm|cjs)\/)?(.*)$/.exec(
    url
  )
  if (m) return `${m[1]}/${m[2]}`
  return url.replace(/^.*\/packages\//, "")
}
const pkgOf = (url: string) => {
  if (url === "") return "(native/V8/runtime)"
  if (url.startsWith("node:")) return "node: internals (http, streams, undici Request/Response)"
  const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (m) return m[1]!
  const own = /packages\/(core|worker)\/(src|bench)\/(.*)$/.exec(url)
  if (own) return `@icr-apps/${own[1]} ${own[2]}/${own[3]}`
  return url
}
const label = (n: Node) =>
  `${n.callFrame.functionName || "(anonymous)"} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`

const runtime =
  /effect\/(internal\/(fiberRuntime|core|core-effect|runtime|context|fiberRefs|tracer)|Function|Utils|Scheduler)\.js|(^|\/)(Effect|Micro)\.js/
const self = new Map<string, number>()
const inclusive = new Map<string, number>()
const byPackage = new Map<string, number>()
const samples: ReadonlyArray<number> = profile.samples ?? []
const deltas: ReadonlyArray<number> = profile.timeDeltas ?? []
let total = 0
let idle = 0
let at = 0
for (let i = 0; i < samples.length; i++) {
  at += deltas[i] ?? 0
  if (at < AFTER_US) continue
  const dt = deltas[i + 1] ?? deltas[i] ?? 0
  const leaf = nodes.get(samples[i]!)!
  const name = leaf.callFrame.functionName
  if (name === "(idle)") {
    idle += dt
    continue
  }
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
const share = (us: number) =>
  `${((100 * us) / total).toFixed(1).padStart(5)}%` +
  (REQUESTS === undefined ? "" : ` ${(us / REQUESTS).toFixed(1).padStart(6)} µs/req`)
const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
console.log(
  `${file}: ${(total / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle` +
    (AFTER_US > 0 ? ` from ${AFTER_US / 1e6} s on` : "") +
    (REQUESTS === undefined ? "" : `; ${REQUESTS} requests: ${(total / REQUESTS).toFixed(0)} µs busy per request`)
)
console.log("\nself time by package/module:")
for (const [p, us] of top(byPackage, 15)) console.log(`  ${share(us)}  ${p}`)
console.log(`\ntop ${TOP} functions by self time:`)
for (const [f, us] of top(self, TOP)) console.log(`  ${share(us)}  ${f}`)
console.log(`\ntop ${TOP} functions by inclusive time (outside Effect's fiber runtime):`)
for (const [f, us] of top(inclusive, inclusive.size)
  .filter(([f]) => !runtime.test(f) && !f.startsWith("(root)"))
  .slice(0, TOP))
  console.log(`  ${share(us)}  ${f}`)
