import { env, SELF } from "cloudflare:test"
import { describe, expect, it, vi } from "vitest"
import { LIST_CACHE_SECONDS } from "../../src/broker/Broker.js"
import type { BrokerVars } from "../../src/broker/Config.js"
import worker, { type BrokerEnv } from "../../src/broker/index.js"
import { exchangeParams, OIDC_ISSUER, setup, subjectPolicy, tokenRequest } from "./harness.js"

const json = async (response: Response) => (await response.json()) as Record<string, any>

/** A token request with no subject token: only a service binding can make it count. */
const serviceRequest = () =>
  new Request("https://broker.test/token", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      resource: crypto.randomUUID()
    })
  })

describe("service-binding callers", () => {
  it("are named by their binding's props, through a real service binding", async () => {
    const bound = (env as unknown as { AS_INVENTORY_SYNC: Fetcher }).AS_INVENTORY_SYNC
    // Authenticated as service "inventory-sync"; this broker's policies ([]) allow nobody.
    const viaBinding = await bound.fetch(serviceRequest())
    expect(viaBinding.status).toBe(403)
    expect((await json(viaBinding)).code).toBe("unauthorized_client")
    // The same request from outside (no props) is not a service at all.
    const fromOutside = await SELF.fetch(serviceRequest())
    expect(fromOutside.status).toBe(400)
    expect(await json(fromOutside)).toMatchObject({
      code: "invalid_request",
      detail: "Send an OIDC identity token (subject_token, or Authorization: Bearer)"
    })
  })

  it("get tokens as their policy allows; a header cannot claim a service name", async () => {
    const t = await setup({
      policies: ([a]) => [
        {
          name: "sync",
          identity: { service: "inventory-sync" },
          installations: [a],
          permissions: { organization_info: "VIEW" }
        }
      ]
    })
    const entry = (props: unknown) =>
      worker.fetch(
        tokenRequest(
          { ...exchangeParams(undefined, t.app.installations[0]!) },
          { headers: { "x-broker-service": "inventory-sync" } }
        ) as never,
        { ...(t.bindings as BrokerEnv) },
        { props, waitUntil: () => {}, passThroughOnException: () => {} } as unknown as ExecutionContext
      )
    const granted = await entry({ service: "inventory-sync" })
    expect(granted.status).toBe(200)
    expect((await json(granted)).scope).toBe("organization_info:VIEW")
    expect((await json(await entry({ service: "someone-else" }))).code).toBe("unauthorized_client")
    expect((await json(await entry({}))).code).toBe("invalid_request")
  })
})

describe("readiness", () => {
  it("says why it is not ready, and /token answers 503 unavailable until it is", async () => {
    const t = await setup({
      vars: {
        BROKER_APP_ID: undefined,
        BROKER_CACHE_SECRET: "short",
        BROKER_OIDC_ISSUERS: JSON.stringify(["http://oidc.example.com"]),
        BROKER_POLICIES: JSON.stringify([
          { name: "bad", identity: { service: "x" }, installations: "*", permissions: { organization_info: "ADMIN" } }
        ])
      }
    })
    const health = await t.fetch(new Request("https://broker.test/healthz"))
    expect(health.status).toBe(503)
    expect(await json(health)).toEqual({
      status: "unavailable",
      problems: [
        "BROKER_APP_ID is not set: the broker has no app identity",
        "BROKER_OIDC_ISSUERS[0] must be an https: URL (http: only on a loopback host)",
        'BROKER_POLICIES[0] "bad": permissions.organization_info: Expected "VIEW", actual "ADMIN"',
        "BROKER_CACHE_SECRET is not set (at least 32 characters): tokens are never cached unencrypted"
      ]
    })
    const token = await t.fetch(tokenRequest(exchangeParams("x.y.z", t.app.installations[0]!)))
    expect(token.status).toBe(503)
    expect(token.headers.get("retry-after")).toBe("30")
    expect(await json(token)).toMatchObject({
      code: "unavailable",
      detail: "The broker is not configured; GET /healthz says why"
    })
    expect(t.audit).toMatchObject([{ outcome: "refused", code: "unavailable" }])
  })

  it("names an unusable private key without quoting it", async () => {
    const { generateAppKeyPair } = await import("@icr-apps/testkit/Keys")
    const { publicPem } = await generateAppKeyPair()
    const t = await setup({ vars: { BROKER_PRIVATE_KEY: publicPem } })
    const body = await json(await t.fetch(new Request("https://broker.test/healthz")))
    expect(body.problems).toEqual(["BROKER_PRIVATE_KEY: that is a public key; the SDK needs the app's private key"])
    expect(JSON.stringify(body)).not.toContain(publicPem.split("\n")[1]!)
  })

  it("is ready when configured", async () => {
    const t = await setup()
    const health = await t.fetch(new Request("https://broker.test/healthz"))
    expect(health.status).toBe(200)
    expect(await json(health)).toEqual({ status: "ok" })
  })

  it("reads exactly the vars its wrangler config declares", () => {
    const declared = Object.keys(env).filter((k) => k.startsWith("BROKER_") && k !== "BROKER_CACHE")
    const read: ReadonlyArray<keyof BrokerVars> = [
      "BROKER_APP_ID",
      "BROKER_PRIVATE_KEY",
      "BROKER_ISSUER_URL",
      "BROKER_AUDIENCE",
      "BROKER_OIDC_ISSUERS",
      "BROKER_POLICIES",
      "BROKER_CACHE_SECRET",
      "BROKER_RATE_LIMIT_PER_MINUTE",
      "BROKER_CACHE_REVALIDATE_SECONDS",
      "BROKER_MAX_TOKEN_AGE_SECONDS",
      "BROKER_ISSUER_BUDGET_PER_MINUTE"
    ]
    // The two secrets come from the test config here; wrangler.broker.jsonc declares the rest.
    expect(declared.sort()).toEqual([...read].sort())
  })
})

