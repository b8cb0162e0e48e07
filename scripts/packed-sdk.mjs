#!/usr/bin/env node
// Proves the SDK as a user gets it: `npm run pack`, the tarballs' contents, a plain `npm install` of
// them into a new project outside the repository, then examples/ (Promise and Effect; the right key
// and a wrong one) under node, `deno run -A` and bun, the `icr-apps` bin (and the repository's
// `npm run icr-apps` from outside the clone), all against one `npm start`; the testkit's fake issuer.
// Prints one ✓/✗ line per check; `--report FILE` writes { passed, failed } there for npm test.
// Exit 0 = every check passed.
import { execFile, spawnSync } from "node:child_process"
import { generateKeyPairSync, randomUUID } from "node:crypto"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { startLocalIssuer } from "./local-issuer.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const tool = (name) => join(root, ".tools", "node_modules", ".bin", name)
const reportIndex = process.argv.indexOf("--report")
const reportFile = reportIndex > 0 ? process.argv[reportIndex + 1] : undefined
const started = Date.now()

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
const finish = () => {
  for (const cleanup of cleanups.reverse()) cleanup()
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`packed SDK: ${passed} passed, ${failed} failed (${seconds} s)`)
  if (reportFile) writeFileSync(reportFile, JSON.stringify({ passed, failed }))
  process.exit(failed === 0 ? 0 : 1)
}
/** A check that the rest depends on: on failure, stop here. */
const must = (name, ok, detail) => check(name, ok, detail) || finish()

/** Runs a command to completion; never rejects. */
const exec = (command, args, options = {}) =>
  new Promise((resolve) => {
    execFile(
      command,
      args,
      { timeout: 120_000, maxBuffer: 16 * 1024 * 1024, ...options, env: { ...process.env, ...options.env } },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, out: `${stdout}${stderr}` })
    )
  })

// 1. npm run pack, as a user runs it.
const packRun = spawnSync("npm", ["run", "-s", "pack"], { cwd: root, encoding: "utf8" })
const packs = join(root, "packs")
const tarball = (name) =>
  existsSync(packs)
    ? readdirSync(packs).find((f) => f.startsWith(`icr-apps-${name}-`) && f.endsWith(".tgz"))
    : undefined
must(
  "npm run pack writes the core and testkit tarballs into packs/",
  packRun.status === 0 && tarball("core") !== undefined && tarball("testkit") !== undefined,
  `exit ${packRun.status}\n${packRun.stdout}${packRun.stderr}`
)
const coreTgz = join(packs, tarball("core"))
const testkitTgz = join(packs, tarball("testkit"))

// 2. What the tarballs hold.
const work = mkdtempSync(join(tmpdir(), "icr-apps-packed-"))
cleanups.push(() => rmSync(work, { recursive: true, force: true }))
const unpack = (tgz, name) => {
  const dir = join(work, "unpacked", name)
  mkdirSync(dir, { recursive: true })
  const result = spawnSync("tar", ["-xzf", tgz, "-C", dir])
  if (result.status !== 0) return undefined
  return join(dir, "package")
}
const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]
  )
