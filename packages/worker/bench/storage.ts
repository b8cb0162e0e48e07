/**
 * `npm run bench:storage` (issue 16, "Measure"): token uses/s and mints/s of the served issuer — the
 * real server entry (`src/server/cli.ts serve`) — on SQLite under Node, Deno and Bun and on Postgres
 * under Node, each beside a plain handler doing the same SQL with the same driver and no framework
 * (storage-plain.ts), measured in one run. Target: served ≥ 0.8× plain on both paths.
 *
 * For each backend:
 * 1. the served issuer starts on a fresh database (SQLite file, or a fresh Postgres database), rate
 *    limits off (`ADDRESS_RATE_LIMIT_PER_MINUTE=0 PRINCIPAL_RATE_LIMIT_PER_MINUTE=0`), and is seeded
 *    through its operator API: an app with a key, an installation, 64 installation tokens minted;
 * 2. the plain server starts on the same runtime over the same database (the same rows: it reads
 *    what the issuer wrote);
 * 3. both get the same scenarios (successes and the usual failures) and must answer alike (status,
 *    content type, header names, body fields, `code`, `reason`) before anything is timed;
 * 4. after a warm-up, ROUNDS rounds: describe (`GET /app/installations/token` with a `crs_` token, 16
 *    connections, each its own token) then mint (`POST /app/installations/{id}/accessTokens` with an
 *    App JWT signed before the round, 8 connections), served and plain back to back, the order
 *    flipped every round. A row's ratio is the median of the per-round ratios, with their IQR.
 *
 * The load generator is this process (storage-load.ts: raw keep-alive HTTP/1.1 on prebuilt bytes),
 * never a server's. Its ceiling is measured in the same run against a trivial server (Bun.serve
 * answering a fixed 200, no work; node:http without Bun) at the start and at the end, and its own CPU
 * is reported for every load: while the ceiling is far above the rates measured and the generator's
 * CPU well below one core, the generator is not what limits them.
 *
 *   tsx bench/storage.ts [--quick] [--only sqlite-node,postgres-node] [--markdown FILE] [--json FILE]
 *                        [--rounds N] [--seconds S] [--paths describe,mint] [--profile DIR]
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { availableParallelism, loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { answerShape, GRANT, generateKey, MINT_BODY, ORGANIZATION_ID, signAppJwt } from "../../core/bench/fixtures.js"
import { median, ratioOf } from "../../core/bench/stats.js"
import { drive, httpRequest, type LoadResult } from "./storage-load.js"
import { arg, flag } from "../../core/bench/args.js"

const here = dirname(fileURLToPath(import.meta.url))
const workerDir = resolve(here, "..")
const root = resolve(workerDir, "..", "..")
const QUICK = flag("quick")
const ROUNDS = Number(arg("rounds", QUICK ? "3" : "5"))
const SECONDS = Number(arg("seconds", QUICK ? "1.5" : "3"))
const WARMUP_SECONDS = QUICK ? 1 : 2
const ONLY = arg("only", "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "")
const markdownOut = arg("markdown", "")
/** `--profile DIR`: the servers on Node and Bun run with `--cpu-prof` into DIR (read it with storage-profile.ts). */
const profileDir = arg("profile", "") === "" ? "" : resolve(arg("profile", ""))
/** `--paths describe`: time only these paths (a profile of one path). */
const PATHS = arg("paths", "describe,mint")
  .split(",")
  .filter((p): p is "describe" | "mint" => p === "describe" || p === "mint")
const jsonOut = arg("json", "")
const TARGET = 0.8
const CONCURRENCY = { describe: 16, mint: 8 } as const
const TOKENS = 64
const ADMIN = "bench-storage-admin-token-0123456789abcdef"

const log = (text: string) => console.error(`» ${text}`)
const tmp = mkdtempSync(join(tmpdir(), "icr-bench-storage-"))

// --- runtimes -------------------------------------------------------------------------------------

