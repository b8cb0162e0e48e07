/**
 * The worker half of `npm run bench:issuer` (issue 12): the issuer's worker against the plain worker
 * (plain-worker.ts, plain.wrangler.jsonc), in four phases, each printed as rows of ours ÷ plain:
 *
 * - bundle: `wrangler deploy --dry-run --outdir` of each (wrangler's own "gzip:" figure), plus the
 *   issuer with --minify for information and its largest inputs by package (from the metafile);
 * - cold: a fresh Node process imports each bundle and answers two unauthenticated describes (cold.mjs),
 *   interleaved, COLD_SAMPLES times; medians of module evaluation, first request, second request;
 * - trips: storage round trips per request, counted by wrapping the D1 binding of a local
 *   workerd (wrangler's getPlatformProxy) around each worker's own `fetch`, run in Node;
 * - load: both under `wrangler dev` (local workerd and D1, on free loopback ports, each with its own
 *   copy of the same seeded database); the issuer's config is ../wrangler.jsonc without the
 *   per-address rate limit (wrangler dev sets CF-Connecting-IP, so it would limit the run). After a
 *   warm-up, ROUNDS interleaved rounds of SECONDS each: describe with 16 and mint with 8 requests in
 *   flight; req/s is 200s ÷ time; a row's ratio is the median of the per-round ratios. Both are
 *   stopped at the end (and on any failure).
 *
 *   tsx bench/workerd.ts [--json FILE] [--phases bundle,cold,trips,load] [--rounds 5] [--seconds 3]
 *                        [--cold-samples 7]
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"
import { freshJwt, GRANT, generateKey, INSTALLATION_ID, MINT_BODY, ORGANIZATION_ID } from "../../core/bench/fixtures.js"
import { median, type PhaseResult, ratioOf, type Row } from "../../core/bench/stats.js"
import { arg } from "../../core/bench/args.js"

const here = dirname(fileURLToPath(import.meta.url))
const workerDir = resolve(here, "..")
const wranglerBin = join(workerDir, "node_modules", ".bin", "wrangler")
const phases = new Set(arg("phases", "bundle,cold,trips,load").split(","))
const ROUNDS = Number(arg("rounds", "5"))
const SECONDS = Number(arg("seconds", "3"))
const COLD_SAMPLES = Number(arg("cold-samples", "7"))
const jsonOut = arg("json", "")
/** The whole phase gives up after this long, whatever happens (servers are stopped). */
const DEADLINE = Date.now() + Number(arg("budget-seconds", "420")) * 1000

const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  DO_NOT_TRACK: "1",
  NO_COLOR: "1",
  CI: "1"
}
const tmp = mkdtempSync(join(tmpdir(), "icr-bench-"))
const rows: Array<Row> = []
const extra: Record<string, unknown> = {}
const log = (text: string) => console.error(`» ${text}`)

// --- configs -------------------------------------------------------------------------------------

/** JSONC → JSON: drops comments outside strings, and trailing commas. */
const parseJsonc = (text: string): any => {
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1
      out += text.slice(i, j + 1)
      i = j
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++
      out += "\n"
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2) + 1
    } else out += c
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, "$1"))
}

/** The issuer's own config, paths made absolute, without the per-address rate limit (SPEC §1 limits stay in code). */
const issuerConfig = join(tmp, "issuer.wrangler.json")
{
  const config = parseJsonc(readFileSync(join(workerDir, "wrangler.jsonc"), "utf8"))
  delete config.$schema
  delete config.ratelimits
  config.main = join(workerDir, config.main)
  for (const db of config.d1_databases ?? []) db.migrations_dir = join(workerDir, db.migrations_dir)
  writeFileSync(issuerConfig, JSON.stringify(config, null, 2))
}
const plainConfig = join(here, "plain.wrangler.jsonc")

const wrangler = (args: ReadonlyArray<string>, timeoutMs = 120_000) => {
  const result = spawnSync(wranglerBin, args, { cwd: workerDir, env, encoding: "utf8", timeout: timeoutMs })
  if (result.status !== 0) {
    throw new Error(`wrangler ${args.join(" ")} failed (${result.status}):\n${result.stdout}\n${result.stderr}`)
  }
  return `${result.stdout}\n${result.stderr}`
}