/** Problems common to both tarballs: dev files, workspace: ranges, exports that do not point at dist. */
const commonProblems = (dir, pkg) => {
  const problems = []
  const files = walk(dir).map((f) => relative(dir, f))
  const dev = files.filter((f) => /(^|\/)(test|bench|runtimes)\/|\.test\.|tsbuildinfo|vitest\.config|tsconfig/.test(f))
  if (dev.length > 0) problems.push(`dev files: ${dev.join(", ")}`)
  if (JSON.stringify(pkg).includes("workspace:")) problems.push("a workspace: range leaked")
  for (const [subpath, entry] of Object.entries(pkg.exports)) {
    if (typeof entry === "string") continue
    if (!/^\.\/dist\/.*\.js$/.test(entry.default)) problems.push(`exports["${subpath}"].default is ${entry.default}`)
    if (!/^\.\/dist\/.*\.d\.ts$/.test(entry.types)) problems.push(`exports["${subpath}"].types is ${entry.types}`)
    const concrete = (target) => join(dir, target.replace("*", "index"))
    if (!subpath.includes("*") && !existsSync(concrete(entry.default))) problems.push(`${entry.default} is missing`)
  }
  const js = files.filter((f) => f.startsWith("dist/") && f.endsWith(".js"))
  if (js.length === 0) problems.push("no compiled .js under dist/")
  for (const f of js) {
    if (!files.includes(`${f}.map`)) problems.push(`${f} has no source map`)
    if (!f.startsWith("dist/cli/") && !files.includes(f.replace(/\.js$/, ".d.ts"))) problems.push(`${f} has no .d.ts`)
  }
  for (const peer of ["effect", "@effect/platform"]) {
    if (pkg.dependencies?.[peer]) problems.push(`${peer} is a dependency, not a peer`)
  }
  if (!/^\^3\.\d+/.test(pkg.peerDependencies?.effect ?? "")) problems.push("effect is not a ^3 peer")
  if (!/^\^0\.\d+/.test(pkg.peerDependencies?.["@effect/platform"] ?? ""))
    problems.push("@effect/platform is not a peer")
  return problems
}
{
  const dir = unpack(coreTgz, "core")
  const problems = dir === undefined ? ["tar could not unpack it"] : []
  if (dir) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    problems.push(...commonProblems(dir, pkg))
    for (const subpath of [".", "./api/*", "./issuer/*", "./sdk/*"])
      if (!pkg.exports[subpath]) problems.push(`no exports["${subpath}"]`)
    if (!pkg.dependencies?.jose) problems.push("jose is not a dependency")
    const bin = pkg.bin?.["icr-apps"]
    const binFile = bin && join(dir, bin)
    if (!binFile || !existsSync(binFile)) problems.push(`bin icr-apps → ${bin} is missing`)
    else {
      if (!readFileSync(binFile, "utf8").startsWith("#!/usr/bin/env node\n")) problems.push("the bin has no shebang")
      if ((statSync(binFile).mode & 0o111) === 0) problems.push("the bin is not executable")
    }
  }
  check(`core tarball (${(statSync(coreTgz).size / 1024).toFixed(1)} KiB)`, problems.length === 0, problems.join("\n"))
}
{
  const dir = unpack(testkitTgz, "testkit")
  const problems = dir === undefined ? ["tar could not unpack it"] : []
  if (dir) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    problems.push(...commonProblems(dir, pkg))
    // The SDK is a peer (the app has it: one copy, one version), as a version range, never a dependency.
    if (!/^[\^~]?\d+\.\d+\.\d+$/.test(pkg.peerDependencies?.["@icr-apps/core"] ?? ""))
      problems.push(`peer @icr-apps/core is ${pkg.peerDependencies?.["@icr-apps/core"]}, not a version range`)
    if (pkg.dependencies?.["@icr-apps/core"]) problems.push("@icr-apps/core is a dependency, not a peer")
    if (pkg.dependencies?.vitest || (pkg.peerDependencies?.vitest && !pkg.peerDependenciesMeta?.vitest?.optional))
      problems.push("vitest is required, not an optional peer")
  }
  check(
    `testkit tarball (${(statSync(testkitTgz).size / 1024).toFixed(1)} KiB)`,
    problems.length === 0,
    problems.join("\n")
  )
}

// 3. A project of the user's, outside the repository: plain npm, while npm start comes up.
const project = join(work, "app")
mkdirSync(project)
writeFileSync(join(project, "package.json"), '{ "name": "my-app", "private": true, "type": "module" }\n')
for (const example of ["promise.mjs", "effect.mjs", "resource.mjs"])
  copyFileSync(join(root, "examples", example), join(project, example))
const npmInstall = (args) => exec("npm", ["install", "--no-audit", "--no-fund", ...args], { cwd: project })
const [installed, issuerOrError] = await Promise.all([
  npmInstall([coreTgz, testkitTgz, "effect@3.22.4", "@effect/platform@0.97.2"]),
  startLocalIssuer().catch((e) => e)
])
if (!(issuerOrError instanceof Error)) cleanups.push(() => issuerOrError.stop())
must("npm install <core tgz> <testkit tgz> effect@3.22.4 @effect/platform@0.97.2", installed.code === 0, installed.out)
must(
  "npm start answers on /healthz",
  !(issuerOrError instanceof Error),
  issuerOrError instanceof Error ? issuerOrError.message : ""
)
const issuer = issuerOrError

// 4. An app with a key pair, installed in an organization, through the operator API.
const pair = () => generateKeyPairSync("rsa", { modulusLength: 2048 })
const { publicKey, privateKey } = pair()
const pem = privateKey.export({ type: "pkcs8", format: "pem" })
const wrongPem = pair().privateKey.export({ type: "pkcs8", format: "pem" })
writeFileSync(join(project, "app.pem"), pem, { mode: 0o600 })
writeFileSync(join(project, "wrong.pem"), wrongPem, { mode: 0o600 })
const app = await issuer.admin("POST", "/admin/apps", {
  name: "packed-sdk",
  permissions: { organization_info: "VIEW" },
  publicKey: publicKey.export({ type: "spki", format: "pem" })
})
const installation =
  app.status === 201
    ? await issuer.admin("POST", "/admin/installations", {
        appId: app.json.id,
        organizationId: randomUUID(),
        permissions: { organization_info: "VIEW" }
      })
    : { status: 0 }
