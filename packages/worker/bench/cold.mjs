// One cold start, in a fresh Node process (run by workerd.ts, several times, interleaved):
//   node cold.mjs <bundle.mjs> [--profile]
// With --profile, V8's sampling profiler runs around each phase and the top modules of the bundle
// (from esbuild's `// path` markers) and functions are printed per phase, to stderr.
// Prints JSON: the module's evaluation (import of the wrangler bundle: parse, compile, top level),
// its first request (for the issuer: building the handler — layers, router — then answering) and its
// second (what a warm isolate pays), all on GET /app/installations/token without a credential (401
// from the auth middleware, through the router and the common rules) with stub bindings that are never
// touched. Not /healthz: the issuer answers that before the router, without building the handler.
import { readFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { pathToFileURL } from "node:url"

const bundle = process.argv[2]
const stub = new Proxy(
  {},
  {
    get: (_target, name) => () => {
      throw new Error(`storage touched by an unauthenticated request: ${String(name)}`)
    }
  }
)
const env = { DB: stub, APP_TOKEN_TTL_SECONDS: "3600", INSTALLATION_TOKEN_TTL_SECONDS: "7200" }
const ctx = { waitUntil() {}, passThroughOnException() {} }

// Node loads its web platform (undici's Request/Response, WebCrypto) lazily on first use; workerd has
// it built in. Touch it first, so the figures below are the bundle's own.
await new Response(new Request("http://warm.local/", { method: "POST", body: "{}" }).body).text()
new Headers({ a: "b" }).set("c", "d")
crypto.randomUUID()
await crypto.subtle.digest("SHA-256", new TextEncoder().encode("warm"))
new URL("http://warm.local/a?b=c").searchParams.get("b")

const profiling = process.argv.includes("--profile")
const session = profiling ? new Session() : undefined
const profiles = []
const startProfile = async () => {
  if (!session) return
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: 50 })
  await session.post("Profiler.start")
}
const stopProfile = async (name) => {
  if (!session) return
  const { profile } = await session.post("Profiler.stop")
  session.disconnect()
  profiles.push([name, profile])
}

await startProfile()
const t0 = performance.now()
const mod = await import(pathToFileURL(bundle).href)
const t1 = performance.now()
await stopProfile("module evaluation")
await startProfile()
const t1b = performance.now()
const PROBE = "http://cold.local/app/installations/token"
const first = await mod.default.fetch(new Request(PROBE), env, ctx)
await first.text()
const t2 = performance.now()
await stopProfile("first request")
const second = await mod.default.fetch(new Request(PROBE), env, ctx)
await second.text()
const t3 = performance.now()
if (first.status !== 401 || second.status !== 401)
  throw new Error(`the probe answered ${first.status}/${second.status}`)
console.log(JSON.stringify({ evaluate: t1 - t0, first: t2 - t1b, second: t3 - t2 }))

if (profiling) {
  // Which module of the bundle each line belongs to: esbuild starts each with a `// path` comment.
  const markers = []
  readFileSync(bundle, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (/^\/\/ [.\w@+/-]+\.[cm]?[jt]s$/.test(line)) markers.push([i, line.slice(3)])
    })
  const moduleAt = (line) => {
    let lo = 0
    let hi = markers.length - 1
    let found = "(bundle prologue)"
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (markers[mid][0] <= line) {
        found = markers[mid][1]
        lo = mid + 1
      } else hi = mid - 1
    }
    return found.replace(/^.*node_modules\/(?!\.pnpm)/, "").replace(/^(\.\.\/)+/, "")
  }
  const bundleUrl = pathToFileURL(bundle).href
  for (const [name, profile] of profiles) {
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
    const byModule = new Map()
    const byFunction = new Map()
    let total = 0
    profile.samples.forEach((id, i) => {
      const dt = profile.timeDeltas[i + 1] ?? 0
      const frame = nodes.get(id).callFrame
      if (frame.functionName === "(idle)") return
      total += dt
      const where = frame.url === bundleUrl ? moduleAt(frame.lineNumber) : frame.url || frame.functionName
      byModule.set(where, (byModule.get(where) ?? 0) + dt)
      const fn = `${frame.functionName || "(anonymous)"} ${where}`
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt)
    })
    const top = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, 18)
    console.error(`\n${name}: ${(total / 1000).toFixed(1)} ms sampled (self time)`)
    for (const [k, us] of top(byModule)) console.error(`  ${(us / 1000).toFixed(1).padStart(6)} ms  ${k}`)
    console.error("  top functions:")
    for (const [k, us] of top(byFunction).slice(0, 12))
      console.error(`  ${(us / 1000).toFixed(1).padStart(6)} ms  ${k}`)
  }
}
