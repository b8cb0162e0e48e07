/**
 * Phase (a) of `npm run bench:issuer`: CPU per request in one Node process, memory storage.
 *
 * Candidates: the real issuer (`makeWebHandler` over `Registry.layerMemory` + `TokenStore.layerMemory`,
 * as the testkit's FakeIssuer builds it), the plain handler of `plain.ts` over Maps, and a minimal
 * `HttpApi` with one GET. Each request is a fresh `Request` whose response body is read to the end.
 *
 * Before measuring, every scenario (successes and the usual failures) is sent to the issuer and the
 * plain handler and their answers compared (status, content type, header names, body fields, code):
 * the ratio is only fair while the two do the same work.
 *
 * Measuring: each candidate's batch size is calibrated to ~BATCH_MS; then ROUNDS rounds, each running
 * every candidate's batch back to back (order flipped every round). CPU is `process.cpuUsage()` over
 * the batch (all threads: WebCrypto's RSA and digest run on libuv's pool), wall is `performance.now()`.
 * A row's ratio is the median of the per-round ratios.
 *
 *   tsx bench/inprocess.ts [--json FILE] [--rounds N] [--batch-ms N] [--src DIR]
 *
 * `--src DIR` (relative to packages/core) runs another copy of the issuer's sources, e.g. a prototype
 * under dist/ (ignored by git): its answers are checked against the plain handler like the real one's.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import {
  answerShape,
  benchAuditSink,
  freshJwt,
  GRANT,
  generateKey,
  INSTALLATION_ID,
  MINT_BODY,
  memoryIssuerOf,
  ORGANIZATION_ID,
  signAppJwt
} from "./fixtures.js"
import { makePlainHandler, memoryStorage, type PlainApp, type PlainInstallation } from "./plain.js"
import { fmtMicros, median, type PhaseResult, ratioOf, type Row } from "./stats.js"
import { arg } from "./args.js"

const ROUNDS = Number(arg("rounds", process.env.BENCH_ROUNDS ?? "15"))
const BATCH_MS = Number(arg("batch-ms", "250"))
const jsonOut = arg("json", "")

const source = resolve(dirname(fileURLToPath(import.meta.url)), "..", arg("src", "src"))

type Handler = (request: Request) => Promise<Response>
const ORIGIN = "http://bench.local"
const ADMIN = "bench-admin-token-0123456789abcdef0123456789"

// --- the real issuer, seeded through its own operator API ----------------------------------------
const key = await generateKey()
const issuer = await memoryIssuerOf(source, { adminToken: Redacted.make(ADMIN) })
const admin = async (path: string, body: unknown) => {
  const response = await issuer.handler(
    new Request(`${ORIGIN}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify(body)
    })
  )
  if (response.status !== 201) throw new Error(`seeding ${path}: ${response.status} ${await response.text()}`)
  return (await response.json()) as Record<string, any>
}
const app = await admin("/admin/apps", { name: "bench", permissions: GRANT, publicKey: key.publicPem })
const appId = String(app.id)
const installation = await admin("/admin/installations", {
  appId,
  organizationId: ORGANIZATION_ID,
  permissions: GRANT
})
const issuerInstallationId = String(installation.id)

// --- the plain handler over Maps, with the same data ---------------------------------------------
const plainApps = new Map<string, PlainApp>([
  [
    appId,
    { id: appId, permissions: GRANT, keys: [{ id: app.keys[0].id, fingerprint: key.fingerprint, spki: key.spki }] }
  ]
])
const plainInstallations = new Map<string, PlainInstallation>([
  [
    INSTALLATION_ID,
    {
      id: INSTALLATION_ID,
      appId,
      organizationId: ORGANIZATION_ID,
      permissions: GRANT,
      suspendedAt: null,
      tokenEpoch: 0,
      appTokenEpoch: 0
    }
  ]
])
const plainAudit = benchAuditSink<Record<string, unknown>>()
const plain: Handler = makePlainHandler(memoryStorage(plainApps, plainInstallations), {
  audit: (event) => plainAudit.push(event)
})

// --- a minimal HttpApi: one GET --------------------------------------------------------------------
const MinimalApi = HttpApi.make("minimal").add(
  HttpApiGroup.make("system").add(
    HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
  )
)
const minimal = HttpApiBuilder.toWebHandler(
  Layer.mergeAll(
    HttpApiBuilder.api(MinimalApi).pipe(
      Layer.provide(
        HttpApiBuilder.group(MinimalApi, "system", (h) =>
          h.handle("healthz", () => Effect.succeed({ status: "ok" as const }))
        )
      )
    ),
    HttpServer.layerContext
  )
)

// --- requests --------------------------------------------------------------------------------------
const jwt = freshJwt(key, appId)
let currentJwt = await jwt()
const mintRequest = (installationId: string, bearer = currentJwt, body = MINT_BODY) =>
  new Request(`${ORIGIN}/app/installations/${installationId}/accessTokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body
  })
const describeRequest = (token: string) =>
  new Request(`${ORIGIN}/app/installations/token`, { headers: { authorization: `Bearer ${token}` } })
const healthzRequest = () => new Request(`${ORIGIN}/healthz`)

const mintToken = async (handler: Handler, installationId: string) => {
  const response = await handler(mintRequest(installationId))
  if (response.status !== 200) throw new Error(`mint: ${response.status} ${await response.text()}`)
  return String(((await response.json()) as { token: string }).token)
}
const issuerToken = await mintToken(issuer.handler, issuerInstallationId)
const plainToken = await mintToken(plain, INSTALLATION_ID)

// --- same work? compare the answers of both to every scenario ------------------------------------
const otherKey = await generateKey()
const foreignJwt = await signAppJwt(otherKey, appId)
const unknownAppJwt = await signAppJwt(key, "999999")
const scenarios: ReadonlyArray<readonly [string, (id: string, token: string) => Request]> = [
  ["healthz", () => healthzRequest()],
  ["describe", (_id, token) => describeRequest(token)],
  ["describe, unknown token", () => describeRequest(`crs_${"ab".repeat(24)}`)],
  ["describe, a JWT instead", () => describeRequest(currentJwt)],
  ["describe, no credential", () => new Request(`${ORIGIN}/app/installations/token`)],
  [
    "describe, other version",
    (_id, token) =>
      new Request(`${ORIGIN}/app/installations/token`, {
        headers: { authorization: `Bearer ${token}`, "x-icr-api-version": "2020-01-01" }
      })
  ],
  ["mint", (id) => mintRequest(id)],
  ["mint, no body", (id) => mintRequest(id, currentJwt, "")],
  [
    "mint, beyond the grant",
    (id) =>
      mintRequest(
        id,
        currentJwt,
        JSON.stringify({ permissions: { organization_info: "VIEW", organization_members: "VIEW" } })
      )
  ],
  [
    "mint, unknown level",
    (id) => mintRequest(id, currentJwt, JSON.stringify({ permissions: { organization_info: "WRITE" } }))
  ],
  ["mint, bad signature", (id) => mintRequest(id, foreignJwt)],
  ["mint, unknown app", (id) => mintRequest(id, unknownAppJwt)],
  ["mint, unknown installation", () => mintRequest("11111111-2222-4333-8444-555555555555")],
  ["mint, malformed id", () => mintRequest("not-a-uuid")],
  ["mint, not JSON", (id) => mintRequest(id, currentJwt, "permissions=1")],
  [
    "mint, too large",
    (id) => mintRequest(id, currentJwt, JSON.stringify({ permissions: {}, pad: "x".repeat(17_000) }))
  ],
  ["healthz, wrong method", () => new Request(`${ORIGIN}/healthz`, { method: "POST" })],
  ["unknown route", () => new Request(`${ORIGIN}/nowhere`)]
]
const shape = async (response: Response) => {
  const { text, body, shape } = await answerShape(response)
  return { ...shape, reason: String(body.reason ?? ""), newline: text.endsWith("\n") }
}
const mismatches: Array<string> = []
const DEBUG = process.env.BENCH_DEBUG === "1"
for (const [name, make] of scenarios) {
  const ours = await shape(await issuer.handler(make(issuerInstallationId, issuerToken)))
  const theirs = await shape(await plain(make(INSTALLATION_ID, plainToken)))
  if (DEBUG) console.error(name, JSON.stringify(ours), JSON.stringify(theirs))
  for (const k of Object.keys(ours) as Array<keyof typeof ours>) {
    if (ours[k] !== theirs[k]) mismatches.push(`${name}: ${k} issuer=${ours[k]} plain=${theirs[k]}`)
  }
}
if (mismatches.length > 0) {
  console.error(`! the plain handler and the issuer answer differently (${mismatches.length}):`)
  for (const m of mismatches) console.error(`    ${m}`)
} else {
  console.error(`» same answers from the issuer and the plain handler in ${scenarios.length} scenarios`)
}

// --- measuring ---------------------------------------------------------------------------------------
interface Candidate {
  readonly name: string
  readonly request: () => Request
  readonly handler: Handler
  n: number
  readonly cpu: Array<number>
  readonly wall: Array<number>
}
const candidate = (name: string, handler: Handler, request: () => Request): Candidate => ({
  name,
  handler,
  request,
  n: 1,
  cpu: [],
  wall: []
})
const groups: ReadonlyArray<ReadonlyArray<Candidate>> = [
  [
    candidate("issuer.healthz", issuer.handler, healthzRequest),
    candidate("plain.healthz", plain, healthzRequest),
    candidate("minimal.healthz", minimal.handler, healthzRequest)
  ],
  [
    candidate("issuer.describe", issuer.handler, () => describeRequest(issuerToken)),
    candidate("plain.describe", plain, () => describeRequest(plainToken))
  ],
  [
    candidate("issuer.mint", issuer.handler, () => mintRequest(issuerInstallationId)),
    candidate("plain.mint", plain, () => mintRequest(INSTALLATION_ID))
  ]
]
const batch = async (c: Candidate, n: number) => {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const response = await c.handler(c.request())
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`${c.name}: ${response.status}`)
  }
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  return { wall: (wall * 1000) / n, cpu: (cpu.user + cpu.system) / n }
}
// Warm-up and calibration: run each until BATCH_MS has passed twice; n = what fit the second time.
for (const c of groups.flat()) {
  for (let pass = 0; pass < 2; pass++) {
    const start = performance.now()
    let count = 0
    while (performance.now() - start < BATCH_MS) {
      await batch(c, 10)
      count += 10
    }
    c.n = count
  }
}
const started = performance.now()
for (let round = 0; round < ROUNDS; round++) {
  currentJwt = await jwt()
  for (const group of groups) {
    const order = round % 2 === 0 ? group : [...group].reverse()
    for (const c of order) {
      const { cpu, wall } = await batch(c, c.n)
      c.cpu.push(cpu)
      c.wall.push(wall)
    }
  }
}
const seconds = (performance.now() - started) / 1000
const by = Object.fromEntries(groups.flat().map((c) => [c.name, c]))
const how = (a: Candidate, b: Candidate) =>
  `${ROUNDS} rounds × (${a.n} + ${b.n} sequential requests), CPU via process.cpuUsage, median of per-round ratios`
const row = (key: string, label: string, ours: string, base: string, baseLabel: string, limit: number): Row => {
  const a = by[ours]!
  const b = by[base]!
  const { ratio, spread } = ratioOf(a.cpu, b.cpu)
  const wall = ratioOf(a.wall, b.wall)
  return {
    key,
    label,
    ours: median(a.cpu),
    base: median(b.cpu),
    unit: "µs CPU/req",
    baseLabel,
    ratio,
    spread,
    target: `≤ ${limit}×`,
    pass: ratio <= limit,
    how: how(a, b),
    note: `wall ${fmtMicros(median(a.wall))} vs ${fmtMicros(median(b.wall))} (${wall.ratio.toFixed(2)}×)`
  }
}
const rows: Array<Row> = [
  row("cpu.healthz", "CPU/request in process: GET /healthz", "issuer.healthz", "plain.healthz", "plain handler", 3),
  row(
    "cpu.describe",
    "CPU/request in process: describe (GET /app/installations/token)",
    "issuer.describe",
    "plain.describe",
    "plain handler",
    3
  ),
  row(
    "cpu.mint",
    "CPU/request in process: mint (POST …/{id}/accessTokens)",
    "issuer.mint",
    "plain.mint",
    "plain handler",
    3
  ),
  {
    ...row(
      "cpu.minimal",
      "CPU/request in process: minimal HttpApi, one GET",
      "minimal.healthz",
      "plain.healthz",
      "plain handler",
      Number.POSITIVE_INFINITY
    ),
    target: undefined,
    pass: undefined
  },
  row(
    "cpu.healthz-vs-minimal",
    "CPU/request in process: issuer healthz vs minimal HttpApi",
    "issuer.healthz",
    "minimal.healthz",
    "minimal HttpApi",
    1.5
  )
]
const result: PhaseResult = {
  phase: "inprocess",
  rows,
  extra: { seconds, mismatches, node: process.version }
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result, null, 2))
else {
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(66)} ${fmtMicros(r.ours!).padStart(8)} ${fmtMicros(r.base!).padStart(8)} ${r.ratio!.toFixed(2)}× [${r.spread![0].toFixed(2)}–${r.spread![1].toFixed(2)}] ${r.note}`
    )
  }
}
await issuer.dispose()
await minimal.dispose()