// --- bundle -----------------------------------------------------------------------------------------

const KiB = 1024
interface Bundle {
  readonly file: string
  readonly raw: number
  readonly gzip: number
}
const bundle = (name: string, config: string, flags: ReadonlyArray<string> = []): Bundle => {
  const outdir = join(tmp, `bundle-${name}`)
  const output = wrangler([
    "deploy",
    "--dry-run",
    "-c",
    config,
    "--outdir",
    outdir,
    "--metafile",
    join(tmp, `${name}.meta.json`),
    ...flags
  ])
  const file = readdirSync(outdir).find((f) => f.endsWith(".js"))!
  const bytes = readFileSync(join(outdir, file))
  // wrangler's own figures, as `wrangler deploy` prints them; zlib's as a fallback.
  const reported = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output)
  return {
    file: join(outdir, file),
    raw: reported ? Number(reported[1]) * KiB : bytes.length,
    gzip: reported ? Number(reported[2]) * KiB : gzipSync(bytes).length
  }
}

/** The inputs that weigh most in a bundle, by package (from esbuild's metafile). */
const heaviest = (name: string) => {
  const meta = JSON.parse(readFileSync(join(tmp, `${name}.meta.json`), "utf8"))
  const byPackage = new Map<string, number>()
  const byFile: Array<[string, number]> = []
  for (const output of Object.values<any>(meta.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries<any>(output.inputs ?? {})) {
      const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(input)
      const pkg = m ? m[1]! : /(^|\/)core\/(src|bench)\//.test(input) ? "@icr-apps/core" : "@icr-apps/worker"
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + bytesInOutput)
      byFile.push([m ? `${m[1]}/${m[2]}` : input.replace(/^.*packages\//, "packages/"), bytesInOutput])
    }
  }
  return {
    packages: [...byPackage].sort((a, b) => b[1] - a[1]).map(([p, b]) => `${p} ${(b / KiB).toFixed(0)} KiB`),
    files: byFile
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([f, b]) => `${f} ${(b / KiB).toFixed(1)} KiB`)
  }
}

let issuerBundle: Bundle | undefined
let plainBundle: Bundle | undefined
if (phases.has("bundle") || phases.has("cold")) {
  log("bundling both workers (wrangler deploy --dry-run)")
  issuerBundle = bundle("issuer", join(workerDir, "wrangler.jsonc"))
  plainBundle = bundle("plain", plainConfig)
  if (phases.has("bundle")) {
    const minified = bundle("issuer-min", join(workerDir, "wrangler.jsonc"), ["--minify"])
    extra.bundle = {
      issuer: heaviest("issuer"),
      minifiedGzipKiB: minified.gzip / KiB,
      minifiedRawKiB: minified.raw / KiB
    }
    rows.push({
      key: "bundle.gzip",
      label: "bundle (wrangler deploy --dry-run), gzip",
      ours: issuerBundle.gzip / KiB,
      base: plainBundle.gzip / KiB,
      unit: "KiB gz",
      baseLabel: "plain worker",
      ratio: issuerBundle.gzip / plainBundle.gzip,
      target: "≤ 150 KiB gz",
      pass: issuerBundle.gzip <= 150 * KiB,
      how: "wrangler's own Total Upload gzip figure",
      note: `raw ${(issuerBundle.raw / KiB).toFixed(0)} KiB vs ${(plainBundle.raw / KiB).toFixed(0)} KiB; with --minify ${(minified.raw / KiB).toFixed(0)} KiB, ${(minified.gzip / KiB).toFixed(0)} KiB gz`
    })
  }
}

// --- cold start -------------------------------------------------------------------------------------

if (phases.has("cold") && issuerBundle && plainBundle) {
  log(`cold starts in Node: ${COLD_SAMPLES} × each bundle, interleaved`)
  // A bundle is an ES module; Node decides by extension when no package.json says so.
  const asModule = (b: Bundle) => {
    const target = b.file.replace(/\.js$/, ".mjs")
    copyFileSync(b.file, target)
    return target
  }
  const files = { issuer: asModule(issuerBundle), plain: asModule(plainBundle) }
  const samples = { issuer: [] as Array<any>, plain: [] as Array<any> }
  for (let i = 0; i < COLD_SAMPLES; i++) {
    for (const kind of i % 2 === 0 ? (["issuer", "plain"] as const) : (["plain", "issuer"] as const)) {
      const result = spawnSync(process.execPath, [join(here, "cold.mjs"), files[kind]], {
        encoding: "utf8",
        timeout: 60_000
      })
      if (result.status !== 0) throw new Error(`cold start of ${kind} failed: ${result.stderr}`)
      samples[kind].push(JSON.parse(result.stdout.trim().split("\n").at(-1)!))
    }
  }
  const pick = (kind: "issuer" | "plain", k: string) => samples[kind].map((s) => s[k] as number)
  const how = `${COLD_SAMPLES} fresh \`node\` processes each, interleaved; medians; GET /app/installations/token without a credential (401), stub bindings`
  const coldRow = (key: string, label: string, field: string, target?: number): Row => {
    const ours = median(pick("issuer", field))
    const { ratio, spread } = ratioOf(pick("issuer", field), pick("plain", field))
    return {
      key,
      label,
      ours,
      base: median(pick("plain", field)),
      unit: "ms",
      baseLabel: "plain worker",
      ratio,
      spread,
      target: target === undefined ? undefined : `≤ ${target} ms`,
      pass: target === undefined ? undefined : ours <= target,
      how
    }
  }
  rows.push(
    coldRow("cold.evaluate", "cold start in Node: module evaluation of the bundle", "evaluate"),
    coldRow("cold.first", "cold start in Node: first request (handler construction)", "first", 20),
    coldRow("cold.second", "cold start in Node: second request", "second")
  )
}

// --- seeding ----------------------------------------------------------------------------------------

const key = await generateKey()
const APP_ID = "1"
const seedState = join(tmp, "state-seed")
if (phases.has("trips") || phases.has("load")) {
  log("seeding a local D1 (migrations + one app, one key, one installation, 200 other installations)")
  const migrations = readdirSync(join(workerDir, "migrations"))
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .map((f) => readFileSync(join(workerDir, "migrations", f), "utf8"))
  const now = Date.now()
  const q = (s: string) => `'${s.replace(/'/g, "''")}'`
  const others = Array.from({ length: 200 }, (_, i) => {
    const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`
    return `INSERT INTO installations (id, app_id, organization_id, permissions, created_at, updated_at, suspended_at) VALUES (${q(id)}, 1, ${q(`10000000-0000-4000-8000-${String(i).padStart(12, "0")}`)}, ${q(JSON.stringify(GRANT))}, ${now}, ${now}, NULL);`
  })
  const seed = [
    ...migrations,
    `INSERT INTO apps (id, name, permissions, created_at, updated_at) VALUES (1, 'bench', ${q(JSON.stringify(GRANT))}, ${now}, ${now});`,
    `INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at) VALUES ('9b1d7c2e-0f3a-4b5c-8d6e-7f8091a2b3c4', 1, ${q(key.fingerprint)}, ${q(key.spki)}, ${now});`,
    `INSERT INTO installations (id, app_id, organization_id, permissions, created_at, updated_at, suspended_at) VALUES (${q(INSTALLATION_ID)}, 1, ${q(ORGANIZATION_ID)}, ${q(JSON.stringify(GRANT))}, ${now}, ${now}, NULL);`,
    ...others
  ].join("\n")
  writeFileSync(join(tmp, "seed.sql"), seed)
  wrangler([
    "d1",
    "execute",
    "DB",
    "--local",
    "--persist-to",
    seedState,
    "-c",
    issuerConfig,
    "--file",
    join(tmp, "seed.sql"),
    "--yes"
  ])
}
const stateCopy = (name: string) => {
  const dir = join(tmp, `state-${name}`)
  cpSync(seedState, dir, { recursive: true })
  return dir
}
const jwt = freshJwt(key, APP_ID)

// --- round trips ------------------------------------------------------------------------------------

type Fetcher = { fetch: (request: Request, env: any, ctx: any) => Promise<Response> }
if (phases.has("trips")) {
  log("counting storage round trips per request (the workers' own fetch over counted bindings)")
  const { getPlatformProxy } = await import("wrangler")
  const proxy = await getPlatformProxy<Record<string, any>>({
    configPath: issuerConfig,
    persist: { path: join(stateCopy("trips"), "v3") },
    remoteBindings: false
  })
  try {
    const counts = { d1: 0, d1Statements: 0 }
    const reset = () => Object.assign(counts, { d1: 0, d1Statements: 0 })
    const db = proxy.env.DB
    /** Counts one call as `n` round trips (and `statements` D1 statements), then makes it. */
    const counted =
      <A extends Array<any>>(k: "d1", call: (...a: A) => unknown, statements = 0) =>
      (...a: A) => {
        counts[k]++
        counts.d1Statements += statements
        return call(...a)
      }
    const wrap = (statement: any): any => ({
      inner: statement,
      bind: (...values: Array<any>) => wrap(statement.bind(...values)),
      first: counted("d1", (...a: Array<any>) => statement.first(...a), 1),
      run: counted("d1", (...a: Array<any>) => statement.run(...a), 1),
      all: counted("d1", (...a: Array<any>) => statement.all(...a), 1),
      raw: counted("d1", (...a: Array<any>) => statement.raw(...a), 1)
    })
    const DB = {
      prepare: (sql: string) => wrap(db.prepare(sql)),
      batch: (statements: Array<any>) => {
        counts.d1++
        counts.d1Statements += statements.length
        return db.batch(statements.map((s) => s.inner))
      },
      exec: counted("d1", (sql: string) => db.exec(sql), 1),
      withSession: () => {
        throw new Error("the bench does not count D1 sessions")
      }
    }
    const countedEnv = (vars: Record<string, any>) => ({ ...vars, DB })
    const ctx = { waitUntil() {}, passThroughOnException() {} }
    const issuerWorker = ((await import("../src/index.js")) as { default: Fetcher }).default
    const plainWorker = ((await import("./plain-worker.js")) as { default: Fetcher }).default
    const trips: Record<string, Record<string, typeof counts>> = {}
    for (const [name, worker] of [
      ["issuer", issuerWorker],
      ["plain", plainWorker]
    ] as const) {
      const workerEnv = countedEnv({
        APP_TOKEN_TTL_SECONDS: "3600",
        INSTALLATION_TOKEN_TTL_SECONDS: "7200",
        PUBLIC_BASE_URL: ""
      })
      const send = async (request: Request) => {
        reset()
        const response = await worker.fetch(request, workerEnv, ctx)
        const body = await response.text()
        if (response.status !== 200)
          throw new Error(`${name}: ${request.method} ${request.url}: ${response.status} ${body}`)
        return { body, counts: { ...counts } }
      }
      trips[name] = {}
      trips[name]!.healthz = (await send(new Request("http://bench.local/healthz"))).counts
      const minted = await send(mintRequest("http://bench.local", await jwt()))
      trips[name]!.mint = minted.counts
      const token = JSON.parse(minted.body).token as string
      trips[name]!.describe = (await send(describeRequest("http://bench.local", token))).counts
    }
    extra.trips = trips
    const tripsText = (c: typeof counts) => `${c.d1} D1 round trips (${c.d1Statements} statements)`
    const total = (c: typeof counts) => c.d1
    // One read batch (app, keys, installation), then one write (the token).
    const mintOk = (c: typeof counts) => c.d1 <= 2
    rows.push(
      {
        key: "trips.mint",
        label: "storage round trips: mint",
        ours: total(trips.issuer!.mint!),
        base: total(trips.plain!.mint!),
        unit: "round trips",
        baseLabel: "plain worker",
        ratio: undefined,
        target: "1 D1 batch + 1 write",
        pass: mintOk(trips.issuer!.mint!),
        how: "bindings wrapped and counted, the worker's fetch in Node over a local workerd (getPlatformProxy)",
        note: `issuer: ${tripsText(trips.issuer!.mint!)}; plain: ${tripsText(trips.plain!.mint!)}`
      },
      {
        key: "trips.describe",
        label: "storage round trips: token use (describe)",
        ours: total(trips.issuer!.describe!),
        base: total(trips.plain!.describe!),
        unit: "round trips",
        baseLabel: "plain worker",
        ratio: undefined,
        target: "1",
        pass: total(trips.issuer!.describe!) <= 1,
        how: "bindings wrapped and counted, the worker's fetch in Node over a local workerd (getPlatformProxy)",
        note: `issuer: ${tripsText(trips.issuer!.describe!)}; plain: ${tripsText(trips.plain!.describe!)}`
      }
    )
  } finally {
    await proxy.dispose()
  }
}

// --- requests -----------------------------------------------------------------------------------

function mintRequest(origin: string, bearer: string) {
  return new Request(`${origin}/app/installations/${INSTALLATION_ID}/accessTokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: MINT_BODY
  })
}
function describeRequest(origin: string, token: string) {
  return new Request(`${origin}/app/installations/token`, { headers: { authorization: `Bearer ${token}` } })
}

