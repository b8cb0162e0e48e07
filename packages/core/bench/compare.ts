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
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type * as AuditLogModule from "../src/issuer/AuditLog.js"
import type * as EntropyModule from "../src/issuer/Entropy.js"
import type * as IssuerModule from "../src/issuer/Issuer.js"
import type * as RegistryModule from "../src/issuer/Registry.js"
import type * as TokenStoreModule from "../src/issuer/TokenStore.js"
import { benchAuditSink, GRANT, generateKey, MINT_BODY, ORGANIZATION_ID, signAppJwt } from "./fixtures.js"
import { median, ratioOf } from "./stats.js"

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const core = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const ROUNDS = Number(arg("rounds", "9"))
const BATCH_MS = Number(arg("batch-ms", "200"))
const paths = arg("paths", "healthz,describe,mint").split(",")
const ORIGIN = "http://bench.local"
const ADMIN = "bench-admin-token-0123456789abcdef0123456789"
const key = await generateKey()

/** One build of the issuer, seeded through its operator API, with a request maker per path. */
const load = async (dir: string) => {
  const base = resolve(core, dir)
  const AuditLog: typeof AuditLogModule = await import(`${base}/issuer/AuditLog.js`)
  const Entropy: typeof EntropyModule = await import(`${base}/issuer/Entropy.js`)
  const { makeWebHandler }: typeof IssuerModule = await import(`${base}/issuer/Issuer.js`)
  const Registry: typeof RegistryModule = await import(`${base}/issuer/Registry.js`)
  const TokenStore: typeof TokenStoreModule = await import(`${base}/issuer/TokenStore.js`)
  const issuer = makeWebHandler(
    Layer.mergeAll(TokenStore.layerMemory, Registry.layerMemory, Entropy.layer, AuditLog.layerMemory(benchAuditSink())),
    {
      adminToken: Redacted.make(ADMIN)
    }
  )
  const admin = async (p: string, body: unknown) =>
    (await (
      await issuer.handler(
        new Request(`${ORIGIN}${p}`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
          body: JSON.stringify(body)
        })
      )
    ).json()) as Record<string, any>
  const app = await admin("/admin/apps", { name: "bench", permissions: GRANT, publicKey: key.publicPem })
  const installation = await admin("/admin/installations", {
    appId: String(app.id),
    organizationId: ORGANIZATION_ID,
    permissions: GRANT
  })
  const jwt = await signAppJwt(key, String(app.id))
  const mint = () =>
    new Request(`${ORIGIN}/app/installations/${installation.id}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
      body: MINT_BODY
    })
  const token = (await (await issuer.handler(mint())).json()).token as string
  const requests: Record<string, () => Request> = {
    healthz: () => new Request(`${ORIGIN}/healthz`),
    describe: () => new Request(`${ORIGIN}/app/installations/token`, { headers: { authorization: `Bearer ${token}` } }),
    mint
  }
  return { issuer, requests }
}

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
