import { describe, expect, it } from "vitest"
import * as EncryptedTokenCache from "../../src/broker/EncryptedTokenCache.js"
import {
  admin,
  brokerBindings,
  callIssuer,
  describe as describeToken,
  ISSUER_URL,
  dumpBrokerKv,
  exchangeParams,
  setup,
  subjectPolicy,
  tokenRequest
} from "./harness.js"

const SUB = "repo:acme/inventory:ref:refs/heads/main"
const POLICY = { organization_info: "VIEW", organization_inventory: "REQUEST" } as const

const allowed = (vars: Parameters<typeof setup>[0] = {}) =>
  setup({ policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)], ...vars })

const tokenOf = async (t: Awaited<ReturnType<typeof allowed>>, scope?: string) => {
  const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!, scope)))
  expect(response.status).toBe(200)
  return ((await response.json()) as { access_token: string }).access_token
}

describe("the KV token cache", () => {
  it("serves a second exchange from the cache, in this isolate and in a fresh one, without minting", async () => {
    const t = await allowed()
    const first = await tokenOf(t)
    expect(t.issuer.mints()).toBe(1)
    expect(await tokenOf(t)).toBe(first)
    t.fresh() // another isolate: no in-memory state, the same KV
    expect(await tokenOf(t)).toBe(first)
    expect(t.issuer.mints()).toBe(1)
    expect(t.audit.map((e) => e.cached)).toEqual([false, true, true])
    // A fresh isolate learns the issuer's id from the describe that confirmed the token.
    expect(t.audit[2]!.tokenId).toBe(t.audit[0]!.tokenId)
    expect(new Set(t.audit.map((e) => e.tokenDigest)).size).toBe(1)
  })

  it("shares one mint among concurrent exchanges of one isolate", async () => {
    const t = await allowed()
    const tokens = await Promise.all(Array.from({ length: 5 }, () => tokenOf(t)))
    expect(new Set(tokens).size).toBe(1)
    expect(t.issuer.mints()).toBe(1)
    // One exchange minted; the audit says which, and the others waited on it.
    expect(t.audit.filter((e) => e.cached === false)).toHaveLength(1)
    expect(t.audit.filter((e) => e.cached === true)).toHaveLength(4)
  })

  it("caches per effective permissions: a narrower request is another token", async () => {
    const t = await allowed()
    const full = await tokenOf(t)
    const narrow = await tokenOf(t, "organization_info:VIEW")
    expect(narrow).not.toBe(full)
    expect((await describeToken(narrow)).body.permissions).toEqual({ organization_info: "VIEW" })
    expect(t.issuer.mints()).toBe(2)
  })

  it("keeps only sealed values in KV: no crs_ anywhere, names that reveal nothing", async () => {
    const t = await allowed()
    const token = await tokenOf(t)
    await tokenOf(t, "organization_info:VIEW")
    const dump = await dumpBrokerKv()
    expect(dump.length).toBeGreaterThanOrEqual(2)
    for (const { name, value } of dump) {
      expect(name).toMatch(/^broker:token:[0-9a-f]{64}$/)
      expect(value).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/)
      expect(`${name} ${value}`).not.toContain("crs_")
      expect(value).not.toContain(token.slice(4))
      expect(name).not.toContain(t.app.installations[0]!)
    }
    expect(JSON.stringify(dump)).not.toContain("organization_")
  })

  it("treats an entry sealed under another secret as a miss, and mints", async () => {
    const t = await allowed()
    await tokenOf(t)
    const rotated = t.variant({ BROKER_CACHE_SECRET: "another-secret-entirely-but-long-enough-0123456789" })
    const response = await rotated(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(200)
    expect(t.issuer.mints()).toBe(2)
  })

  it("refuses to open a value moved under another key name, or tampered with", async () => {
    const keys = await EncryptedTokenCache.deriveKeys("x".repeat(40))
    const kv = EncryptedTokenCache.sealedKv(brokerBindings.BROKER_CACHE, keys)
    await kv.put("broad", "the broad entry", { expirationTtl: 60 })
    await kv.put("narrow", "the narrow entry", { expirationTtl: 60 })
    expect(await kv.get("broad", "text")).toBe("the broad entry")
    // Someone with write access to KV copies the broad value under the narrow name: it does not open.
    const narrowName = await EncryptedTokenCache.kvName(keys, "narrow")
    const broadValue = await brokerBindings.BROKER_CACHE.get(await EncryptedTokenCache.kvName(keys, "broad"))
    await brokerBindings.BROKER_CACHE.put(narrowName, broadValue!)
    expect(await kv.get("narrow", "text")).toBeNull()
    await brokerBindings.BROKER_CACHE.put(narrowName, "v1.AAAAAAAAAAAAAAAA.AAAA")
    expect(await kv.get("narrow", "text")).toBeNull()
  })
})