type Runtime = "node" | "deno" | "bun"
const tools = join(root, ".tools", "node_modules", ".bin")
const binOf = (runtime: Runtime) => (runtime === "node" ? process.execPath : join(tools, runtime))
const available = (runtime: Runtime) =>
  runtime === "node" || spawnSync(binOf(runtime), ["--version"], { encoding: "utf8" }).status === 0
const versionOf = (runtime: Runtime) =>
  runtime === "node"
    ? `node ${process.version}`
    : `${runtime} ${spawnSync(binOf(runtime), ["--version"], { encoding: "utf8" })
        .stdout.split("\n")[0]
        ?.replace(/^(deno|bun) ?/, "")}`
const SOURCE = "--conditions=@icr-apps/source"
/** How each runtime runs a TypeScript file from the sources, as `npm run serve -- --runtime` does. */
const commandOf = (
  runtime: Runtime,
  script: string,
  args: ReadonlyArray<string>,
  profileName = ""
): [string, Array<string>] => {
  const profiling =
    profileDir === "" || profileName === "" || runtime === "deno"
      ? []
      : // A folder per server: Node writes one profile per thread (tsx's loader hooks run in one of their own).
        ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, profileName)}`]
  return runtime === "node"
    ? [
        process.execPath,
        [
          ...profiling,
          SOURCE,
          "--import",
          pathToFileURL(join(root, "node_modules", "tsx", "dist", "loader.mjs")).href,
          script,
          ...args
        ]
      ]
    : runtime === "deno"
      ? [binOf("deno"), ["run", "-A", "--unstable-sloppy-imports", SOURCE, script, ...args]]
      : [binOf("bun"), [...profiling, SOURCE, script, ...args]]
}

// --- processes ------------------------------------------------------------------------------------

interface Server {
  readonly name: string
  /** When it was spawned (`performance.now()`): where its `--cpu-prof` profile starts. */
  readonly spawnedAt: number
  readonly port: number
  readonly child: ChildProcess
  readonly stdoutFile: string
  readonly stderr: Array<string>
}
const running = new Set<Server>()

const freePort = () =>
  new Promise<number>((ok, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => ok(port))
    })
  })

/** Starts `script` on `runtime`; standard output (audit lines) to a file, as a deployment would keep it. */
const start = async (
  name: string,
  runtime: Runtime,
  script: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>
) => {
  const port = await freePort()
  const stdoutFile = join(tmp, `${name}.stdout`)
  const out = openSync(stdoutFile, "w")
  const spawnedAt = performance.now()
  const [bin, argvOf] = commandOf(runtime, script, args, name === "trivial" ? "" : name)
  const child = spawn(bin, argvOf, {
    cwd: workerDir,
    env: { ...process.env, ...env, PORT: String(port), HOST: "127.0.0.1", NO_COLOR: "1" },
    stdio: ["ignore", out, "pipe"],
    detached: true
  })
  closeSync(out)
  const server: Server = { name, spawnedAt, port, child, stdoutFile, stderr: [] }
  child.stderr!.on("data", (d) => {
    server.stderr.push(String(d))
    if (server.stderr.length > 50) server.stderr.shift()
  })
  running.add(server)
  const until = Date.now() + 60_000
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${server.stderr.join("")}`)
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`)
      await r.arrayBuffer()
      if (r.status === 200) return server
    } catch {}
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${name} did not answer /healthz within 60 s: ${server.stderr.join("").slice(-2000)}`)
}

/** SIGTERM to the server's process group (it was started in its own), SIGKILL after 10 s. */
const stop = async (server: Server) => {
  running.delete(server)
  const { child } = server
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()))
  try {
    process.kill(-child.pid, "SIGTERM")
  } catch {}
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {}
  }, 10_000)
  await exited
  clearTimeout(timer)
}
/**
 * A process's CPU time so far (user + system, every thread), in ms, from /proc (Linux); undefined
 * elsewhere. Less sensitive than throughput to other work on the machine: a request costs the CPU it
 * costs, however long the scheduler makes it wait.
 */
