#!/usr/bin/env node
// Proves `npm start` on this checkout: starts it on a free loopback port with its local KV and D1
// in a temporary folder, then, over HTTP, checks /healthz and /openapi.json, creates an app with a
// fresh key pair (D1 migrated, ADMIN_TOKEN honoured), installs it, signs a JWT, mints and describes
// an installation token (KV); runs the README's walk-through twice against it; checks it printed one
// banner and no wrangler output, and that a rebuild of core's dist meanwhile does not reach it. Then it stops `npm start` as a process manager does (SIGTERM to npm's
// pid), and two more starts as a terminal's Ctrl-C does (SIGINT to npm's process group) and as a
// parent that dies does (npm SIGKILLed): each time npm must exit and, within a bound, no process of
// its tree may run and both ports (the issuer's and the broker's) must take a new listener. Exit 0 = pass.
import { createSign, generateKeyPairSync, randomUUID } from "node:crypto"
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { portAccepts, processTree, startLocalIssuer, survivors } from "./local-issuer.mjs"

const started = async () => {
  try {
    return await startLocalIssuer()
  } catch (e) {
    console.error(`✗ ${e.message}`)
    process.exit(1)
  }
}
let issuer = await started()
const { base, admin, call } = issuer

const fail = (why) => {
  console.error(`✗ npm start: ${why}\n--- its output ---\n${issuer.output()}`)
  issuer.stop()
  process.exit(1)
}
const expect = (ok, why) => ok || fail(why)

const openapi = await (await fetch(`${base}/openapi.json`)).json()
expect(Object.keys(openapi.paths).length === 15, `openapi.json lists ${Object.keys(openapi.paths).length} paths`)

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
const app = await admin("POST", "/admin/apps", {
  name: "start-smoke",
  permissions: { organization_info: "VIEW" },
  publicKey: publicKey.export({ type: "spki", format: "pem" })
})
expect(app.status === 201, `POST /admin/apps answered ${app.status}`)
const installation = await admin("POST", "/admin/installations", {
  appId: app.json.id,
  organizationId: randomUUID(),
  permissions: { organization_info: "VIEW" }
})
expect(installation.status === 201, `POST /admin/installations answered ${installation.status}`)

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url")
const now = Math.floor(Date.now() / 1000)
const input = `${b64url({ alg: "RS256", typ: "JWT" })}.${b64url({ iss: app.json.id, iat: now - 60, exp: now + 540 })}`
const jwt = `${input}.${createSign("RSA-SHA256").update(input).sign(privateKey).toString("base64url")}`
const minted = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt)
expect(minted.status === 200 && /^crs_[0-9a-f]{48}$/.test(minted.json.token), `mint answered ${minted.status}`)
const described = await call("GET", "/app/installations/token", minted.json.token)
expect(described.status === 200 && described.json.installationId === installation.json.id, "describe")

console.log(`✓ npm start: wrangler dev answered on ${base}; app, installation, JWT, token mint and describe all worked`)

// What it printed: one banner once both answer, and none of wrangler's own output (that is in a log file).
const bannerBy = Date.now() + 60_000
while (!issuer.output().includes("✓ icr-apps is running") && Date.now() < bannerBy) await sleep(250)
const printed = issuer.output()
expect(
  printed.includes("✓ icr-apps is running") &&
    printed.includes(`issuer       ${base}`) &&
    printed.includes(`broker       http://127.0.0.1:${issuer.port + 1}`) &&
    /ADMIN_TOKEN {2}from your environment/.test(printed) &&
    /logs {9}\S+npm-start\.log/.test(printed),
  "no banner naming the issuer, the broker, ADMIN_TOKEN and the log"
)
expect(
  !/getaddrinfo|\[wrangler:|Migrations to be applied|⛅️|│/.test(printed),
  "wrangler's own output reached the terminal"
)
expect(!printed.includes(issuer.adminToken), "the banner printed the ADMIN_TOKEN it was given")

// The README's "Try it" block, pasted twice as a new user would (bash, curl, openssl): the same ids both
// times, nothing on standard error but openssl's key-generation dots.
const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "README.md"), "utf8")
const tryIt = /```sh\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("## Try it")))[1]
const folder = mkdtempSync(join(tmpdir(), "icr-apps-try-it-"))
const paste = () =>
  spawnSync("bash", ["-c", `${tryIt.replace(/^API=.*$/m, `API=${base}`)}\necho "ids: $APP_ID $INSTALLATION_ID"`], {
    cwd: folder,
    env: { ...process.env, ADMIN_TOKEN: issuer.adminToken },
    encoding: "utf8",
    timeout: 60_000
  })
const runs = [paste(), paste()]
rmSync(folder, { recursive: true, force: true })
const idsOf = (run) => /^ids: (\S+) (\S+)$/m.exec(run.stdout)?.slice(1).join(" ")
for (const [i, run] of runs.entries()) {
  const errors = run.stderr.split("\n").filter((line) => !/^[.+*]*$/.test(line))
  expect(
    run.status === 0 && errors.length === 0 && idsOf(run) !== undefined && !/undefined/.test(run.stdout),
    `the README's walk-through, run ${i + 1}: exit ${run.status}\n${run.stdout}\n${errors.join("\n")}`
  )
}
expect(
  idsOf(runs[0]) === idsOf(runs[1]),
  `the walk-through's second run gave other ids: ${runs.map(idsOf).join(" / ")}`
)
console.log(`✓ npm start: the README's walk-through, run twice, gave the same app and installation (${idsOf(runs[0])})`)

