/**
 * `npm run bench` (in packages/core), the authenticated client's row (SPEC §10): one authenticated
 * request through the installation client against a bare `fetch` with the `Authorization` and
 * `x-icr-api-version` headers set by hand, both to the same local HTTP server, in one run. The token
 * is minted once (from the same server) and cached, as in an app's steady state. Rounds alternate
 * between candidates so machine noise hits all alike; the median of each round's ratio to that
 * round's bare fetch is reported, and the run
 * fails (exit 1) when the installation client's request (the Promise facade, whose cached-token GET
 * goes straight to fetch) costs more than 1.2× the bare fetch. The Effect row (one `runPromise`, and
 * so one fiber, per call) is reported beside it: an Effect app runs many requests in one fiber.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { AuthenticatedClient } from "../src/client/AuthenticatedClient.js"
import { toPem } from "../src/internal/der.js"
import * as IcrApps from "../src/sdk/IcrApps.js"
import { createIcrAppsClient } from "../src/sdk/Promise.js"

const ITERATIONS = Number(process.env.BENCH_CLIENT_ITERATIONS ?? 500)
const ROUNDS = Number(process.env.BENCH_CLIENT_ROUNDS ?? 21)
const LIMIT = 1.2
const installationId = "123e4567-e89b-12d3-a456-426614174000"
const token = `crs_${"b".repeat(48)}`

const pair = (await crypto.subtle.generateKey(
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
  true,
  ["sign", "verify"]
)) as CryptoKeyPair
const privateKey = toPem(
  "PRIVATE KEY",
  new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer)
)

// One local server: the mint (once) and the resource every candidate calls.
const projects = JSON.stringify({ items: [{ id: "p1", name: "Mangrove restoration" }] })
const server = createServer((request, response) => {
  if (request.method === "POST" && request.url === `/app/installations/${installationId}/accessTokens`) {
    const now = new Date()
    response.writeHead(200, { "content-type": "application/json" })
    response.end(
      JSON.stringify({
        id: "223e4567-e89b-12d3-a456-426614174000",
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
        token,
        expiresAt: new Date(now.getTime() + 2 * 3600_000).toISOString(),
        isActive: true,
        permissions: { organization_projects: "VIEW" },
        appId: "1",
        installationId,
        organizationId: "323e4567-e89b-12d3-a456-426614174000"
      })
    )
    return
  }
  if (request.headers.authorization !== `Bearer ${token}`) {
    response.writeHead(401, { "content-type": "application/problem+json" })
    response.end(JSON.stringify({ type: "x", title: "x", status: 401, code: "invalid_token", detail: "x" }))
    return
  }
  response.writeHead(200, { "content-type": "application/json" })
  response.end(projects)
})
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

const bare = async () => {
  const response = await fetch(`${baseUrl}/projects`, {
    headers: { authorization: `Bearer ${token}`, "x-icr-api-version": "2023-06-16", accept: "application/json" }
  })
  return response.json()
}
const runtime = ManagedRuntime.make(IcrApps.layer({ appId: "1", privateKey, baseUrl }))
const clients = await runtime.runPromise(AuthenticatedClient)
const viaRequest = clients.request("GET /projects", { installationId })
const effect = () => runtime.runPromise(viaRequest)
const facade = createIcrAppsClient({ appId: "1", privateKey, baseUrl })
const promise = () => facade.request("GET /projects", { installationId })

// The same answer from each (and the one mint done before timing starts).
for (const f of [bare, effect, promise]) {
  const body = JSON.stringify(await f())
  if (body !== projects) throw new Error(`unexpected answer: ${body}`)
}

const sequential = (f: () => Promise<unknown>) => async (n: number) => {
  for (let i = 0; i < n; i++) await f()
}
const time = async (run: (n: number) => Promise<unknown>, n: number) => {
  const start = performance.now()
  await run(n)
  return ((performance.now() - start) * 1e6) / n
}
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
// Effect-native: the loop is one Effect, as an Effect app runs its requests.
const effectLoop = (n: number) =>
  runtime.runPromise(
    Effect.gen(function* () {
      for (let i = 0; i < n; i++) yield* viaRequest
    })
  )
const candidates: Record<string, (n: number) => Promise<unknown>> = {
  "bare fetch, headers set by hand": sequential(bare),
  "installation client (Effect, runPromise per call)": sequential(effect),
  "installation client (Effect, one fiber for the loop)": effectLoop,
  "installation client (Promise facade icr.request)": sequential(promise)
}
const samples: Record<string, Array<number>> = Object.fromEntries(Object.keys(candidates).map((k) => [k, []]))
for (const run of Object.values(candidates)) await run(Math.max(1, Math.floor(ITERATIONS / 10))) // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, run] of Object.entries(candidates)) samples[name]!.push(await time(run, ITERATIONS))
}
// Each round's ratio to the bare fetch of the same round (the machine's load drifts between rounds
// far more than within one), then the median of those ratios.
const bareName = "bare fetch, headers set by hand"
const fmt = (ns: number) => (ns >= 1e3 ? `${(ns / 1e3).toFixed(1)} µs` : `${ns.toFixed(0)} ns`)
console.log(`\nAuthenticated request, same local server (${ITERATIONS} requests × ${ROUNDS} rounds, medians)`)
let over = false
for (const name of Object.keys(candidates)) {
  const ns = median(samples[name]!)
  const ratio = median(samples[name]!.map((v, r) => v / samples[bareName]![r]!))
  const gated = name.includes("Promise facade")
  if (gated && ratio > LIMIT) over = true
  const note = name === bareName ? "" : `   ${ratio.toFixed(2)}× bare fetch${gated ? ` (budget ${LIMIT}×)` : ""}`
  console.log(`  ${name.padEnd(52)} ${fmt(ns).padStart(10)}/op${note}`)
}
await runtime.dispose()
await facade.dispose()
server.close()
server.closeAllConnections()
if (over) {
  console.error(`the installation client costs more than ${LIMIT}× a bare fetch`)
  process.exitCode = 1
}
