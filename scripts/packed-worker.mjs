#!/usr/bin/env node
// Proves the issuer's servers as a user gets them: `npm run pack`, the worker tarball's contents, a
// plain `npm install` of the core and worker tarballs into a new project outside the repository, then
// the issuer served from there — `npx icr-apps-issuer serve` on Node, `deno run -A …/cli.js serve`,
// `bun …/cli.js serve` (SQLite), and the bin itself on a fresh Postgres database — each walked through
// the README's steps over HTTP and stopped with SIGTERM; and that the SDK alone installs no database
// driver. Prints one ✓/✗ line per check; `--report FILE` writes { passed, failed } there for npm test.
// `--packs-since MS` (npm test, after scripts/packed-sdk.mjs has packed): reuse packs/ when its core and
// worker tarballs were written since then, rather than pack again. Exit 0 = every check passed.
import { execFile, spawn, spawnSync } from "node:child_process"
import { generateKeyPairSync, randomBytes, randomUUID, sign } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { freePort, portAccepts, processTree, survivors } from "./local-issuer.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const tool = (name) => join(root, ".tools", "node_modules", ".bin", name)
const option = (name) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : undefined
}
const reportFile = option("--report")
const packsSince = option("--packs-since") === undefined ? undefined : Number(option("--packs-since"))
const started = Date.now()
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`

let passed = 0
let failed = 0
const check = (name, ok, detail = "") => {
  if (ok) passed += 1
  else failed += 1
  console.log(
    `${ok ? "✓" : "✗"} ${name}${ok || detail === "" ? "" : `\n    ${detail.trim().split("\n").join("\n    ")}`}`
  )
  return ok
}

const cleanups = []
const finish = async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  console.log(`packed worker: ${passed} passed, ${failed} failed (${seconds(started)})`)
  if (reportFile) writeFileSync(reportFile, JSON.stringify({ passed, failed }))
  process.exit(failed === 0 ? 0 : 1)
}
/** A check that the rest depends on: on failure, stop here. */
const must = async (name, ok, detail) => check(name, ok, detail) || (await finish())

/** Runs a command to completion; never rejects. */
const exec = (command, args, options = {}) =>
  new Promise((resolve) => {
    execFile(
      command,
      args,
      { timeout: 180_000, maxBuffer: 16 * 1024 * 1024, ...options, env: { ...process.env, ...options.env } },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === "number" ? error.code : 1) : 0,
          stdout,
          out: `${stdout}${stderr}`
        })
    )
  })

// 1. The tarballs: the ones packed-sdk.mjs has just written for this npm test, else npm run pack.
const packs = join(root, "packs")
const tarball = (name) => {
  const file = existsSync(packs)
    ? readdirSync(packs).find((f) => f.startsWith(`icr-apps-${name}-`) && f.endsWith(".tgz"))
    : undefined
  return file === undefined ? undefined : join(packs, file)
}
const fresh = (name) => packsSince !== undefined && tarball(name) && statSync(tarball(name)).mtimeMs >= packsSince
const reused = fresh("core") && fresh("worker")
const packStarted = Date.now()
const packRun = reused ? undefined : spawnSync("npm", ["run", "-s", "pack"], { cwd: root, encoding: "utf8" })
await must(
  reused
    ? "packs/ holds the core and worker tarballs of this run's npm run pack (reused)"
    : `npm run pack writes the core and worker tarballs into packs/ (${seconds(packStarted)})`,
  (reused || packRun.status === 0) && tarball("core") !== undefined && tarball("worker") !== undefined,
  packRun === undefined ? "" : `exit ${packRun.status}\n${packRun.stdout}${packRun.stderr}`
)
const coreTgz = tarball("core")
const workerTgz = tarball("worker")

const work = mkdtempSync(join(tmpdir(), "icr-apps-packed-worker-"))
cleanups.push(() => rmSync(work, { recursive: true, force: true }))
const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]
  )
const unpack = (tgz, name) => {
  const dir = join(work, "unpacked", name)
  mkdirSync(dir, { recursive: true })
  return spawnSync("tar", ["-xzf", tgz, "-C", dir]).status === 0 ? join(dir, "package") : undefined
}

// 2. What the worker tarball holds: the servers compiled, their migrations, a README; nothing else.
/** What the servers import at run time, and nothing more: the dependencies the package must declare (re2js: the broker's policy patterns). */
const runtimeDependencies = ["@effect/platform", "@icr-apps/core", "effect", "jose", "libsql", "postgres", "re2js"]
let workerVersion
{
  const dir = unpack(workerTgz, "worker")
  const problems = dir === undefined ? ["tar could not unpack it"] : []
  if (dir !== undefined) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    workerVersion = pkg.version
    const coreVersion = JSON.parse(readFileSync(join(unpack(coreTgz, "core"), "package.json"), "utf8")).version
    const files = walk(dir).map((f) => relative(dir, f))
    const unwanted = files.filter((f) =>
      /(^|\/)(test|tests|bench|src)\/|\.(test|bench)\.|\.db$|\.sqlite3?$|-(wal|shm)$|tsbuildinfo|vitest|tsconfig|wrangler|worker-configuration|\.dev\.vars|(^|\/)\.env/.test(
        f
      )
    )
    if (unwanted.length > 0) problems.push(`files that are not the servers': ${unwanted.join(", ")}`)
    for (const folder of ["migrations", "migrations-postgres", "migrations-broker"]) {
      const expected = readdirSync(join(root, "packages", "worker", folder)).filter((f) => f.endsWith(".sql"))
      const shipped = files.filter((f) => f.startsWith(`${folder}/`)).map((f) => f.slice(folder.length + 1))
      if (expected.join() !== shipped.sort().join())
        problems.push(`${folder}/ holds ${shipped.join(", ") || "nothing"}`)
    }
    if (!files.includes("README.md")) problems.push("no README.md")
    // --help names it (consistency per engine, backups, moving between engines).
    if (!files.includes("STORAGE.md")) problems.push("no STORAGE.md")
    if ("private" in pkg) problems.push(`"private" is ${pkg.private}`)
    if (JSON.stringify(pkg).includes("workspace:")) problems.push("a workspace: range leaked")
    if (!/^>=\s*20/.test(pkg.engines?.node ?? "")) problems.push(`engines.node is ${pkg.engines?.node}`)
    const dependencies = Object.keys(pkg.dependencies ?? {}).sort()
    if (dependencies.join() !== runtimeDependencies.join())
      problems.push(`dependencies are ${dependencies.join(", ")}; the servers need ${runtimeDependencies.join(", ")}`)
    if (pkg.dependencies?.["@icr-apps/core"] !== `^${coreVersion}`)
      problems.push(
        `@icr-apps/core is ${pkg.dependencies?.["@icr-apps/core"]}, not ^${coreVersion} (the core tarball's)`
      )
    for (const field of ["optionalDependencies", "peerDependencies", "bundleDependencies", "bundledDependencies"])
      if (pkg[field] !== undefined) problems.push(`${field} is set`)
    for (const script of ["preinstall", "install", "postinstall", "prepare"])
      if (pkg.scripts?.[script] !== undefined) problems.push(`an install script: ${script}`)
    // Every export target exists (none is the workspace's sources), and "." is compiled JS with its types.
    const targets = (entry) =>
      typeof entry === "string" ? [entry] : Object.values(entry ?? {}).flatMap((value) => targets(value))
    for (const target of targets(pkg.exports))
      if (!existsSync(join(dir, target))) problems.push(`exports → ${target}: missing`)
    if (!/^\.\/dist\/.*\.js$/.test(pkg.exports?.["."]?.default ?? ""))
      problems.push(`exports["."].default is not dist JS`)
    if (!/^\.\/dist\/.*\.d\.ts$/.test(pkg.exports?.["."]?.types ?? ""))
      problems.push(`exports["."].types is not a .d.ts`)
    const bin = pkg.bin?.["icr-apps-issuer"]
    if (bin === undefined || !existsSync(join(dir, bin))) problems.push(`bin icr-apps-issuer → ${bin}: missing`)
    else {
      if (!readFileSync(join(dir, bin), "utf8").startsWith("#!/usr/bin/env node\n"))
        problems.push("the bin has no shebang")
      if ((statSync(join(dir, bin)).mode & 0o111) === 0) problems.push("the bin is not executable")
    }
    // What the compiled code imports: only declared dependencies and the runtimes' own modules (no
    // Workers-only or dev-only package), and every dependency is used.
    const imported = new Set()
    for (const file of files.filter((f) => f.endsWith(".js"))) {
      const text = readFileSync(join(dir, file), "utf8")
      for (const match of text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm)) {
        const specifier = match[1] ?? match[2]
        if (specifier.startsWith(".")) continue
        if (/^(node|bun):/.test(specifier)) continue
        imported.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0])
      }
    }
    const undeclared = [...imported].filter((name) => !runtimeDependencies.includes(name))
    const unused = runtimeDependencies.filter((name) => !imported.has(name))
    if (undeclared.length > 0) problems.push(`dist imports undeclared packages: ${undeclared.join(", ")}`)
    if (unused.length > 0) problems.push(`dependencies dist never imports: ${unused.join(", ")}`)
    console.log(`  (worker tarball: ${files.length} files; dist imports ${[...imported].sort().join(", ")})`)
  }
  check(
    `worker tarball (${(statSync(workerTgz).size / 1024).toFixed(1)} KiB): the servers compiled, their migrations, ` +
      "a README; no test, bench, source or .db file; dependencies exactly what dist imports",
    problems.length === 0,
    problems.join("\n")
  )
}