const processCpuMs = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the command), in clock ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
  } catch {
    return undefined
  }
}
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100
const stopAll = () => Promise.all([...running].map(stop))
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => void stopAll().finally(() => process.exit(130)))
}

// --- backends ---------------------------------------------------------------------------------------

interface Backend {
  readonly name: string
  readonly engine: "SQLite" | "Postgres"
  readonly runtime: Runtime
  /** A fresh database: its URL and how to remove it. */
  readonly database: () => Promise<{ url: string; drop: () => Promise<void> }>
}
const sqliteFile = (runtime: Runtime) => async () => {
  const path = join(tmp, `issuer-${runtime}.db`)
  return {
    url: `sqlite:${path}`,
    drop: async () => {
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true })
    }
  }
}
const BACKENDS: ReadonlyArray<Backend> = [
  { name: "sqlite-node", engine: "SQLite", runtime: "node", database: sqliteFile("node") },
  { name: "sqlite-deno", engine: "SQLite", runtime: "deno", database: sqliteFile("deno") },
  { name: "sqlite-bun", engine: "SQLite", runtime: "bun", database: sqliteFile("bun") },
  {
    name: "postgres-node",
    engine: "Postgres",
    runtime: "node",
    database: async () => {
      const { findOrStartPostgres } = await import("../test/support/postgres.js")
      const server = await findOrStartPostgres()
      const db = await server.createDatabase()
      return {
        url: db.url,
        drop: async () => {
          await db.drop()
          await server.stop()
        }
      }
    }
  }
]

// --- one backend ------------------------------------------------------------------------------------

/** A load as measured, with the server's own CPU per request (all its threads; undefined off Linux). */
type Measured = LoadResult & { readonly serverCpuUs: number | undefined }
interface PathResult {
  readonly served: Array<Measured>
  readonly plain: Array<Measured>
}
interface BackendResult {
  readonly backend: Backend
  readonly driver: string
  readonly paths: Partial<Record<"describe" | "mint", PathResult>>
  readonly mismatches: ReadonlyArray<string>
  readonly error?: string
}

const key = await generateKey()
const otherKey = await generateKey()

const json = async (response: Response) => {
  const text = await response.text()
  try {
    return JSON.parse(text) as Record<string, any>
  } catch {
    return { text }
  }
}

/** The scenarios whose answers must agree (issue 12's in-process list, over HTTP). */
const scenarios = (
  appId: string,
  installationId: string,
  token: string,
  jwt: string,
  foreign: string,
  unknownApp: string
) => {
  const mint = (id: string, bearer: string, body = MINT_BODY): [string, RequestInit] => [
    `/app/installations/${id}/accessTokens`,
    { method: "POST", headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" }, body }
  ]
  const describe = (bearer?: string, extra: Record<string, string> = {}): [string, RequestInit] => [
    "/app/installations/token",
    { headers: { ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }), ...extra } }
  ]
  void appId
  return [
    ["healthz", ["/healthz", {}]],
    ["describe", describe(token)],
    ["describe, unknown token", describe(`crs_${"ab".repeat(24)}`)],
    ["describe, malformed token", describe("crs_nothex")],
    ["describe, a JWT instead", describe(jwt)],
    ["describe, no credential", describe()],
    ["describe, other version", describe(token, { "x-icr-api-version": "2020-01-01" })],
    ["mint", mint(installationId, jwt)],
    ["mint, no body", mint(installationId, jwt, "")],
    [
      "mint, beyond the grant",
      mint(
        installationId,
        jwt,
        JSON.stringify({ permissions: { organization_info: "VIEW", organization_members: "VIEW" } })
      )
    ],
    ["mint, unknown level", mint(installationId, jwt, JSON.stringify({ permissions: { organization_info: "WRITE" } }))],
    ["mint, empty grant", mint(installationId, jwt, JSON.stringify({ permissions: {} }))],
    ["mint, unknown member", mint(installationId, jwt, JSON.stringify({ other: 1 }))],
    ["mint, bad signature", mint(installationId, foreign)],
    ["mint, unknown app", mint(installationId, unknownApp)],
    ["mint, unknown installation", mint("11111111-2222-4333-8444-555555555555", jwt)],
    ["mint, malformed id", mint("not-a-uuid", jwt)],
    ["mint, not JSON", mint(installationId, jwt, "permissions=1")],
    ["healthz, wrong method", ["/healthz", { method: "POST" }]],
    ["unknown route", ["/nowhere", {}]]
  ] as ReadonlyArray<readonly [string, readonly [string, RequestInit]]>
}