must(
  "an app and an installation, through the operator API",
  installation.status === 201,
  `POST /admin/apps ${app.status}, POST /admin/installations ${installation.status}`
)
const appEnv = {
  ICR_APP_ID: app.json.id,
  ICR_BASE_URL: issuer.base,
  ICR_INSTALLATION_ID: installation.json.id,
  ICR_PRIVATE_KEY: "",
  ICR_PRIVATE_KEY_FILE: "",
  NO_COLOR: "1",
  DENO_NO_UPDATE_CHECK: "1"
}

// 5. The examples, unchanged, on each runtime; the key as PEM text for one, as a file for the other.
const runtimes = [
  ["node", process.execPath, []],
  ["deno", tool("deno"), ["run", "-A"]],
  ["bun", tool("bun"), []]
]
const keyAs = {
  "promise.mjs": (key) => ({ ICR_PRIVATE_KEY: key }),
  "effect.mjs": (_key, file) => ({ ICR_PRIVATE_KEY_FILE: file })
}
const wrongKey = [/"_tag":"InvalidJwt"/, /"code":"invalid_jwt"/, /"reason":"invalid_signature"/]
for (const [runtime, command, args] of runtimes) {
  if (!check(`${runtime} is installed (${command})`, existsSync(command), "run npm test: its bootstrap installs it"))
    continue
  for (const example of ["promise.mjs", "effect.mjs"]) {
    const right = await exec(command, [...args, example], {
      cwd: project,
      env: { ...appEnv, ...keyAs[example](pem, "app.pem") }
    })
    check(
      `${runtime} ${example}: a token and the installation`,
      right.code === 0 && /crs_/.test(right.out) && right.out.includes(installation.json.id),
      `exit ${right.code}\n${right.out}`
    )
    const wrong = await exec(command, [...args, example], {
      cwd: project,
      env: { ...appEnv, ...keyAs[example](wrongPem, "wrong.pem") }
    })
    check(
      `${runtime} ${example}: a wrong key is InvalidJwt, code invalid_jwt, reason invalid_signature, exit 1`,
      wrong.code === 1 && wrongKey.every((pattern) => pattern.test(wrong.out)),
      `exit ${wrong.code}\n${wrong.out}`
    )
  }
}

// 5b. The authenticated client against the example resource npm start serves on PORT + 3 (SPEC §10): every
// installation's inventory through its installation client, an operator revokeTokens between two calls
// survived (one re-mint, no error), and a typed 403 for a level the narrowed token lacks.
const inventoryApp = await issuer.admin("POST", "/admin/apps", {
  name: "packed-sdk-resource",
  permissions: { organization_inventory: "REQUEST" },
  publicKey: publicKey.export({ type: "spki", format: "pem" })
})
const organizationIds = [randomUUID(), randomUUID()]
const inventoryInstallations = []
for (const organizationId of inventoryApp.status === 201 ? organizationIds : []) {
  const made = await issuer.admin("POST", "/admin/installations", {
    appId: inventoryApp.json.id,
    organizationId,
    permissions: { organization_inventory: "REQUEST" }
  })
  if (made.status === 201) inventoryInstallations.push(made.json.id)
}
if (
  check(
    "an app with organization_inventory: REQUEST, installed in two organizations",
    inventoryInstallations.length === 2,
    `POST /admin/apps ${inventoryApp.status}`
  )
) {
  const resourceEnv = {
    ...appEnv,
    ICR_APP_ID: inventoryApp.json.id,
    ICR_BASE_URL: `http://127.0.0.1:${issuer.port + 3}`,
    ICR_ISSUER_URL: issuer.base,
    ADMIN_TOKEN: issuer.adminToken,
    ICR_PRIVATE_KEY: pem
  }
  // npm start was waited for on the issuer's port only: the resource's wrangler may still be starting.
  const resourceUp = Date.now() + 60_000
  while (Date.now() < resourceUp) {
    const up = await fetch(`${resourceEnv.ICR_BASE_URL}/healthz`).then(
      (r) => r.ok,
      () => false
    )
    if (up) break
    await new Promise((r) => setTimeout(r, 500))
  }
  for (const [runtime, command, args] of runtimes) {
    if (!existsSync(command)) continue
    const ran = await exec(command, [...args, "resource.mjs"], { cwd: project, env: resourceEnv })
    const served = inventoryInstallations.every((id) => ran.out.includes(`installation ${id}: `))
    const refused = (
      ran.out.match(/narrowed to VIEW, POST: 403 insufficient_permissions \(organization_inventory REQUEST\)/g) ?? []
    ).length
    check(
      `${runtime} resource.mjs: each installation's inventory through its client, a revokeTokens survived, a typed 403`,
      ran.code === 0 && served && refused === 2,
      `exit ${ran.code}\n${ran.out}`
    )
  }
}

