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

const sha256 = async (text: string) =>
  [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")

const eventsOf = (t: T, name: string) => t.audit.filter((e) => (e.event as string) === name) as Array<any>

const adminRequest = (
  method: string,
  body?: unknown,
  token: string | null = ADMIN_TOKEN,
  ifMatch: string | null = method === "PUT" ? '"0"' : null
) =>
  new Request("https://broker.test/admin/policies", {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(ifMatch === null ? {} : { "if-match": ifMatch })
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
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
      expect.objectContaining({
        outcome: "success",
        version: 1,
        policies: ["deploy"],
        requestId: expect.any(String),
        // The stored document itself, not only its names: SHA-256 of the policies as GET shows them.
        digest: `sha256:${await sha256(JSON.stringify(document))}`
      })
    ])
    // Another isolate reads the store.
    t.fresh()
    expect((await exchange(t, "sub-deploy")).status).toBe(200)
    expect((await json(await t.fetch(adminRequest("GET")))).version).toBe(1)
    const again = await t.fetch(adminRequest("PUT", { policies: [] }, ADMIN_TOKEN, '"1"'))
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
  it('takes a PUT only with If-Match: "<version in force>": 428 without, 409 on another version, one winner of two at once', async () => {
    const t = await withAdmin()
    const one = [subjectPolicy("one", "sub-one", [t.app.installations[0]!], POLICY)]
    const two = [subjectPolicy("two", "sub-two", [t.app.installations[0]!], POLICY)]
    const none = await t.fetch(adminRequest("PUT", { policies: one }, ADMIN_TOKEN, null))
    expect(none.status).toBe(428)
    expect((await json(none)).code).toBe("precondition_required")
    const stale = await t.fetch(adminRequest("PUT", { policies: one }, ADMIN_TOKEN, '"3"'))
    expect(stale.status).toBe(409)
    expect(await json(stale)).toMatchObject({ code: "conflict", detail: expect.stringContaining('If-Match: "0"') })
    for (const bad of ["*", "0", 'W/"0"', '"0", "1"'])
      expect((await t.fetch(adminRequest("PUT", { policies: one }, ADMIN_TOKEN, bad))).status).toBe(400)
    expect((await json(await t.fetch(adminRequest("GET")))).version).toBe(0)
    // Two operators, two isolates, both based on version 0: one is told 200, the other 409, and
    // what is in force (here and in a new isolate) is the one that was told 200.
    const other = t.variant({})
    const answers = await Promise.all([
      t.fetch(adminRequest("PUT", { policies: one })),
      other(adminRequest("PUT", { policies: two }))
    ])
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409])
    const winner = answers[0]!.status === 200 ? one : two
    t.fresh()
    expect(await json(await t.fetch(adminRequest("GET")))).toMatchObject({ version: 1, policies: winner })
    const updates = eventsOf(t, "broker.policies_update")
    expect(updates.filter((e) => e.outcome === "success")).toHaveLength(1)
    expect(
      updates
        .map((e) => e.code)
        .filter((c) => c !== undefined)
        .sort()
    ).toEqual([
      "conflict",
      "conflict",
      "invalid_request",
      "invalid_request",
      "invalid_request",
      "invalid_request",
      "precondition_required"
    ])
    // The next change is based on version 1.
    expect((await t.fetch(adminRequest("PUT", { policies: one }, ADMIN_TOKEN, '"1"'))).status).toBe(200)
  })

  it("authenticates before reading the body: unauthenticated malformed PUTs are 401; the document is strict", async () => {
    const t = await withAdmin()
    for (const token of [null, "wrong-token"]) {
      for (const body of ["{not json", "[1,2]", { policies: [], extra: true }, {}]) {
        const response = await t.fetch(adminRequest("PUT", body, token))
        expect(response.status).toBe(401)
        expect((await json(response)).code).toBe(token === null ? "missing_credentials" : "invalid_token")
      }
    }
    const extra = await t.fetch(adminRequest("PUT", { policies: [], version: 1 }))
    expect(extra.status).toBe(400)
    expect((await json(extra)).detail).toBe("version: is not a member")
    expect((await json(await t.fetch(adminRequest("PUT", {})))).detail).toBe(
      "policies: must be a JSON array of policies"
    )
    expect((await t.fetch(adminRequest("PUT", "{not json"))).status).toBe(400)
  })

  it("audits failed operator authentications (never the value), at most one a second per address", async () => {
    const t = await withAdmin()
    const from = (address: string | undefined, token: string) => {
      const request = adminRequest("GET", undefined, token)
      if (address !== undefined) request.headers.set("cf-connecting-ip", address)
      return t.fetch(request)
    }
    expect((await from("203.0.113.9", "wrong-secret-one")).status).toBe(401)
    expect((await from("203.0.113.9", "wrong-secret-two")).status).toBe(401)
    expect((await from("2001:db8::1", "wrong-secret-three")).status).toBe(401)
    expect((await from(undefined, "wrong-secret-four")).status).toBe(401)
    expect((await from("203.0.113.9", ADMIN_TOKEN)).status).toBe(200)
    const failures = eventsOf(t, "broker.operator_authenticate")
    expect(failures).toEqual([
      expect.objectContaining({ outcome: "failure", code: "invalid_token", clientAddress: "ip4:203.0.113.9" }),
      expect.objectContaining({ outcome: "failure", code: "invalid_token", clientAddress: "ip6:2001:db8:0:0::/64" }),
      expect.not.objectContaining({ clientAddress: expect.anything() })
    ])
    expect(JSON.stringify(failures)).not.toContain("wrong-secret")
  })

  it("counts wrong operator tokens without a client address under one key: 429 past the limit, the right token still works", async () => {
    const t = await withAdmin()
    const statuses: Array<number> = []
    for (let i = 0; i < 31; i++) statuses.push((await t.fetch(adminRequest("GET", undefined, `wrong-${i}`))).status)
    expect(statuses).toEqual([...Array(30).fill(401), 429])
    expect((await t.fetch(adminRequest("GET"))).status).toBe(200)
  })

  it('refuses a subjectPattern matching any subject unless "allowAnySubject": true, and audits the policies that say so', async () => {
    const t = await withAdmin()
    const everyone = {
      name: "everyone",
      identity: { issuer: OIDC_ISSUER, subjectPattern: ".+" },
      installations: "*",
      permissions: POLICY
    }
    const refused = await t.fetch(adminRequest("PUT", { policies: [everyone] }))
    expect(refused.status).toBe(400)
    expect((await json(refused)).detail).toContain(
      'identity.subjectPattern: matches any subject; narrow it, or say "allowAnySubject": true'
    )
    const put = await t.fetch(adminRequest("PUT", { policies: [{ ...everyone, allowAnySubject: true }] }))
    expect(put.status).toBe(200)
    expect(eventsOf(t, "broker.policies_update").filter((e) => e.outcome === "success")).toEqual([
      expect.objectContaining({ version: 1, policies: ["everyone"], allowAnySubject: ["everyone"] })
    ])
    expect((await exchange(t, "any-subject-at-all")).status).toBe(200)
  })
})
