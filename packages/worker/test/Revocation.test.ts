import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { expect, it } from "vitest"
import { TOKEN_PREFIX } from "../src/KvTokenStore.js"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]
const call = (method: string, path: string, token: string, body?: unknown) =>
  worker.fetch(
    new Request(`http://icr.test${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    }) as IncomingRequest,
    env
  )

// KV is eventually consistent across locations: another location may still hold a revoked token's
// record for up to ~60 s. The revocation recorded in D1 must refuse the token there too.
it("refuses a revoked token even where KV still serves its record (a stale location)", async () => {
  const keys = await generateAppKeyPair()
  const app = (await (
    await call("POST", "/admin/apps", env.ADMIN_TOKEN!, {
      name: "revocation",
      permissions: {},
      publicKey: keys.publicPem
    })
  ).json()) as { id: string }
  const jwt = await signRs256(keys.privateKey, appClaims(app.id))
  const { token } = (await (await call("POST", "/app/accessTokens", jwt)).json()) as { token: string }

  const before = await env.TOKENS.list({ prefix: TOKEN_PREFIX })
  const stale = await Promise.all(before.keys.map(async (k) => [k.name, await env.TOKENS.get(k.name)] as const))
  expect((await call("DELETE", "/app/installations/token", token)).status).toBe(204)
  // Put every record back, as a location that has not seen the delete yet would still have it.
  for (const [name, value] of stale) if (value !== null) await env.TOKENS.put(name, value, { expirationTtl: 3600 })

  const after = await call("GET", "/app/installations/token", token)
  expect(after.status).toBe(401)
  expect(((await after.json()) as { code: string }).code).toBe("invalid_token")
  const { results } = await env.DB.prepare("SELECT * FROM revoked_tokens").all()
  expect(JSON.stringify(results)).not.toContain(token.slice(4))
  expect(results.length).toBeGreaterThan(0)
})
