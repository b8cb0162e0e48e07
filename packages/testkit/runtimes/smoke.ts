/**
 * One end-to-end pass over the issuer and the SDK, for running under each JavaScript runtime
 * (Node, Deno, Bun): web-standard APIs only, so the same file must pass unchanged everywhere.
 * Exits 0 and prints "smoke ok <runtime>" on success; throws otherwise.
 */
import { createIcrAppsClient } from "@icr-apps/core/sdk/Promise"
import { makeFakeIssuer } from "../src/FakeIssuer.js"
import { generateAppKeyPair } from "../src/Keys.js"

const runtime =
  "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : `node ${(globalThis as any).process?.version ?? ""}`
const check = (ok: boolean, what: string) => {
  if (!ok) throw new Error(`smoke failed on ${runtime}: ${what}`)
}

const issuer = makeFakeIssuer()
const keys = await generateAppKeyPair()
const app = await issuer.admin("POST", "/admin/apps", {
  name: "smoke",
  permissions: { organization_info: "VIEW" },
  publicKey: keys.publicPkcs1Pem
})
const installation = await issuer.admin("POST", "/admin/installations", {
  appId: app.id,
  organizationId: crypto.randomUUID(),
  permissions: { organization_info: "VIEW" }
})

// The SDK signs with the PKCS#1 key (converted in pure TypeScript) and talks to the issuer through fetch.
const client = createIcrAppsClient({
  appId: app.id,
  privateKey: keys.privatePkcs1Pem,
  baseUrl: "http://icr.test",
  fetch: issuer.fetch as typeof fetch
})
const token = await client.getInstallationToken(installation.id)
check(/^crs_[0-9a-f]{48}$/.test(token), "installation token format")
check((await client.getInstallationToken(installation.id)) === token, "cached token reused")
const described = await client.describeAccessToken(token)
check(described.installationId === installation.id, "token description")
check((await client.allInstallations()).length === 1, "pagination")
await client.revokeInstallationToken(installation.id)
const refused = await client.describeAccessToken(token).then(
  () => undefined,
  (e: { code?: string }) => e.code
)
check(refused === "invalid_token", `revoked token refused (got ${refused})`)
const openapi = (await (await issuer.fetch("http://icr.test/openapi.json")).json()) as { openapi: string }
check(openapi.openapi === "3.1.0", "openapi document")
await client.dispose()
console.log(`smoke ok ${runtime}`)