/** Framing headers differ by server and say nothing about the work done. */
const FRAMING = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"])

const compareAnswers = async (served: Server, plain: Server, list: ReturnType<typeof scenarios>) => {
  const mismatches: Array<string> = []
  const shape = async (port: number, path: string, init: RequestInit) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, init)
    const { text, body, shape } = await answerShape(response)
    return {
      ...shape,
      headers: shape.headers
        .split(",")
        .filter((h) => !FRAMING.has(h))
        .join(","),
      reason: String(body.reason ?? ""),
      newline: text.endsWith("\n")
    }
  }
  for (const [name, [path, init]] of list) {
    const ours = await shape(served.port, path, init)
    const theirs = await shape(plain.port, path, init)
    for (const k of Object.keys(ours) as Array<keyof typeof ours>) {
      if (ours[k] !== theirs[k]) mismatches.push(`${name}: ${k} served=${ours[k]} plain=${theirs[k]}`)
    }
  }
  return mismatches
}

const runBackend = async (backend: Backend): Promise<BackendResult> => {
  const paths: BackendResult["paths"] = {}
  let driver: string = backend.engine
  let mismatches: Array<string> = []
  const database = await backend.database()
  try {
    log(`${backend.name}: starting the served issuer (src/server/cli.ts serve on ${backend.runtime})`)
    const served = await start(
      `${backend.name}-served`,
      backend.runtime,
      join(workerDir, "src", "server", "cli.ts"),
      ["serve"],
      {
        DATABASE_URL: database.url,
        ADMIN_TOKEN: ADMIN,
        ADDRESS_RATE_LIMIT_PER_MINUTE: "0",
        PRINCIPAL_RATE_LIMIT_PER_MINUTE: "0"
      }
    )
    const startLine = readFileSync(served.stdoutFile, "utf8").split("\n")[0] ?? ""
    driver =
      /database (.*?)(, \d+ migration|; operator)/.exec(startLine)?.[1]?.replace(/^.*\(/, "").replace(/\)$/, "") ??
      driver
    // Seeding through the operator API.
    const origin = `http://127.0.0.1:${served.port}`
    const admin = async (path: string, body: unknown) => {
      const r = await fetch(`${origin}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      if (r.status !== 201) throw new Error(`seeding ${path}: ${r.status} ${await r.text()}`)
      return json(r)
    }
    const app = await admin("/admin/apps", { name: "bench", permissions: GRANT, publicKey: key.publicPem })
    const appId = String(app.id)
    const installation = await admin("/admin/installations", {
      appId,
      organizationId: ORGANIZATION_ID,
      permissions: GRANT
    })
    const installationId = String(installation.id)
    let jwt = await signAppJwt(key, appId)
    const tokens: Array<string> = []
    for (let i = 0; i < TOKENS; i++) {
      const r = await fetch(`${origin}/app/installations/${installationId}/accessTokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
        body: MINT_BODY
      })
      if (r.status !== 200) throw new Error(`seeding tokens: ${r.status} ${await r.text()}`)
      tokens.push(String((await json(r)).token))
    }
    log(`${backend.name}: starting the plain server (storage-plain.ts on ${backend.runtime}, same database)`)
    const plain = await start(`${backend.name}-plain`, backend.runtime, join(here, "storage-plain.ts"), [], {
      DATABASE_URL: database.url
    })
    try {
      mismatches = await compareAnswers(
        served,
        plain,
        scenarios(
          appId,
          installationId,
          tokens[0]!,
          jwt,
          await signAppJwt(otherKey, appId),
          await signAppJwt(key, "999999")
        )
      )
      if (mismatches.length > 0) {
        log(`${backend.name}: the served issuer and the plain server answer differently — not timed:`)
        for (const m of mismatches) log(`    ${m}`)
        return { backend, driver, paths, mismatches }
      }
      log(`${backend.name}: same answers from both in ${scenarios("", "", "", "", "", "").length} scenarios`)
      const loads = (server: Server) => ({
        describe: {
          port: server.port,
          concurrency: CONCURRENCY.describe,
          seconds: SECONDS,
          requests: tokens.map((t) =>
            httpRequest(server.port, "GET", "/app/installations/token", { authorization: `Bearer ${t}` })
          )
        },
        mint: {
          port: server.port,
          concurrency: CONCURRENCY.mint,
          seconds: SECONDS,
          requests: [
            httpRequest(
              server.port,
              "POST",
              `/app/installations/${installationId}/accessTokens`,
              { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
              MINT_BODY
            )
          ]
        }
      })
      log(`${backend.name}: warming up (${WARMUP_SECONDS} s of each load on each)`)
      const loadStart = performance.now()
      const handled = new Map<Server, number>([
        [served, 0],
        [plain, 0]
      ])
      for (const server of [served, plain]) {
        for (const path of PATHS) {
          const warm = await drive({ ...loads(server)[path], seconds: WARMUP_SECONDS })
          handled.set(server, handled.get(server)! + warm.ok + warm.failed)
        }
      }
      log(`${backend.name}: ${ROUNDS} rounds × ${SECONDS} s per server and path, interleaved, order flipped each round`)
      for (let round = 0; round < ROUNDS; round++) {
        // Signed here, before the round: the servers' measure holds no signing.
        jwt = await signAppJwt(key, appId)
        for (const path of PATHS) {
          const result = paths[path] ?? { served: [], plain: [] }
          paths[path] = result
          const order = round % 2 === 0 ? ([served, plain] as const) : ([plain, served] as const)
          for (const server of order) {
            const cpu0 = processCpuMs(server.child.pid)
            const load = await drive(loads(server)[path])
            const cpu1 = processCpuMs(server.child.pid)
            const measured: Measured = {
              ...load,
              serverCpuUs:
                cpu0 === undefined || cpu1 === undefined || load.ok === 0
                  ? undefined
                  : ((cpu1 - cpu0) * 1000) / (load.ok + load.failed)
            }
            handled.set(server, handled.get(server)! + measured.ok + measured.failed)
            ;(server === served ? result.served : result.plain).push(measured)
          }
        }
      }
      if (profileDir !== "")
        for (const [server, n] of handled)
          log(
            `profile of ${server.name}: storage-profile.ts ${join(profileDir, server.name)}/CPU.….cpuprofile ` +
              `--after ${((loadStart - server.spawnedAt) / 1000).toFixed(1)} --requests ${n}`
          )
    } finally {
      await stop(plain)
      await stop(served)
    }
  } catch (error) {
    return { backend, driver, paths, mismatches, error: error instanceof Error ? error.message : String(error) }
  } finally {
    await stopAll()
    await database.drop().catch(() => {})
  }
  return { backend, driver, paths, mismatches }
}