// 3. Two projects of a user's, outside the repository, plain npm: the server's, and the SDK's alone.
const project = join(work, "server")
const sdkOnly = join(work, "sdk-only")
for (const dir of [project, sdkOnly]) {
  mkdirSync(dir)
  writeFileSync(join(dir, "package.json"), '{ "name": "my-app", "private": true, "type": "module" }\n')
}
const npmInstall = (cwd, args) => exec("npm", ["install", "--no-audit", "--no-fund", ...args], { cwd })
const installStarted = Date.now()
const [installed, sdkInstalled] = await Promise.all([
  npmInstall(project, [coreTgz, workerTgz]).then((r) => ({ ...r, took: seconds(installStarted) })),
  npmInstall(sdkOnly, [coreTgz]).then((r) => ({ ...r, took: seconds(installStarted) }))
])
{
  const drivers = ["postgres", "pg", "libsql", "better-sqlite3", "sqlite3", "@libsql/client", "@icr-apps/worker"]
  const ls = sdkInstalled.code === 0 ? await exec("npm", ["ls", "--all", "--json"], { cwd: sdkOnly }) : undefined
  const names = new Set()
  const collect = (node) => {
    for (const [name, child] of Object.entries(node?.dependencies ?? {})) {
      names.add(name)
      collect(child)
    }
  }
  let parsed = true
  try {
    collect(JSON.parse(ls?.stdout ?? ""))
  } catch {
    parsed = false
  }
  const found = [...names].filter((name) => drivers.includes(name) || name.startsWith("@libsql/"))
  check(
    `npm install <core tgz> alone (${sdkInstalled.took}): npm ls --all lists ${names.size} packages, no database driver`,
    sdkInstalled.code === 0 && parsed && names.has("@icr-apps/core") && found.length === 0,
    sdkInstalled.code !== 0 ? sdkInstalled.out : found.length > 0 ? `found: ${found.join(", ")}` : (ls?.out ?? "")
  )
}
await must(`npm install <core tgz> <worker tgz> (${installed.took})`, installed.code === 0, installed.out)