describe("GET /installations", () => {
  it("lists, all pages, only what the caller's listing policies reach", async () => {
    const grants = Array.from({ length: 3 }, () => ({ organization_info: "VIEW" }) as const)
    const t = await setup({
      grants,
      policies: ([a, b]) => [subjectPolicy("lister", "ops", [a!, b!], { organization_info: "VIEW" }, true)]
    })
    const response = await t.fetch(
      new Request("https://broker.test/installations", {
        headers: { authorization: `Bearer ${await t.idToken("ops")}` }
      })
    )
    expect(response.status).toBe(200)
    const { items } = await json(response)
    expect(items.map((i: { id: string }) => i.id).sort()).toEqual(
      [t.app.installations[0], t.app.installations[1]].sort()
    )
    expect(items[0]).toMatchObject({ appId: t.app.appId, permissions: { organization_info: "VIEW" } })
  })

  it("refuses callers whose policies do not allow listing", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("no-list", "ops", [a!], { organization_info: "VIEW" })] })
    const response = await t.fetch(
      new Request("https://broker.test/installations", {
        headers: { authorization: `Bearer ${await t.idToken("ops")}` }
      })
    )
    expect(response.status).toBe(403)
    expect((await json(response)).code).toBe("unauthorized_client")
  })
})

describe("budgets: one caller cannot starve the others (SPEC §8)", () => {
  const lister = (vars: NonNullable<Parameters<typeof setup>[0]>["vars"] = {}) =>
    setup({
      grants: Array.from({ length: 5 }, () => ({ organization_info: "VIEW" }) as const),
      policies: (ids) => [
        subjectPolicy("lister", "ops", "*", { organization_info: "VIEW" }, true),
        subjectPolicy("ci", "ci", [ids[0]!], { organization_info: "VIEW" })
      ],
      vars,
      // 5 installations at 2 a page: a listing walks 3 pages at the issuer.
      deps: { listPageSize: 2 }
    })
  const list = async (t: Awaited<ReturnType<typeof lister>>, sub = "ops") =>
    t.fetch(
      new Request("https://broker.test/installations", {
        headers: { authorization: `Bearer ${await t.idToken(sub)}` }
      })
    )
  const listingRequests = (t: Awaited<ReturnType<typeof lister>>) =>
    t.issuer.requests.filter((r) => r.method === "GET" && r.path === "/app/installations").length

  it("serves listings from a short cache: listing in a loop walks the issuer's pages once", async () => {
    const t = await lister()
    for (let i = 0; i < 5; i++) {
      const response = await list(t)
      expect(response.status).toBe(200)
      expect((await json(response)).items).toHaveLength(5)
    }
    expect(listingRequests(t)).toBe(3)
  })

  it("charges a listing to its caller by the issuer requests it cost", async () => {
    const t = await lister({ BROKER_RATE_LIMIT_PER_MINUTE: "4" })
    // The first listing walks 3 pages (3 units); the next, from the cache, costs 1: the budget of 4 is spent.
    expect((await list(t)).status).toBe(200)
    expect((await list(t)).status).toBe(200)
    const third = await list(t)
    expect(third.status).toBe(429)
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThan(0)
    // Another caller is untouched.
    const other = await t.fetch(tokenRequest(exchangeParams(await t.idToken("ci"), t.app.installations[0]!)))
    expect(other.status).toBe(200)
  })

  it("concurrent listings on a cold cache share one walk: a stampede cannot spend another caller's issuer budget", async () => {
    const t = await lister({ BROKER_ISSUER_BUDGET_PER_MINUTE: "4" })
    const responses = await Promise.all(Array.from({ length: 10 }, () => list(t)))
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200))
    for (const response of responses) expect((await json(response)).items).toHaveLength(5)
    expect(listingRequests(t)).toBe(3)
    // The budget's 4th request is left for another caller's mint.
    const other = await t.fetch(tokenRequest(exchangeParams(await t.idToken("ci"), t.app.installations[0]!)))
    expect(other.status).toBe(200)
  })

  it("a shared walk that fails fails every listing waiting on it, and the next listing walks again", async () => {
    const t = await lister()
    t.issuer.setDown(true)
    const failed = await Promise.all(Array.from({ length: 3 }, () => list(t)))
    expect(failed.map((r) => r.status)).toEqual([503, 503, 503])
    // One walk (its first page, tried 3 times), not three.
    expect(listingRequests(t)).toBe(3)
    t.issuer.setDown(false)
    const again = await list(t)
    expect(again.status).toBe(200)
    expect((await json(again)).items).toHaveLength(5)
  })

  it("charges the pages of a walk before walking: a caller that cannot pay for the last walk's pages is refused first", async () => {
    const t = await lister({ BROKER_RATE_LIMIT_PER_MINUTE: "5" })
    expect((await list(t)).status).toBe(200) // 3 pages: 3 units of 5
    const start = Date.now()
    const clock = vi.spyOn(Date, "now").mockImplementation(() => start + (LIST_CACHE_SECONDS + 1) * 1000)
    try {
      // The cache is cold again; the walk would cost 3 more units (1 + 2 reserved): beyond 5, refused unwalked.
      const refused = await list(t)
      expect(refused.status).toBe(429)
      expect(listingRequests(t)).toBe(3)
    } finally {
      clock.mockRestore()
    }
  })

  it("keeps the whole broker under its issuer budget (BROKER_ISSUER_BUDGET_PER_MINUTE), answering 429 beyond it", async () => {
    const t = await lister({ BROKER_ISSUER_BUDGET_PER_MINUTE: "4" })
    expect((await list(t)).status).toBe(200) // 3 issuer requests
    const exchange = async () => t.fetch(tokenRequest(exchangeParams(await t.idToken("ci"), t.app.installations[0]!)))
    expect((await exchange()).status).toBe(200) // a mint: the 4th
    const refused = await exchange() // the describe of the cached token would be the 5th
    expect(refused.status).toBe(429)
    expect(await json(refused)).toMatchObject({ code: "rate_limited" })
    expect(t.issuer.requests).toHaveLength(4)
  })
})

