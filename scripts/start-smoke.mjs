#!/usr/bin/env node
// Proves `npm start` on this checkout: starts it on a free loopback port with its local KV and D1
// in a temporary folder, then, over HTTP, checks /healthz and /openapi.json, creates an app with a
// fresh key pair (D1 migrated, ADMIN_TOKEN honoured), installs it, signs a JWT, mints and describes
// an installation token (KV). Stops everything it started. Exit 0 = pass.
import { createSign, generateKeyPairSync, randomUUID } from "node:crypto"
import { startLocalIssuer } from "./local-issuer.mjs"

let issuer
try {
  issuer = await startLocalIssuer()
} catch (e) {
  console.error(`✗ ${e.message}`)
  process.exit(1)
}
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

issuer.stop()
console.log(`✓ npm start: wrangler dev answered on ${base}; app, installation, JWT, token mint and describe all worked`)
process.exit(0)