// --- load under wrangler dev ------------------------------------------------------------------------

const freePort = () =>
  new Promise<number>((ok, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => ok(port))
    })
  })

interface Server {
  readonly name: string
  readonly port: number
  readonly child: ChildProcess
  readonly output: Array<string>
}
const servers: Array<Server> = []
const stopAll = async () => {
  for (const s of servers.splice(0)) {
    if (s.child.exitCode !== null || s.child.pid === undefined) continue
    const exited = new Promise<void>((ok) => s.child.once("exit", () => ok()))
    try {
      process.kill(-s.child.pid, "SIGTERM") // its own process group: wrangler and its workerd
    } catch {}
    const timer = setTimeout(() => {
      try {
        process.kill(-s.child.pid!, "SIGKILL")
      } catch {}
    }, 5000)
    await exited
    clearTimeout(timer)
  }
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => void stopAll().finally(() => process.exit(130)))
}

const startServer = async (name: string, config: string, state: string): Promise<Server> => {
  const port = await freePort()
  const inspector = await freePort()
  const child = spawn(
    wranglerBin,
    [
      "dev",
      "-c",
      config,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      state,
      "--log-level",
      "warn",
      "--show-interactive-dev-session=false"
    ],
    { cwd: workerDir, env, stdio: ["ignore", "pipe", "pipe"], detached: true }
  )
  const server = { name, port, child, output: [] as Array<string> }
  child.stdout!.on("data", (d) => server.output.push(String(d)))
  child.stderr!.on("data", (d) => server.output.push(String(d)))
  servers.push(server)
  return server
}

