// The authenticated client against the example resource (SPEC §10), with Promises: every installation,
// its inventory through its installation client, an operator revocation survived (one re-mint, no error),
// and a typed 403 for a permission the token lacks.
// ICR_APP_ID, ICR_PRIVATE_KEY (the PEM) or ICR_PRIVATE_KEY_FILE, ICR_BASE_URL (the resource: it forwards
// /app/* to the issuer), and for the revocation ICR_ISSUER_URL and ADMIN_TOKEN.
import { readFileSync } from "node:fs"
import process from "node:process"
import { createIcrAppsClient } from "@icr-apps/core"

const env = process.env
// What the example needs, said before anything runs (an unset variable would otherwise reach the SDK as undefined).
const unset = ["ICR_APP_ID", "ICR_BASE_URL"].filter((name) => !env[name])
if (!env.ICR_PRIVATE_KEY && !env.ICR_PRIVATE_KEY_FILE) unset.push("ICR_PRIVATE_KEY or ICR_PRIVATE_KEY_FILE")
if (unset.length > 0) {
  console.error(`set ${unset.join(", ")} (ICR_BASE_URL: the example resource, http://127.0.0.1:8790 under npm start)`)
  process.exit(2)
}
const privateKey = env.ICR_PRIVATE_KEY || readFileSync(env.ICR_PRIVATE_KEY_FILE, "utf8")
const icr = createIcrAppsClient({ appId: env.ICR_APP_ID, privateKey, baseUrl: env.ICR_BASE_URL })
const inventory = "/organizations/{organizationId}/inventory"
try {
  for await (const { installation, request } of icr.eachInstallation()) {
    const params = { organizationId: installation.organizationId }
    const before = await request(`GET ${inventory}`, { params })
    // An operator ends every token of the installation: the next call re-mints once and goes through.
    if (env.ICR_ISSUER_URL && env.ADMIN_TOKEN) {
      const revoked = await fetch(`${env.ICR_ISSUER_URL}/admin/installations/${installation.id}/revokeTokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` }
      })
      if (revoked.status !== 204) throw new Error(`revokeTokens answered ${revoked.status}`)
      await new Promise((resolve) => setTimeout(resolve, 5)) // tokens minted after the kill switch only
    }
    const after = await request(`GET ${inventory}`, { params })
    console.log(`installation ${installation.id}: ${before.items.length} then ${after.items.length} stock requests`)
    // A token narrowed to VIEW cannot file a stock request (REQUEST): a typed 403.
    const refused = await request(`POST ${inventory}`, {
      params,
      permissions: { organization_inventory: "VIEW" },
      body: { item: "seedlings" }
    }).catch((e) => e)
    console.log(
      `narrowed to VIEW, POST: ${refused.status} ${refused.code} (${refused.cause?.permission} ${refused.cause?.level})`
    )
  }
} catch (e) {
  const { _tag, code, status } = e
  console.error(`failed: ${JSON.stringify({ _tag, code, status })} ${e.message}`)
  process.exitCode = 1
} finally {
  await icr.dispose()
}