describe("limits shared by every isolate (Cloudflare Rate Limiting bindings)", () => {
  /** A binding as Cloudflare's behaves within one period: `limit` requests per key, shared by all. */
  const fakeBinding = (limit: number) => {
    const counts = new Map<string, number>()
    return {
      counts,
      limit: async ({ key }: { key: string }) => {
        counts.set(key, (counts.get(key) ?? 0) + 1)
        return { success: counts.get(key)! <= limit }
      }
    }
  }

  it("CALLER_RATE_LIMITER: a caller spreading its requests over isolates still meets one budget", async () => {
    const callers = fakeBinding(3)
    const t = await setup({
      policies: ([a]) => [subjectPolicy("ci", "ci", [a!], { organization_info: "VIEW" })],
      bindings: { CALLER_RATE_LIMITER: callers }
    })
    const statuses: Array<number> = []
    for (let i = 0; i < 4; i++) {
      t.fresh() // every request in a new isolate: the in-memory windows never see more than one
      const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken("ci"), t.app.installations[0]!)))
      statuses.push(response.status)
      if (response.status === 429) expect(response.headers.get("retry-after")).toBe("60")
    }
    expect(statuses).toEqual([200, 200, 200, 429])
    expect([...callers.counts.keys()]).toEqual([`oidc:${OIDC_ISSUER}#ci`])
  })

  it("ISSUER_RATE_LIMITER: the app's requests to the issuer meet one budget across isolates", async () => {
    const issuer = fakeBinding(1)
    const t = await setup({
      policies: ([a]) => [subjectPolicy("ci", "ci", [a!], { organization_info: "VIEW" })],
      bindings: { ISSUER_RATE_LIMITER: issuer }
    })
    const exchange = async () =>
      (await t.fetch(tokenRequest(exchangeParams(await t.idToken("ci"), t.app.installations[0]!)))).status
    expect(await exchange()).toBe(200) // the mint: 1
    t.fresh()
    expect(await exchange()).toBe(429) // the describe of the cached token would be the 2nd
    expect([...issuer.counts.keys()]).toEqual([`app:${t.app.appId}`])
  })
})
