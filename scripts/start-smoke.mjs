#!/usr/bin/env node
// Proves `npm start` on this checkout: starts it on a free loopback port with its local KV and D1
// in a temporary folder, then, over HTTP, checks /healthz and /openapi.json, creates an app with a
// fresh key pair (D1 migrated, ADMIN_TOKEN honoured), installs it, signs a JWT, mints and describes
// an installation token (KV). Stops everything it started. Exit 0 = pass.
import { spawn } from "node:child_process"
import { createSign, generateKeyPairSync, randomBytes, randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const port = await new Promise((resolve) => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
})
const adminToken = randomBytes(16).toString("hex")
const state = mkdtempSync(join(tmpdir(), "icr-apps-start-"))
const base = `http://127.0.0.1:${port}`
const output = []
const child = spawn(process.execPath, [join(root, "scripts", "icr.mjs"), "start"], {
  cwd: root,
  env: { ...process.env, PORT: String(port), ADMIN_TOKEN: adminToken, ICR_PERSIST_TO: state },
  stdio: ["ignore", "pipe", "pipe"],
  detached: true
})
child.stdout.on("data", (d) => output.push(String(d)))
child.stderr.on("data", (d) => output.push(String(d)))

const stop = () => {
  try {
    process.kill(-child.pid, "SIGTERM")
  } catch {}
}
const fail = (why) => {
  console.error(`✗ npm start: ${why}\n--- its output ---\n${output.join("").slice(-4000)}`)
  stop()
  rmSync(state, { recursive: true, force: true })
  process.exit(1)
}
const expect = (ok, why) => ok || fail(why)

const deadline = Date.now() + 120_000
for (;;) {
  if (child.exitCode !== null) fail(`exited early with ${child.exitCode}`)
  if (Date.now() > deadline) fail("no answer on /healthz within 120 s")
  try {
    const res = await fetch(`${base}/healthz`)
    if (res.ok) {
      expect(JSON.stringify(await res.json()) === '{"status":"ok"}', "/healthz body")
      break
    }
  } catch {}
  await new Promise((r) => setTimeout(r, 500))
}

const call = async (method, path, token, body) => {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: res.status, json: await res.json().catch(() => undefined) }
}

const openapi = await (await fetch(`${base}/openapi.json`)).json()
expect(Object.keys(openapi.paths).length === 13, `openapi.json lists ${Object.keys(openapi.paths).length} paths`)

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
const app = await call("POST", "/admin/apps", adminToken, {
  name: "start-smoke",
  permissions: { organization_info: "VIEW" },
  publicKey: publicKey.export({ type: "spki", format: "pem" })
})
expect(app.status === 201, `POST /admin/apps answered ${app.status}`)
const installation = await call("POST", "/admin/installations", adminToken, {
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

stop()
rmSync(state, { recursive: true, force: true })
console.log(`✓ npm start: wrangler dev answered on ${base}; app, installation, JWT, token mint and describe all worked`)
process.exit(0)
