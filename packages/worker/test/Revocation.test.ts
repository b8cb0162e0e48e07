import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { expect, it } from "vitest"
import { callWorker } from "./callWorker.js"

const call = callWorker(env)

const sha256Hex = async (text: string) =>
  [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")

// Tokens live in D1 (migrations/0005_tokens.sql): a revocation is one UPDATE on the primary, so the
// very next use fails everywhere, and the row keeps only the digest, never the secret.
it("refuses a revoked token from the next request on; D1 keeps its digest and revoked_at, never the secret", async () => {
  const keys = await generateAppKeyPair()
  const app = (await (
    await call("POST", "/admin/apps", env.ADMIN_TOKEN!, {
      name: `revocation-${Date.now()}`,
      permissions: {},
      publicKey: keys.publicPem
    })
  ).json()) as { id: string }
  const jwt = await signRs256(keys.privateKey, appClaims(app.id))
  const { token } = (await (await call("POST", "/app/accessTokens", jwt)).json()) as { token: string }
  const digest = await sha256Hex(token)
  const row = () =>
    env.DB.prepare("SELECT * FROM tokens WHERE digest = ?").bind(digest).first<{ revoked_at: number | null }>()

  const described = await call("GET", "/app/installations/token", token)
  expect(described.status, await described.clone().text()).toBe(200)
  expect((await row())?.revoked_at).toBeNull()
  expect((await call("DELETE", "/app/installations/token", token)).status).toBe(204)

  const after = await call("GET", "/app/installations/token", token)
  expect(after.status).toBe(401)
  expect(((await after.json()) as { code: string }).code).toBe("invalid_token")
  expect(typeof (await row())?.revoked_at).toBe("number")
  const { results } = await env.DB.prepare("SELECT * FROM tokens").all()
  expect(JSON.stringify(results)).not.toContain(token.slice(4))
  // Revoking the revoked token again: 401 (it no longer authenticates), and the row is unchanged.
  const before = await row()
  expect((await call("DELETE", "/app/installations/token", token)).status).toBe(401)
  expect(await row()).toEqual(before)
})