// A build meanwhile (npm test and npm run pack delete packages/core/dist, then rebuild it) never reaches
// what npm start serves: it bundled a copy of its own.
const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "packages", "core", "dist")
renameSync(dist, `${dist}.start-smoke`)
let during
try {
  await sleep(4_000)
  during = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt)
} catch (e) {
  during = { status: String(e) }
} finally {
  if (existsSync(`${dist}.start-smoke`)) renameSync(`${dist}.start-smoke`, dist)
}
expect(during.status === 200, `with packages/core/dist gone (a rebuild), a mint answered ${during.status}`)
console.log("✓ npm start: one banner, no wrangler output; a rebuild of packages/core/dist does not reach it")

// A second npm start on the same ports refuses before it builds, migrates or logs anything: no banner,
// no token that is not the running one's, and the running instance keeps answering its own token.
{
  const second = spawnSync("npm", ["start", "--silent"], {
    cwd: join(dirname(fileURLToPath(import.meta.url)), ".."),
    env: { ...process.env, PORT: String(issuer.port), ADMIN_TOKEN: "" },
    encoding: "utf8",
    timeout: 60_000
  })
  const said = `${second.stdout}${second.stderr}`
  expect(
    second.status === 1 && /already in use/.test(said) && !/ADMIN_TOKEN|running/.test(second.stdout),
    `a second npm start on port ${issuer.port}: exit ${second.status}\n${said}`
  )
  const still = await admin("GET", "/admin/apps")
  expect(still.status === 200, `after a second npm start, the first answered its own token ${still.status}`)
  console.log("✓ npm start: a second one on the same ports refuses at once, and the first keeps serving")
}

/** Whether anything answers HTTP at `url`. */
const answers = (url) =>
  fetch(url).then(
    () => true,
    () => false
  )

/** How long `npm start` may take, after the signal, to exit with its whole tree and free both ports. */
const stopWithinMs = 20_000

/**
 * Signals the running `npm start` with `send(pid)`; fails unless, within stopWithinMs, npm has exited,
 * no process of its tree (listed before the signal) runs and both ports take a new listener. Resolves
 * with npm's exit status and how long the tree took to go.
 */
const stopsCleanly = async (what, send) => {
  // The broker starts beside the issuer: once it answers, all of its processes are in the list too.
  const brokerBy = Date.now() + 60_000
  while (!(await answers(`http://127.0.0.1:${issuer.port + 1}/healthz`))) {
    expect(Date.now() < brokerBy, `${what}: the broker did not answer on port ${issuer.port + 1} within 60 s`)
    await sleep(250)
  }
  // So does the example resource (PORT + 3).
  while (!(await answers(`http://127.0.0.1:${issuer.port + 3}/healthz`))) {
    expect(Date.now() < brokerBy, `${what}: the resource did not answer on port ${issuer.port + 3} within 60 s`)
    await sleep(250)
  }
  const tree = processTree(issuer.pid)
  const listed = [...tree].map(([pid, args]) => `  ${pid} ${args}`).join("\n")
  const count = (pattern) => [...tree.values()].filter((args) => pattern.test(args)).length
  // Without both wranglers and their workerds in the list, "none of them runs" would prove nothing.
  expect(
    count(/wrangler-dist\/cli\.js dev/) === 3 && count(/\/workerd serve/) >= 3,
    `${what}: the process tree lacks three wranglers (issuer, broker, resource) and their workerds:\n${listed}`
  )
  const signalled = Date.now()
  send(issuer.pid)
  const status = await Promise.race([issuer.exited, sleep(stopWithinMs)])
  expect(status !== undefined, `${what}: npm start still runs ${stopWithinMs / 1000} s later`)
  let left = survivors(tree)
  while (left.length > 0 && Date.now() - signalled < stopWithinMs) {
    await sleep(100)
    left = survivors(tree)
  }
  const ms = Date.now() - signalled
  const names = left.map(([pid, args]) => `  ${pid} ${args}`).join("\n")
  expect(left.length === 0, `${what}: ${left.length} of its ${tree.size} processes still run ${ms} ms later:\n${names}`)
  for (const port of [issuer.port, issuer.port + 1, issuer.port + 3])
    expect(await portAccepts(port), `${what}: port ${port} takes no new listener ${ms} ms later`)
  // scripts/icr.mjs says how it stopped: both groups gone before its grace period ran out (no SIGKILL).
  // Its last words are read once the output has ended (the pipe may still hold them).
  const ended = await Promise.race([issuer.closed, sleep(Math.max(0, signalled + stopWithinMs - Date.now()))])
  expect(ended === true, `${what}: its output had not ended ${stopWithinMs / 1000} s later`)
  const said = issuer.output()
  expect(
    /» .*: stopping wrangler \(issuer, broker and example resource\)\n/.test(said) &&
      /» wrangler stopped \(issuer, broker and example resource\) in \d+ ms\n/.test(said),
    `${what}: scripts/icr.mjs did not report a clean stop; it said:\n${said
      .split("\n")
      .filter((line) => line.startsWith("» "))
      .join("\n")}`
  )
  issuer.stop()
  console.log(`  ${what}: npm exited (${status.signal ?? status.code}); its ${tree.size} processes gone in ${ms} ms`)
  return status
}

await stopsCleanly("SIGTERM to npm's pid", (pid) => process.kill(pid, "SIGTERM"))
issuer = await started()
await stopsCleanly("SIGINT to npm's process group (Ctrl-C)", (pid) => process.kill(-pid, "SIGINT"))
issuer = await started()
await stopsCleanly("npm SIGKILLed (the parent gone)", (pid) => process.kill(pid, "SIGKILL"))
console.log(
  "✓ npm start: stopped by SIGTERM, by Ctrl-C and by losing its parent, it left no process and both ports free"
)
process.exit(0)