const agentFor = new Map<number, http.Agent>()
const send = (port: number, method: string, path: string, headers: Record<string, string>, body?: string) =>
  new Promise<{ status: number; body: string }>((ok, fail) => {
    let agent = agentFor.get(port)
    if (agent === undefined) {
      agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
      agentFor.set(port, agent)
    }
    const request = http.request(
      { host: "127.0.0.1", port, method, path, headers, agent, timeout: 15_000 },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (c) => chunks.push(c))
        response.on("end", () => ok({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
        response.on("error", fail)
      }
    )
    request.on("timeout", () => request.destroy(new Error("timeout")))
    request.on("error", fail)
    request.end(body)
  })

const waitUp = async (server: Server) => {
  const until = Math.min(DEADLINE, Date.now() + 120_000)
  while (Date.now() < until) {
    if (server.child.exitCode !== null) throw new Error(`${server.name} exited:\n${server.output.join("")}`)
    try {
      if ((await send(server.port, "GET", "/healthz", {})).status === 200) return
    } catch {}
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`${server.name} did not come up:\n${server.output.join("").slice(-2000)}`)
}

interface Load {
  readonly path: string
  readonly method: string
  readonly concurrency: number
  readonly headers: () => Promise<Record<string, string>>
  readonly body?: string
}
/** `concurrency` loops sending one request after another for `seconds`; returns 200s per second. */
const drive = async (port: number, load: Load, seconds: number) => {
  const headers = await load.headers()
  const end = Date.now() + seconds * 1000
  let ok = 0
  let failed = 0
  let lastFailure = ""
  const started = performance.now()
  await Promise.all(
    Array.from({ length: load.concurrency }, async () => {
      while (Date.now() < end && Date.now() < DEADLINE) {
        try {
          const r = await send(port, load.method, load.path, headers, load.body)
          if (r.status === 200) ok++
          else {
            failed++
            lastFailure = `${r.status} ${r.body.slice(0, 200)}`
          }
        } catch (e) {
          failed++
          lastFailure = String(e)
        }
      }
    })
  )
  const elapsed = (performance.now() - started) / 1000
  return { rate: ok / elapsed, failed, lastFailure }
}

if (phases.has("load")) {
  try {
    log("starting both workers under wrangler dev (local workerd) on free loopback ports")
    const issuer = await startServer("issuer", issuerConfig, stateCopy("issuer"))
    const plain = await startServer("plain", plainConfig, stateCopy("plain"))
    await Promise.all([waitUp(issuer), waitUp(plain)])
    const tokenOf = async (server: Server) => {
      const r = await send(
        server.port,
        "POST",
        `/app/installations/${INSTALLATION_ID}/accessTokens`,
        { authorization: `Bearer ${await jwt()}`, "content-type": "application/json" },
        MINT_BODY
      )
      if (r.status !== 200) throw new Error(`${server.name} mint: ${r.status} ${r.body}`)
      return JSON.parse(r.body).token as string
    }
    const tokens = { issuer: await tokenOf(issuer), plain: await tokenOf(plain) }
    const loads = (server: Server): Record<"describe" | "mint", Load> => ({
      describe: {
        path: "/app/installations/token",
        method: "GET",
        concurrency: 16,
        headers: async () => ({ authorization: `Bearer ${tokens[server.name as "issuer" | "plain"]}` })
      },
      mint: {
        path: `/app/installations/${INSTALLATION_ID}/accessTokens`,
        method: "POST",
        concurrency: 8,
        headers: async () => ({ authorization: `Bearer ${await jwt()}`, "content-type": "application/json" }),
        body: MINT_BODY
      }
    })
    log("warming up (2 s of each load on each)")
    for (const server of [issuer, plain]) {
      for (const load of Object.values(loads(server))) await drive(server.port, load, 2)
    }
    const samples: Record<string, Array<number>> = {}
    const failures: Record<string, { count: number; last: string }> = {}
    log(`${ROUNDS} rounds × ${SECONDS} s per worker and path, interleaved`)
    for (let round = 0; round < ROUNDS && Date.now() < DEADLINE; round++) {
      for (const path of ["describe", "mint"] as const) {
        for (const server of round % 2 === 0 ? [issuer, plain] : [plain, issuer]) {
          const { rate, failed, lastFailure } = await drive(server.port, loads(server)[path], SECONDS)
          const k = `${server.name}.${path}`
          samples[k] ??= []
          samples[k]!.push(rate)
          failures[k] ??= { count: 0, last: "" }
          failures[k]!.count += failed
          if (lastFailure) failures[k]!.last = lastFailure
        }
      }
    }
    extra.load = { samples, failures }
    for (const [path, concurrency] of [
      ["describe", 16],
      ["mint", 8]
    ] as const) {
      const ours = samples[`issuer.${path}`] ?? []
      const base = samples[`plain.${path}`] ?? []
      const { ratio, spread } = ratioOf(ours, base)
      const failed = (failures[`issuer.${path}`]?.count ?? 0) + (failures[`plain.${path}`]?.count ?? 0)
      rows.push({
        key: `workerd.${path}`,
        label: `wrangler dev (local workerd, D1): ${path}, ${concurrency} concurrent`,
        ours: median(ours),
        base: median(base),
        unit: "req/s",
        baseLabel: "plain worker",
        ratio,
        spread,
        target: "≥ 0.9×",
        pass: ratio >= 0.9 && failed === 0,
        how: `${ours.length} interleaved rounds × ${SECONDS} s each, keep-alive HTTP/1.1 from this process, 200s only`,
        note:
          failed === 0
            ? undefined
            : `${failed} non-200 answers (issuer: ${failures[`issuer.${path}`]?.last}; plain: ${failures[`plain.${path}`]?.last})`
      })
    }
  } finally {
    for (const agent of agentFor.values()) agent.destroy()
    await stopAll()
  }
}

const result: PhaseResult = { phase: "workerd", rows, extra }
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result, null, 2))
else console.log(JSON.stringify(result, null, 2))
rmSync(tmp, { recursive: true, force: true })