// --- the run ----------------------------------------------------------------------------------------

const commit = (() => {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).stdout.trim()
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], {
    cwd: root,
    encoding: "utf8"
  }).stdout.trim()
  return dirty === "" ? head : `${head}+changes`
})()
const loadBefore = loadavg()
const startedAt = new Date()
const selected = BACKENDS.filter((b) => ONLY.length === 0 || ONLY.some((o) => b.name.includes(o)))
const missing = selected.filter((b) => !available(b.runtime)).map((b) => b.name)
if (missing.length > 0) log(`not run (runtime not installed in .tools): ${missing.join(", ")}`)
const runnable = selected.filter((b) => available(b.runtime))
const runtimesUsed = [...new Set(runnable.map((b) => b.runtime))]

/** The generator against a trivial server, `samples` loads at describe's concurrency. */
const ceilingRuntime: Runtime = available("bun") ? "bun" : "node"
const ceilings: Array<LoadResult> = []
const measureCeiling = async (trivial: Server) => {
  const requests = [
    httpRequest(trivial.port, "GET", "/app/installations/token", { authorization: `Bearer crs_${"0".repeat(48)}` })
  ]
  ceilings.push(await drive({ port: trivial.port, concurrency: CONCURRENCY.describe, seconds: SECONDS, requests }))
}

