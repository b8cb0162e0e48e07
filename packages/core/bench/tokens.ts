/**
 * `npm run bench` (in packages/core): the cost of the SDK's hot paths against @octokit/auth-app doing
 * the same work, measured in one run, printed as ratios (octokit ÷ icr-apps; above 1 = icr-apps faster).
 *
 *   1. an installation token that is already cached (InstallationTokens.get vs auth({ type: "installation" }))
 *   2. an App JWT (AppJwt.get, which reuses one signed JWT, vs auth({ type: "app" }), which signs each time)
 *
 * Both sides run in the same process on the same key; neither touches the network (each mints its one
 * token from a stub). Rounds alternate between candidates so machine noise hits both alike; the median
 * round is reported. Timings vary between runs on a shared machine; the ratios are what to compare.
 */
import { writeFileSync } from "node:fs"
import { createAppAuth } from "@octokit/auth-app"
import { request } from "@octokit/request"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { AppJwt } from "../src/sdk/AppJwt.js"
import { toPem } from "../src/internal/der.js"
import * as IcrApps from "../src/sdk/IcrApps.js"
import { InstallationTokens } from "../src/sdk/InstallationTokens.js"
import { createIcrAppsClient } from "../src/sdk/Promise.js"

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 20_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
const installationId = "123e4567-e89b-12d3-a456-426614174000"
const expiresAt = new Date(Date.now() + 2 * 3600_000).toISOString()

const pair = (await crypto.subtle.generateKey(
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
  true,
  ["sign", "verify"]
)) as CryptoKeyPair
const privatePem = toPem(
  "PRIVATE KEY",
  new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer)
)

// --- icr-apps: the SDK over a stub fetch that answers the one mint ---------------------------------
const icrFetch = (async () =>
  Response.json({
    id: "223e4567-e89b-12d3-a456-426614174000",
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    token: `crs_${"a".repeat(48)}`,
    expiresAt,
    isActive: true,
    permissions: { organization_info: "VIEW" },
    appId: "1",
    installationId,
    organizationId: "323e4567-e89b-12d3-a456-426614174000"
  })) as unknown as typeof fetch
const runtime = ManagedRuntime.make(
  IcrApps.layer({ appId: "1", privateKey: privatePem, baseUrl: "http://icr.bench", fetch: icrFetch })
)
// The Promise facade, as code that does not use Effect calls it (same stub, same key).
const facade = createIcrAppsClient({ appId: "1", privateKey: privatePem, baseUrl: "http://icr.bench", fetch: icrFetch })
const icrTokenFacade = () => facade.getInstallationToken(installationId)
const tokens = await runtime.runPromise(InstallationTokens)
const jwt = await runtime.runPromise(AppJwt)
const icrToken = () => runtime.runPromise(tokens.get(installationId))
const icrJwt = () => runtime.runPromise(jwt.get)
// Effect-native: the loop itself is one Effect, as an Effect app would run it.
const loop =
  <A, E>(effect: Effect.Effect<A, E>) =>
  (n: number) =>
    runtime.runPromise(
      Effect.gen(function* () {
        for (let i = 0; i < n; i++) yield* effect
      })
    )
const icrTokenLoop = loop(tokens.get(installationId))
const icrJwtLoop = loop(jwt.get)

// --- @octokit/auth-app over a stub fetch ------------------------------------------------------------
const octokitFetch = (async () =>
  Response.json(
    { token: "ghs_bench", expires_at: expiresAt, permissions: { metadata: "read" }, repository_selection: "all" },
    { status: 201 }
  )) as unknown as typeof fetch
const auth = createAppAuth({
  appId: 1,
  privateKey: privatePem,
  request: request.defaults({ baseUrl: "http://octokit.bench", request: { fetch: octokitFetch } })
})
const octokitToken = () => auth({ type: "installation", installationId: 1 })
const octokitJwt = () => auth({ type: "app" })

// Prime both caches (one mint each).
await icrToken()
await icrTokenFacade()
await octokitToken()

const sequential = (f: () => Promise<unknown>) => async (n: number) => {
  for (let i = 0; i < n; i++) await f()
}
const time = async (run: (n: number) => Promise<unknown>, n: number) => {
  const start = performance.now()
  await run(n)
  return ((performance.now() - start) * 1e6) / n // ns per op
}
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** Every round's ns/op, by candidate (`npm run bench:issuer` takes per-round ratios from them). */
const rounds: Record<string, Array<number>> = {}
const measure = async (candidates: Record<string, { run: (n: number) => Promise<unknown>; n: number }>) => {
  const samples: Record<string, Array<number>> = Object.fromEntries(Object.keys(candidates).map((k) => [k, []]))
  Object.assign(rounds, samples)
  for (const c of Object.values(candidates)) await c.run(Math.max(1, Math.floor(c.n / 10))) // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, c] of Object.entries(candidates)) samples[name]!.push(await time(c.run, c.n))
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]))
}

// Octokit signs an RSA JWT on every app auth, so it gets fewer iterations to keep the run short.
const jwtN = Math.max(200, Math.floor(ITERATIONS / 50))
const tokenTimes = await measure({
  "icr-apps getInstallationToken (Promise facade)": { run: sequential(icrTokenFacade), n: ITERATIONS },
  "icr-apps InstallationTokens.get (runPromise per call)": { run: sequential(icrToken), n: ITERATIONS },
  "icr-apps InstallationTokens.get (Effect loop)": { run: icrTokenLoop, n: ITERATIONS },
  "@octokit/auth-app installation token (cached)": { run: sequential(octokitToken), n: ITERATIONS }
})
const jwtTimes = await measure({
  "icr-apps AppJwt.get (runPromise per call)": { run: sequential(icrJwt), n: ITERATIONS },
  "icr-apps AppJwt.get (Effect loop)": { run: icrJwtLoop, n: ITERATIONS },
  "@octokit/auth-app app JWT": { run: sequential(octokitJwt), n: jwtN }
})

const fmt = (ns: number) =>
  ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`
const report = (title: string, times: Record<string, number>, baseline: string) => {
  console.log(`\n${title}`)
  for (const [name, ns] of Object.entries(times)) {
    const ratio = name === baseline ? "" : `   octokit ÷ this = ${(times[baseline]! / ns).toFixed(1)}×`
    console.log(`  ${name.padEnd(52)} ${fmt(ns).padStart(10)}/op${ratio}`)
  }
}
console.log(`node ${process.version}, ${ITERATIONS} iterations × ${ROUNDS} rounds (median round)`)
report("Cached installation token", tokenTimes, "@octokit/auth-app installation token (cached)")
report("App JWT", jwtTimes, "@octokit/auth-app app JWT")
// `npm run bench:issuer` runs this file with BENCH_JSON=<file> and reads the rounds back.
if (process.env.BENCH_JSON) {
  writeFileSync(process.env.BENCH_JSON, JSON.stringify({ iterations: ITERATIONS, rounds: ROUNDS, samples: rounds }))
}
await runtime.dispose()
await facade.dispose()
