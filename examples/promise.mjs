// The SDK without Effect: an installation token and the app's installations, with Promises.
// ICR_APP_ID, ICR_PRIVATE_KEY (the PEM) or ICR_PRIVATE_KEY_FILE, ICR_BASE_URL, ICR_INSTALLATION_ID.
import { readFileSync } from "node:fs"
import process from "node:process"
import { createIcrAppsClient } from "@icr-apps/core"

const env = process.env
// What the example needs, said before anything runs (an unset variable would otherwise reach the SDK as undefined).
const unset = ["ICR_APP_ID", "ICR_BASE_URL", "ICR_INSTALLATION_ID"].filter((name) => !env[name])
if (!env.ICR_PRIVATE_KEY && !env.ICR_PRIVATE_KEY_FILE) unset.push("ICR_PRIVATE_KEY or ICR_PRIVATE_KEY_FILE")
if (unset.length > 0) {
  console.error(
    `set ${unset.join(", ")} (the walk-through's try-it.env has the ids; ICR_BASE_URL=http://127.0.0.1:8787)`
  )
  process.exit(2)
}
const privateKey = env.ICR_PRIVATE_KEY || readFileSync(env.ICR_PRIVATE_KEY_FILE, "utf8")
const icr = createIcrAppsClient({ appId: env.ICR_APP_ID, privateKey, baseUrl: env.ICR_BASE_URL })
try {
  const token = await icr.getInstallationToken(env.ICR_INSTALLATION_ID) // cached, refreshed before expiry
  const installations = await icr.allInstallations() // every page
  console.log(`token ${token.slice(0, 4)}… (${token.length} chars); installations: ${installations.map((i) => i.id)}`)
} catch (e) {
  // An IcrAppsFailure: `_tag` (InvalidJwt, TransportError, …), `code` (SPEC §6) and, for a refused JWT, `reason`.
  const { _tag, code, cause } = e
  console.error(`failed: ${JSON.stringify({ _tag, code, reason: e.reason ?? cause?.reason })} ${e.message}`)
  process.exitCode = 1
} finally {
  await icr.dispose()
}