// 6. The CLI: the bin, as npx finds it in the project; the repository's script, from outside the clone.
const help = await exec("npx", ["--no", "--", "icr-apps", "--help"], { cwd: project })
check("npx icr-apps --help", help.code === 0 && help.out.includes("usage:"), `exit ${help.code}\n${help.out}`)
const listed = await exec(
  "npx",
  ["--no", "--", "icr-apps", "installations", "--app-id", app.json.id, "--key", "app.pem", "--base-url", issuer.base],
  { cwd: project, env: { ICR_PRIVATE_KEY: "", ICR_BASE_URL: "" } }
)
check(
  "npx icr-apps installations lists the installation",
  listed.code === 0 && listed.out.includes(installation.json.id),
  `exit ${listed.code}\n${listed.out}`
)

const fromRepo = (args) => exec("npm", ["--prefix", root, "run", "-s", "icr-apps", "--", ...args], { cwd: project })
const repoHelp = await fromRepo(["--help"])
const repoFail = await fromRepo(["jwt", "--app-id", app.json.id, "--key", "missing.pem", "--base-url", issuer.base])
check(
  "npm --prefix <repo> run -s icr-apps, from outside the clone: runs, and a failure says why",
  repoHelp.code === 0 && repoHelp.out.includes("usage:") && repoFail.code !== 0 && /missing\.pem/.test(repoFail.out),
  `--help: exit ${repoHelp.code}\n${repoHelp.out}\njwt with a missing key: exit ${repoFail.code}\n${repoFail.out}`
)

// 7. The testkit from its tarball: the fake issuer in memory, the SDK over its fetch.
writeFileSync(
  join(project, "testkit.mjs"),
  `import { createIcrAppsClient } from "@icr-apps/core"
import { generateAppKeyPair, makeFakeIssuer } from "@icr-apps/testkit"
const issuer = makeFakeIssuer()
const keys = await generateAppKeyPair()
const permissions = { organization_info: "VIEW" }
const app = await issuer.admin("POST", "/admin/apps", { name: "t", permissions, publicKey: keys.publicPem })
const inst = await issuer.admin("POST", "/admin/installations", { appId: app.id, organizationId: crypto.randomUUID(), permissions })
const icr = createIcrAppsClient({ appId: app.id, privateKey: keys.privatePem, baseUrl: "http://icr.test", fetch: issuer.fetch })
console.log((await icr.getInstallationToken(inst.id)).startsWith("crs_") ? "testkit ok" : "no token")
await icr.dispose()
`
)
const testkit = await exec(process.execPath, ["testkit.mjs"], { cwd: project })
check(
  "node: @icr-apps/testkit's fake issuer serves the SDK",
  testkit.code === 0 && testkit.out.includes("testkit ok"),
  testkit.out
)

// 8. An Effect team's test of its own service, from the testkit README: beside @effect/vitest 0.30
// (which wants vitest ^3.2) plain npm must not refuse (ERESOLVE), and the test must pass there.
const beside = await npmInstall(["@effect/vitest@0.30.0", "vitest@3.2"])
if (
  check(
    "npm installs the testkit beside @effect/vitest@0.30.0 + vitest@3.2 (no ERESOLVE)",
    beside.code === 0,
    beside.out
  )
) {
  mkdirSync(join(project, "test"))
  for (const file of readdirSync(join(root, "examples", "testkit")).filter((f) => f.endsWith(".ts")))
    copyFileSync(join(root, "examples", "testkit", file), join(project, "test", file))
  const vitest = await exec("npx", ["--no", "--", "vitest", "run", "--reporter=verbose"], {
    cwd: project,
    env: { NO_COLOR: "1", CI: "1" }
  })
  check(
    "vitest 3.2 + @effect/vitest in the project: examples/testkit passes (FakeIssuer.layer, aimed fault, TestClock, log)",
    vitest.code === 0 && /Tests\s+\d+ passed/.test(vitest.out) && !/\d+ failed/.test(vitest.out),
    `exit ${vitest.code}\n${vitest.out.slice(-3000)}`
  )
}

finish()
