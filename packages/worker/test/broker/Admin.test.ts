import { describe, expect, it } from "vitest"
import { dumpBrokerKv, exchangeParams, OIDC_ISSUER, setup, subjectPolicy, tokenRequest } from "./harness.js"

const ADMIN_TOKEN = "broker-admin-token-of-at-least-32-characters-0123"
const POLICY = { organization_info: "VIEW" } as const

const json = async (response: Response) => (await response.json()) as Record<string, any>

const withAdmin = (vars: Record<string, string | undefined> = {}) =>
  setup({
    policies: ([a]) => [subjectPolicy("ci", "sub-ci", [a!], POLICY)],
    // A cache secret of its own: the stored document is sealed under it, so brokers of other tests
    // (which share the KV namespace) never see this one's policies.
    vars: { BROKER_ADMIN_TOKEN: ADMIN_TOKEN, BROKER_CACHE_SECRET: `secret-${crypto.randomUUID()}`, ...vars }
  })

type T = Awaited<ReturnType<typeof withAdmin>>

const adminRequest = (method: string, body?: unknown, token: string | null = ADMIN_TOKEN) =>
  new Request("https://broker.test/admin/policies", {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" })
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

const exchange = async (t: T, sub: string) =>
  t.fetch(tokenRequest(exchangeParams(await t.idToken(sub), t.app.installations[0]!)))

describe("GET/PUT /admin/policies (SPEC §8)", () => {
  it("shows BROKER_POLICIES as version 0 until a document is stored", async () => {
    const t = await withAdmin()
    const response = await t.fetch(adminRequest("GET"))
    expect(response.status).toBe(200)
    expect(response.headers.get("cache-control")).toContain("no-store")
    expect(await json(response)).toEqual({
      version: 0,
      updatedAt: null,
      source: "environment",
      policies: [subjectPolicy("ci", "sub-ci", [t.app.installations[0]!], POLICY)]
    })
  })

  it("replaces the policies, effective on the next exchange, in this isolate and another, versioned and audited", async () => {
    const t = await withAdmin()
    expect((await exchange(t, "sub-ci")).status).toBe(200)
    expect((await exchange(t, "sub-deploy")).status).toBe(403)
    const document = [
      {
        name: "deploy",
        identity: { issuer: OIDC_ISSUER, subjectPattern: "sub-dep.*" },
        installations: [t.app.installations[0]],
        permissions: POLICY
      }
    ]
    const put = await t.fetch(adminRequest("PUT", { policies: document }))
    expect(put.status).toBe(200)
    expect(await json(put)).toMatchObject({ version: 1, source: "store", policies: document })
    // The next exchange: the new policy allows, the old one is gone.
    expect((await exchange(t, "sub-deploy")).status).toBe(200)
    expect((await json(await exchange(t, "sub-ci"))).code).toBe("unauthorized_client")
    const events = t.audit.filter((e) => (e.event as string) === "broker.policies_update") as Array<any>
    expect(events).toEqual([
      expect.objectContaining({ outcome: "success", version: 1, policies: ["deploy"], requestId: expect.any(String) })
    ])
    // Another isolate reads the store.
    t.fresh()
    expect((await exchange(t, "sub-deploy")).status).toBe(200)
    expect((await json(await t.fetch(adminRequest("GET")))).version).toBe(1)
    const again = await t.fetch(adminRequest("PUT", { policies: [] }))
    expect((await json(again)).version).toBe(2)
    expect((await exchange(t, "sub-deploy")).status).toBe(403)
    // Sealed at rest: no policy name, subject or pattern in KV.
    const dump = JSON.stringify(await dumpBrokerKv())
    for (const text of ["deploy", "sub-dep", "organization_info"]) expect(dump).not.toContain(text)
  })

  it("validates as BROKER_POLICIES is validated, naming the path, and keeps the policies in force", async () => {
    const t = await withAdmin()
    const bad = await t.fetch(
      adminRequest("PUT", {
        policies: [
          {
            name: "x",
            identity: { issuer: OIDC_ISSUER, subjectPattern: "(a)\\1" },
            installations: "*",
            permissions: POLICY
          }
        ]
      })
    )
    expect(bad.status).toBe(400)
    expect(await json(bad)).toMatchObject({
      code: "invalid_request",
      detail: 'policies[0] "x": identity.subjectPattern: is not a valid RE2 pattern'
    })
    for (const policies of [
      {},
      "[]",
      [{ name: "untrusted", identity: { issuer: "https://x.test", sub: "a" }, installations: "*", permissions: POLICY }]
    ]) {
      expect((await t.fetch(adminRequest("PUT", { policies }))).status).toBe(400)
    }
    expect((await t.fetch(adminRequest("PUT", [1, 2]))).status).toBe(400)
    expect((await json(await t.fetch(adminRequest("GET")))).version).toBe(0)
    expect((await exchange(t, "sub-ci")).status).toBe(200)
    expect(
      t.audit.filter((e) => (e.event as string) === "broker.policies_update").every((e) => e.outcome === "refused")
    ).toBe(true)
  })

  it("refuses without the operator token (401, never echoing it), and is off without one of 32 characters (403)", async () => {
    const t = await withAdmin()
    const missing = await t.fetch(adminRequest("GET", undefined, null))
    expect(missing.status).toBe(401)
    expect(missing.headers.get("www-authenticate")).toContain('realm="icr-apps"')
    expect((await json(missing)).code).toBe("missing_credentials")
    const wrong = await t.fetch(adminRequest("PUT", { policies: [] }, `${ADMIN_TOKEN}x`))
    expect(wrong.status).toBe(401)
    const text = await wrong.text()
    expect(text).toContain("invalid_token")
    expect(text).not.toContain(ADMIN_TOKEN)
    expect((await json(await t.fetch(adminRequest("GET")))).version).toBe(0)

    const short = await withAdmin({ BROKER_ADMIN_TOKEN: "too-short" })
    const off = await short.fetch(adminRequest("GET", undefined, "too-short"))
    expect(off.status).toBe(403)
    expect((await json(off)).code).toBe("admin_disabled")
    const none = await setup({ policies: () => [] })
    expect((await json(await none.fetch(adminRequest("GET")))).code).toBe("admin_disabled")
  })

  it("limits wrong operator tokens per address", async () => {
    const t = await withAdmin()
    const statuses: Array<number> = []
    for (let i = 0; i < 31; i++) {
      const request = adminRequest("GET", undefined, `wrong-${i}`)
      request.headers.set("cf-connecting-ip", "203.0.113.7")
      statuses.push((await t.fetch(request)).status)
    }
    expect(statuses).toEqual([...Array(30).fill(401), 429])
    // The right token from that address still works.
    const right = adminRequest("GET")
    right.headers.set("cf-connecting-ip", "203.0.113.7")
    expect((await t.fetch(right)).status).toBe(200)
  })

  it("starts with no BROKER_POLICIES when an operator token is set: deny all until a document is put", async () => {
    const t = await withAdmin({ BROKER_POLICIES: undefined })
    expect((await t.fetch(new Request("https://broker.test/healthz"))).status).toBe(200)
    expect((await exchange(t, "sub-ci")).status).toBe(403)
    const put = await t.fetch(
      adminRequest("PUT", { policies: [subjectPolicy("ci", "sub-ci", [t.app.installations[0]!], POLICY)] })
    )
    expect(put.status).toBe(200)
    expect((await exchange(t, "sub-ci")).status).toBe(200)
  })
})