// 4. The bin as npx finds it; its --help is the source of truth for the README's environment table.
const cliPath = join("node_modules", "@icr-apps", "worker", "dist", "server", "cli.js")
{
  const help = await exec("npx", ["--no", "--", "icr-apps-issuer", "--help"], { cwd: project })
  const version = await exec("npx", ["--no", "--", "icr-apps-issuer", "--version"], { cwd: project })
  const readme = readFileSync(join(project, "node_modules", "@icr-apps", "worker", "README.md"), "utf8")
  const variables = [...new Set([...help.stdout.matchAll(/^ {2}([A-Z][A-Z_]+)\b/gm)].map((m) => m[1]))]
  const missing = variables.filter((name) => !readme.includes(`\`${name}\``))
  const commands = ["npx icr-apps-issuer serve", `deno run -A ${cliPath} serve`, `bun ${cliPath} serve`].filter(
    (command) => !readme.includes(command)
  )
  check(
    `npx icr-apps-issuer --help and --version (${version.stdout.trim()}); the README names its ${variables.length} variables and the node, deno and bun commands`,
    help.code === 0 &&
      version.code === 0 &&
      version.stdout.trim() === workerVersion &&
      variables.length >= 12 &&
      missing.length === 0 &&
      commands.length === 0,
    `--help: exit ${help.code}; --version: exit ${version.code} ${version.out}\n` +
      `not in the README: ${[...missing, ...commands].join(", ")}\n${help.out}`
  )
}
{
  // The README's "From a program", on an in-memory database and a port the system picks.
  writeFileSync(
    join(project, "program.mjs"),
    `import * as worker from "@icr-apps/worker"
import { currentRuntime, listenerFor, startIssuer } from "@icr-apps/worker"
const server = await startIssuer(process.env, await listenerFor(), currentRuntime())
const health = await (await fetch(server.url + "/healthz")).text()
await server.stop()
console.log(Object.keys(worker).sort().join(","), health.trim())
`
  )
  const program = await exec(process.execPath, ["program.mjs"], {
    cwd: project,
    env: { DATABASE_URL: "sqlite::memory:", PORT: "0", ADMIN_TOKEN: "" }
  })
  check(
    'a program imports "@icr-apps/worker" (exports → dist: startIssuer, startBroker, listenerFor, currentRuntime, ConfigError), starts and stops the issuer',
    program.code === 0 &&
      program.stdout.includes('ConfigError,currentRuntime,listenerFor,startBroker,startIssuer {"status":"ok"}'),
    `exit ${program.code}\n${program.out}`
  )
}