const results: Array<BackendResult> = []
try {
  log(`load generator ceiling: a trivial server (storage-plain.ts BENCH_TRIVIAL=1 on ${ceilingRuntime})`)
  let trivial = await start("trivial", ceilingRuntime, join(here, "storage-plain.ts"), [], { BENCH_TRIVIAL: "1" })
  await drive({
    port: trivial.port,
    concurrency: CONCURRENCY.describe,
    seconds: WARMUP_SECONDS,
    requests: [httpRequest(trivial.port, "GET", "/", {})]
  })
  await measureCeiling(trivial)
  await stop(trivial)
  for (const backend of runnable) {
    const result = await runBackend(backend)
    if (result.error !== undefined) log(`${backend.name}: FAILED: ${result.error}`)
    results.push(result)
  }
  trivial = await start("trivial", ceilingRuntime, join(here, "storage-plain.ts"), [], { BENCH_TRIVIAL: "1" })
  await drive({
    port: trivial.port,
    concurrency: CONCURRENCY.describe,
    seconds: 1,
    requests: [httpRequest(trivial.port, "GET", "/", {})]
  })
  await measureCeiling(trivial)
  await stop(trivial)
} finally {
  await stopAll()
  rmSync(tmp, { recursive: true, force: true })
}

// --- report -----------------------------------------------------------------------------------------

const fmtRate = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—")
const fmtMs = (n: number) => (Number.isFinite(n) ? (n >= 10 ? n.toFixed(0) : n.toFixed(1)) : "—")
const LABEL = { describe: "token use (describe)", mint: "mint" } as const