describe("the issuer, down", () => {
  it("is retried (3 attempts), then the exchange answers 503 unavailable with Retry-After", async () => {
    const t = await allowed()
    t.issuer.setDown(true)
    const started = Date.now()
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(503)
    expect(response.headers.get("retry-after")).toBe("5")
    expect(await response.json()).toMatchObject({
      code: "unavailable",
      detail: "The issuer could not be reached; retry later"
    })
    expect(t.issuer.mints()).toBe(3)
    expect(Date.now() - started).toBeGreaterThanOrEqual(200) // it backed off between attempts
    expect(t.audit.at(-1)).toMatchObject({ outcome: "refused", code: "unavailable" })
    // Back up: the next exchange succeeds.
    t.issuer.setDown(false)
    expect(await tokenOf(t)).toMatch(/^crs_/)
  })

  it("says so when the issuer refuses the broker's own credentials (a key the app does not have)", async () => {
    const stranger = await import("@icr-apps/testkit/Keys").then((k) => k.generateAppKeyPair())
    const t = await allowed({ vars: { BROKER_PRIVATE_KEY: stranger.privatePem } })
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({
      code: "unavailable",
      detail: "The issuer refused the broker's app credentials"
    })
  })
})

describe("cached tokens are never shared between callers", () => {
  it("one caller revoking the token it received does not end another caller's token, in this isolate or a fresh one", async () => {
    const permissions = { organization_info: "VIEW" } as const
    const t = await setup({
      policies: ([installation]) => [
        subjectPolicy("low", "sub-low", [installation!], permissions),
        subjectPolicy("prod", "sub-prod", [installation!], permissions)
      ]
    })
    const exchange = async (sub: string) =>
      (await (await t.fetch(tokenRequest(exchangeParams(await t.idToken(sub), t.app.installations[0]!)))).json()) as {
        access_token: string
      }
    const low = await exchange("sub-low")
    const revoked = await callIssuer(
      new Request(`${ISSUER_URL}/app/installations/token`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${low.access_token}` }
      })
    )
    expect(revoked.status).toBe(204)
    const prod = await exchange("sub-prod")
    expect(prod.access_token).not.toBe(low.access_token)
    expect((await describeToken(prod.access_token)).status).toBe(200)
    t.fresh()
    const again = await exchange("sub-prod")
    expect(again.access_token).toBe(prod.access_token) // its own cached token, from KV in a fresh isolate
    expect((await describeToken(again.access_token)).status).toBe(200)
  })
})

describe("kills reach the cache (SPEC §8): a cached token is served only while the issuer confirms it", () => {
  const describes = (t: Awaited<ReturnType<typeof allowed>>) =>
    t.issuer.requests.filter((r) => r.method === "GET" && r.path === "/app/installations/token").length
  const exchange = async (t: Awaited<ReturnType<typeof allowed>>, headers: Record<string, string> = {}) => {
    const response = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!), { headers })
    )
    return { status: response.status, body: (await response.json()) as Record<string, any> }
  }

  it("describes a cached token on every serve (default 0 s), never minting for it", async () => {
    const t = await allowed()
    const first = await tokenOf(t)
    expect(describes(t)).toBe(0) // a token just minted needs no confirmation
    expect(await tokenOf(t)).toBe(first)
    expect(await tokenOf(t)).toBe(first)
    expect(describes(t)).toBe(2)
    expect(t.issuer.mints()).toBe(1)
    expect(t.audit.map((e) => e.revalidated)).toEqual([undefined, "confirmed", "confirmed"])
    // The issuer's describe names the token: the audit line carries its id in any isolate.
    t.fresh()
    await tokenOf(t)
    expect(t.audit.at(-1)!.tokenId).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("drops a token its holder revoked, and mints afresh on the next exchange (this isolate and a fresh one)", async () => {
    const t = await allowed()
    const first = await tokenOf(t)
    const revoked = await callIssuer(
      new Request(`${ISSUER_URL}/app/installations/token`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${first}` }
      })
    )
    expect(revoked.status).toBe(204)
    const second = await tokenOf(t)
    expect(second).not.toBe(first)
    expect((await describeToken(second)).status).toBe(200)
    expect(t.audit.at(-1)).toMatchObject({ outcome: "granted", revalidated: "dead", cached: false })
    expect(t.issuer.mints()).toBe(2)
    // The KV entry was replaced too: a fresh isolate serves the new token, not the dead one.
    await callIssuer(
      new Request(`${ISSUER_URL}/app/installations/token`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${second}` }
      })
    )
    t.fresh()
    const third = await tokenOf(t)
    expect([first, second]).not.toContain(third)
  })

  it("drops tokens an operator's revokeTokens ended", async () => {
    const t = await allowed()
    const first = await tokenOf(t)
    await admin("POST", `/admin/installations/${t.app.installations[0]}/revokeTokens`)
    const second = await tokenOf(t)
    expect(second).not.toBe(first)
    expect((await describeToken(second)).status).toBe(200)
  })

  it("answers the issuer's reason once the installation is suspended: invalid_target, never the cached token", async () => {
    const t = await allowed()
    await tokenOf(t)
    await admin("PATCH", `/admin/installations/${t.app.installations[0]}`, { suspended: true })
    const after = await exchange(t)
    expect(after.status).toBe(400)
    expect(after.body).toMatchObject({ code: "invalid_target", detail: "The installation is suspended" })
    expect(JSON.stringify(after.body)).not.toContain("crs_")
    expect(t.audit.at(-1)).toMatchObject({ outcome: "refused", code: "invalid_target", revalidated: "dead" })
  })

  it("answers 503 rather than vouch for a cached token the issuer cannot confirm", async () => {
    const t = await allowed()
    await tokenOf(t)
    t.issuer.setDown(true)
    const response = await exchange(t)
    expect(response.status).toBe(503)
    expect(response.body.code).toBe("unavailable")
    expect(JSON.stringify(response.body)).not.toContain("crs_")
  })

  it("trusts a confirmation for BROKER_CACHE_REVALIDATE_SECONDS when configured", async () => {
    const t = await allowed({ vars: { BROKER_CACHE_REVALIDATE_SECONDS: "60" } })
    const first = await tokenOf(t)
    expect(await tokenOf(t)).toBe(first)
    expect(await tokenOf(t)).toBe(first)
    expect(describes(t)).toBe(1)
    expect(t.audit.map((e) => e.revalidated)).toEqual([undefined, "confirmed", "recent"])
  })

  it("mints a fresh token for Cache-Control: no-cache", async () => {
    const t = await allowed()
    const first = await tokenOf(t)
    const again = await exchange(t, { "cache-control": "no-cache" })
    expect(again.status).toBe(200)
    expect(again.body.access_token).not.toBe(first)
    expect(t.issuer.mints()).toBe(2)
    // And the fresh one is what the cache serves next.
    expect(await tokenOf(t)).toBe(again.body.access_token)
  })

  it("refuses BROKER_CACHE_REVALIDATE_SECONDS out of range", async () => {
    const t = await allowed({ vars: { BROKER_CACHE_REVALIDATE_SECONDS: "3600" } })
    const health = await t.fetch(new Request("https://broker.test/healthz"))
    expect(health.status).toBe(503)
    expect(JSON.stringify(await health.json())).toContain("BROKER_CACHE_REVALIDATE_SECONDS")
  })
})