// 5. A fresh Postgres database: ICR_TEST_DATABASE_URL, else the server on 127.0.0.1:5432, else a failure
// that says so (as packages/worker/test/support/postgres.ts, without its embedded fallback). Reached
// with the project's own postgres client (a dependency of the worker package).
const redact = (url) => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.href
  } catch {
    return "(a URL that does not parse)"
  }
}
const postgres = (await import(pathToFileURL(createRequire(join(project, "package.json")).resolve("postgres")).href))
  .default
const withClient = async (url, use) => {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} })
  try {
    return await use(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}
const pgAdmin = process.env.ICR_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres"
const pgSecret = (() => {
  try {
    return decodeURIComponent(new URL(pgAdmin).password)
  } catch {
    return ""
  }
})()
let pgDatabase
{
  const from = process.env.ICR_TEST_DATABASE_URL ? "ICR_TEST_DATABASE_URL" : "127.0.0.1:5432"
  const name = `icr_packed_${process.pid}_${randomBytes(4).toString("hex")}`
  const outcome = await withClient(pgAdmin, async (sql) => {
    const [row] = await sql`show server_version`
    await sql.unsafe(`create database "${name}"`)
    return row.server_version.split(" ")[0]
  }).catch((error) => error)
  if (outcome instanceof Error) {
    const reason = pgSecret === "" ? outcome.message : outcome.message.replaceAll(pgSecret, "***")
    check(
      `a Postgres server (${from})`,
      false,
      `${redact(pgAdmin)}: ${outcome.code ?? ""} ${reason}\n` +
        "set ICR_TEST_DATABASE_URL to a server whose account may CREATE DATABASE, or run one on 127.0.0.1:5432"
    )
  } else {
    const url = new URL(pgAdmin)
    url.pathname = `/${name}`
    pgDatabase = { name, url: url.href }
    cleanups.push(() =>
      withClient(pgAdmin, (sql) => sql.unsafe(`drop database if exists "${name}" with (force)`)).catch((error) =>
        console.error(`could not drop the database ${name}: ${error.message}`)
      )
    )
    check(`a Postgres server (${from}: Postgres ${outcome} at ${redact(pgAdmin)}), a fresh database ${name}`, true)
  }
}

// 6. The issuer served from the project: start, /healthz, the README's walk-through, SIGTERM.
/** The README's walk-through over HTTP; returns what went wrong (nothing: it all held) and the secrets it saw. */
const walkThrough = async (base, adminToken) => {
  const problems = []
  const secrets = [adminToken]
  const call = async (method, path, credential, body) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${credential}`,
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000)
    })
    const text = await response.text()
    let json
    try {
      json = text === "" ? undefined : JSON.parse(text)
    } catch {
      json = text
    }
    return { status: response.status, json }
  }
  const expect = (what, response, status, extra = () => true) => {
    const ok = response.status === status && extra(response.json)
    if (!ok) problems.push(`${what}: ${response.status} ${JSON.stringify(response.json)?.slice(0, 300)}`)
    return ok
  }
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
  const permissions = { organization_info: "VIEW" }
  const app = await call("POST", "/admin/apps", adminToken, {
    name: `packed-worker-${randomBytes(3).toString("hex")}`,
    permissions: { ...permissions, organization_inventory: "REQUEST" },
    publicKey: publicKey.export({ type: "spki", format: "pem" })
  })
  if (!expect("POST /admin/apps", app, 201, (json) => typeof json?.id === "string")) return { problems, secrets }
  const installation = await call("POST", "/admin/installations", adminToken, {
    appId: app.json.id,
    organizationId: randomUUID(),
    permissions
  })
  if (!expect("POST /admin/installations", installation, 201, (json) => typeof json?.id === "string"))
    return { problems, secrets }
  const b64url = (data) => Buffer.from(data).toString("base64url")
  const now = Math.floor(Date.now() / 1000)
  const unsigned = `${b64url(JSON.stringify({ alg: "RS256", typ: "JWT" }))}.${b64url(JSON.stringify({ iss: app.json.id, iat: now - 60, exp: now + 540 }))}`
  const jwt = `${unsigned}.${b64url(sign("sha256", Buffer.from(unsigned), privateKey))}`
  secrets.push(jwt)
  const minted = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt)
  if (!expect("mint an installation token", minted, 200, (json) => /^crs_/.test(json?.token ?? "")))
    return { problems, secrets }
  secrets.push(minted.json.token)
  expect(
    "describe the token (GET /app/installations/token)",
    await call("GET", "/app/installations/token", minted.json.token),
    200,
    (json) => JSON.stringify(json).includes(installation.json.id)
  )
  expect(
    "list installations",
    await call("GET", "/app/installations?limit=10&page=0", jwt),
    200,
    (json) => json?.total === 1 && JSON.stringify(json).includes(installation.json.id)
  )
  expect(
    "revoke (DELETE /app/installations/token)",
    await call("DELETE", "/app/installations/token", minted.json.token),
    204
  )
  expect(
    "the revoked token",
    await call("GET", "/app/installations/token", minted.json.token),
    401,
    (json) => json?.code === "invalid_token"
  )
  return { problems, secrets }
}

/** The environment of a user's shell: this one without what npm (running this script) added. */
const shellEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) => !/^(npm_|INIT_CWD$|DATABASE_URL$|ADMIN_TOKEN$|PORT$|HOST$)/i.test(name)
  )
)
const bin = join(project, "node_modules", ".bin", "icr-apps-issuer")
const targets = [
  {
    label: "node: npx icr-apps-issuer serve (SQLite)",
    command: "npx",
    args: ["--no", "--", "icr-apps-issuer", "serve"],
    npx: true
  },
  {
    label: `deno: deno run -A ${cliPath} serve (SQLite)`,
    command: tool("deno"),
    args: ["run", "-A", cliPath, "serve"]
  },
  { label: `bun: bun ${cliPath} serve (SQLite)`, command: tool("bun"), args: [cliPath, "serve"] },
  ...(pgDatabase === undefined
    ? []
    : [
        {
          label: "node: node_modules/.bin/icr-apps-issuer serve (Postgres)",
          command: bin,
          args: ["serve"],
          postgres: true
        }
      ])
]
for (const [i, target] of targets.entries()) {
  if (target.command !== "npx" && !existsSync(target.command)) {
    check(`${target.label}: starts`, false, `${target.command} is missing: npm test's bootstrap installs it`)
    continue
  }
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const adminToken = randomBytes(24).toString("hex")
  const dbFile = join(work, `db-${i}`, "icr-apps.db")
  mkdirSync(dirname(dbFile))
  const databaseUrl = target.postgres ? pgDatabase.url : `sqlite:${dbFile}`
  const startedAt = Date.now()
  // Its own process group (npx: npm, sh and node), so that whatever is left can be found and killed.
  const child = spawn(target.command, target.args, {
    cwd: project,
    env: {
      ...shellEnv,
      DATABASE_URL: databaseUrl,
      ADMIN_TOKEN: adminToken,
      PORT: String(port),
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1"
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  const stdout = []
  const stderr = []
  child.stdout.on("data", (d) => stdout.push(String(d)))
  child.stderr.on("data", (d) => stderr.push(String(d)))
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)))
  // Every process that holds its output (the server itself, under npx) has ended.
  const closed = new Promise((resolve) => child.once("close", () => resolve(true)))
  const killGroup = () => {
    try {
      process.kill(-child.pid, "SIGKILL")
    } catch {}
  }
  cleanups.push(killGroup)
  const output = () =>
    `--- stdout ---\n${stdout.join("").slice(-3000)}\n--- stderr ---\n${stderr.join("").slice(-3000)}`

  let healthy = false
  let why = ""
  while (Date.now() - startedAt < 60_000) {
    if (child.exitCode !== null || child.signalCode !== null) {
      why = `exited (${child.exitCode ?? child.signalCode}) before answering`
      break
    }
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) })
      const body = await res.text()
      if (res.status === 200 && body.trim() === '{"status":"ok"}') {
        healthy = true
        break
      }
      why = `/healthz: ${res.status} ${body.trim()}`
    } catch (error) {
      why = `/healthz: ${error.cause?.code ?? error.message}`
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  const startupLine =
    stdout
      .join("")
      .split("\n")
      .find((line) => line.includes(" listening on ")) ?? ""
  const database = target.postgres ? `database ${redact(pgDatabase.url)}` : `database sqlite:${dbFile} (`
  if (
    !check(
      `${target.label}: /healthz answers after ${seconds(startedAt)}; the start-up line names ${base} and its database`,
      healthy && startupLine.includes(`listening on ${base} `) && startupLine.includes(database),
      `${why}\nwanted "${database}" in: ${startupLine}\n${output()}`
    )
  ) {
    killGroup()
    continue
  }

  const { problems, secrets } = await walkThrough(base, adminToken).catch((error) => ({
    problems: [`${error.message} ${error.cause?.code ?? ""}`],
    secrets: [adminToken]
  }))
  const logged = `${stdout.join("")}${stderr.join("")}`
  const leaked = [...secrets, ...(target.postgres ? [pgSecret] : [])].filter((s) => s !== "" && logged.includes(s))
  if (leaked.length > 0) problems.push(`${leaked.length} secret(s) (ADMIN_TOKEN, the JWT, the token) in its output`)
  let stored = ""
  if (target.postgres) {
    const rows = await withClient(pgDatabase.url, (sql) => sql`select count(*)::int as n from apps`).catch((e) => e)
    stored = rows instanceof Error ? rows.message : `${rows[0].n} app in Postgres ${pgDatabase.name}`
    if (rows instanceof Error || rows[0].n !== 1) problems.push(`the database ${pgDatabase.name}: ${stored}`)
  } else {
    // Read beside the running server with the project's libsql (SQLite allows it: WAL mode).
    let apps
    try {
      const Database = createRequire(join(project, "package.json"))("libsql")
      const db = new Database(dbFile, { readonly: true })
      apps = db.prepare("select count(*) as n from apps").get().n
      db.close()
      stored = `${apps} app in ${relative(work, dbFile)}`
    } catch (error) {
      stored = `${relative(work, dbFile)}: ${error.message}`
    }
    if (apps !== 1) problems.push(`the database file ${stored}`)
  }
  check(
    `${target.label}: the README's walk-through (app with a fresh RSA key, installation, App JWT, mint, describe, list, revoke → 401 invalid_token; ${stored}; no secret in its output)`,
    problems.length === 0,
    `${problems.join("\n")}\n${output()}`
  )

  // SIGTERM to the process that was started, as a supervisor sends it. npx's npm passes it to `sh -c`
  // only, which dies without passing it on: the server then sees its parent gone and stops by itself.
  const tree = processTree(child.pid)
  const stopAt = Date.now()
  process.kill(child.pid, "SIGTERM")
  const timeout = (ms) => new Promise((resolve) => setTimeout(() => resolve("timeout"), ms))
  const code = await Promise.race([exited, timeout(40_000)])
  const allClosed = await Promise.race([closed, timeout(Math.max(0, 40_000 - (Date.now() - stopAt)))])
  const left = survivors(tree)
  const portFree = await portAccepts(port)
  const log = stderr.join("")
  const graceful =
    log.includes("icr-apps-issuer: stopped") &&
    (target.npx
      ? /icr-apps-issuer: (SIGTERM|the process that started it is gone): finishing requests in flight/.test(log)
      : log.includes("icr-apps-issuer: SIGTERM: finishing requests in flight, then stopping"))
  killGroup()
  check(
    target.npx
      ? `${target.label}: SIGTERM to npx → the server stops gracefully (npm itself ends by ${code}), nothing left running, the port free (${seconds(stopAt)})`
      : `${target.label}: SIGTERM → exit 0, stopped gracefully, nothing left running, the port free (${seconds(stopAt)})`,
    (target.npx || code === 0) && graceful && allClosed === true && left.length === 0 && portFree,
    `exit ${code}; output closed: ${allClosed}; port free: ${portFree}; still running: ${left.map(([pid, args]) => `${pid} ${args}`).join("; ") || "nothing"}\n${output()}`
  )
}

await finish()