interface Row {
  readonly backend: string
  readonly engine: string
  readonly runtime: string
  readonly driver: string
  readonly path: "describe" | "mint"
  readonly served: number
  readonly plain: number
  readonly ratio: number
  readonly spread: readonly [number, number]
  readonly servedLatency: readonly [number, number]
  /** Median server CPU per request, µs: served, plain. */
  readonly cpu: readonly [number, number]
  readonly plainLatency: readonly [number, number]
  readonly generatorCpu: number
  readonly failed: number
  readonly pass: boolean
  readonly note: string
}
const rows: Array<Row> = []
for (const r of results) {
  for (const path of PATHS) {
    const p = r.paths[path]
    const served = p?.served ?? []
    const plain = p?.plain ?? []
    const { ratio, spread } = ratioOf(
      served.map((x) => x.rate),
      plain.map((x) => x.rate)
    )
    const failed = [...served, ...plain].reduce((n, x) => n + x.failed, 0)
    const lastFailure = [...served, ...plain].map((x) => x.lastFailure).find((x) => x !== "") ?? ""
    const ok = served.length > 0 && r.error === undefined && r.mismatches.length === 0
    rows.push({
      backend: r.backend.name,
      engine: r.backend.engine,
      runtime: r.backend.runtime,
      driver: r.driver,
      path,
      served: median(served.map((x) => x.rate)),
      plain: median(plain.map((x) => x.rate)),
      ratio,
      spread,
      servedLatency: [median(served.map((x) => x.p50)), median(served.map((x) => x.p99))],
      plainLatency: [median(plain.map((x) => x.p50)), median(plain.map((x) => x.p99))],
      cpu: [
        median(served.flatMap((x) => (x.serverCpuUs === undefined ? [] : [x.serverCpuUs]))),
        median(plain.flatMap((x) => (x.serverCpuUs === undefined ? [] : [x.serverCpuUs])))
      ],
      generatorCpu: Math.max(...[...served, ...plain].map((x) => x.generatorCpu), 0),
      failed,
      pass: ok && failed === 0 && ratio >= TARGET,
      note:
        r.error !== undefined
          ? `error: ${r.error.slice(0, 200)}`
          : r.mismatches.length > 0
            ? `answers differ: ${r.mismatches.slice(0, 3).join("; ")}`
            : failed > 0
              ? `${failed} non-200 answers (last: ${lastFailure.slice(0, 120)})`
              : ""
    })
  }
}
const ceiling = median(ceilings.map((c) => c.rate))
const versions = runtimesUsed.map(versionOf).join(", ")
const loadAfter = loadavg()
const lines: Array<string> = []
lines.push(
  `bench:storage — ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC, commit ${commit}, ${versions}; ` +
    `load average ${loadBefore[0]!.toFixed(2)} before, ${loadAfter[0]!.toFixed(2)} after (${availableParallelism()} cores); ` +
    `${ROUNDS} rounds × ${SECONDS} s per server and path, describe ${CONCURRENCY.describe} and mint ${CONCURRENCY.mint} connections`,
  "",
  "| backend | runtime (driver) | path | served req/s | plain req/s | served ÷ plain [IQR] | served p50 / p99 ms | plain p50 / p99 ms | server CPU µs/req served / plain (plain ÷ served) | target | result |",
  "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"
)
for (const row of rows) {
  lines.push(
    `| ${row.engine} | ${row.runtime} (${row.driver}) | ${LABEL[row.path]} | ${fmtRate(row.served)} | ${fmtRate(row.plain)} | ` +
      `${Number.isFinite(row.ratio) ? `${row.ratio.toFixed(2)}× [${row.spread[0].toFixed(2)}–${row.spread[1].toFixed(2)}]` : "—"} | ` +
      `${fmtMs(row.servedLatency[0])} / ${fmtMs(row.servedLatency[1])} | ${fmtMs(row.plainLatency[0])} / ${fmtMs(row.plainLatency[1])} | ` +
      `${fmtRate(row.cpu[0])} / ${fmtRate(row.cpu[1])}${Number.isFinite(row.cpu[1] / row.cpu[0]) ? ` (${(row.cpu[1] / row.cpu[0]).toFixed(2)}×)` : ""} | ` +
      `≥ ${TARGET}× | ${row.pass ? "PASS" : "FAIL"}${row.note === "" ? "" : ` (${row.note})`} |`
  )
}
const busiest = Math.max(...rows.map((r) => r.generatorCpu), 0)
lines.push(
  "",
  `Load generator (this process, raw keep-alive HTTP/1.1): ${fmtRate(ceiling)} req/s against a trivial server ` +
    `(${ceilingRuntime}, fixed 200, ${CONCURRENCY.describe} connections; ${ceilings.map((c) => fmtRate(c.rate)).join(" and ")} at start and end), ` +
    `p50 ${fmtMs(median(ceilings.map((c) => c.p50)))} ms; its own CPU at most ${(busiest * 100).toFixed(0)}% of a core during the loads above ` +
    `(${(Math.max(...ceilings.map((c) => c.generatorCpu)) * 100).toFixed(0)}% at its ceiling).`
)
const markdown = lines.join("\n")
console.log(markdown)
if (markdownOut) writeFileSync(markdownOut, `${markdown}\n`)
if (jsonOut)
  writeFileSync(
    jsonOut,
    JSON.stringify(
      { startedAt, commit, versions, ceilings, rows, results: results.map((r) => ({ ...r, backend: r.backend.name })) },
      null,
      2
    )
  )
const allPass = rows.length > 0 && rows.every((r) => r.pass)
process.exitCode = allPass ? 0 : 1
