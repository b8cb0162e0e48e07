import { describe, expect, it } from "vitest"
import {
  describe as describeToken,
  exchangeParams,
  makeApp,
  OIDC_ISSUER,
  setup,
  subjectPolicy,
  tokenRequest
} from "./harness.js"

const SUB = "repo:acme/inventory:ref:refs/heads/main"
const POLICY = { organization_info: "VIEW", organization_inventory: "REQUEST" } as const

const body = async (response: Response) => (await response.json()) as Record<string, any>

describe("POST /token: policy ∩ request", () => {
  it("exchanges an allowed identity token for an installation token with exactly the policy's permissions", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("inventory-ci", SUB, [a!], POLICY)] })
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(200)
    expect(response.headers.get("cache-control")).toBe("no-store")
    const answer = await body(response)
    expect(answer).toEqual({
      access_token: expect.stringMatching(/^crs_[0-9a-f]{48}$/),
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: expect.any(Number),
      scope: "organization_info:VIEW organization_inventory:REQUEST"
    })
    expect(answer.expires_in).toBeGreaterThan(7100)
    expect(answer.expires_in).toBeLessThanOrEqual(7200)
    // The issuer agrees: exactly the policy's permissions, for that installation.
    const described = await describeToken(answer.access_token)
    expect(described.status).toBe(200)
    expect(described.body).toMatchObject({
      kind: "installation",
      appId: t.app.appId,
      installationId: t.app.installations[0],
      permissions: POLICY
    })
  })

  it("narrows to the requested scope, never more", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("inventory-ci", SUB, [a!], POLICY)] })
    const response = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!, "organization_inventory:VIEW"))
    )
    expect(response.status).toBe(200)
    const answer = await body(response)
    expect(answer.scope).toBe("organization_inventory:VIEW")
    expect((await describeToken(answer.access_token)).body.permissions).toEqual({ organization_inventory: "VIEW" })
  })

  it("refuses a scope beyond the policy with invalid_scope (not cut down), without minting", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("inventory-ci", SUB, [a!], POLICY)] })
    const response = await t.fetch(
      tokenRequest(
        exchangeParams(
          await t.idToken(SUB),
          t.app.installations[0]!,
          "organization_info:VIEW organization_inventory:WRITE"
        )
      )
    )
    expect(response.status).toBe(400)
    expect(response.headers.get("content-type")).toBe("application/problem+json")
    const problem = await body(response)
    expect(problem).toMatchObject({
      code: "invalid_scope",
      status: 400,
      error: "invalid_scope",
      detail: expect.stringContaining("organization_inventory")
    })
    expect(t.issuer.mints()).toBe(0)
  })

  it("answers unauthorized_client when no policy names the subject", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("inventory-ci", SUB, [a!], POLICY)] })
    const response = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken("repo:evil/fork:ref:refs/heads/main"), t.app.installations[0]!))
    )
    expect(response.status).toBe(403)
    expect(await body(response)).toMatchObject({ code: "unauthorized_client", status: 403 })
    expect(t.issuer.mints()).toBe(0)
  })

  it("answers invalid_target for an installation outside the policy, unknown, or suspended", async () => {
    const t = await setup({
      grants: [POLICY, POLICY, POLICY],
      policies: ([a]) => [subjectPolicy("one", SUB, [a!], POLICY), subjectPolicy("wide", "wide", "*", POLICY)]
    })
    const [a, b, c] = t.app.installations as [string, string, string]
    const outside = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), b)))
    expect(outside.status).toBe(400)
    expect((await body(outside)).code).toBe("invalid_target")
    const unknown = await t.fetch(tokenRequest(exchangeParams(await t.idToken("wide"), crypto.randomUUID())))
    expect(unknown.status).toBe(400)
    expect((await body(unknown)).code).toBe("invalid_target")
    const malformed = await t.fetch(tokenRequest(exchangeParams(await t.idToken("wide"), "not-an-id")))
    expect((await body(malformed)).code).toBe("invalid_target")
    const { admin } = await import("./harness.js")
    await admin("PATCH", `/admin/installations/${c}`, { suspended: true })
    const suspended = await t.fetch(tokenRequest(exchangeParams(await t.idToken("wide"), c)))
    expect(await body(suspended)).toMatchObject({ code: "invalid_target", detail: "The installation is suspended" })
    // The installation the policy does reach still works.
    expect((await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), a)))).status).toBe(200)
  })

  it("refuses with invalid_scope when the installation grants less than the policy", async () => {
    const t = await setup({
      grants: [{ organization_info: "VIEW" }],
      policies: () => [subjectPolicy("wide", SUB, "*", POLICY)]
    })
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(await body(response)).toMatchObject({
      code: "invalid_scope",
      detail: "The installation does not grant organization_inventory"
    })
  })

  it("matches subjectPattern and claimPatterns policies (RE2, fully anchored), as octo-sts does", async () => {
    const t = await setup({
      policies: ([a]) => [
        {
          name: "by-pattern",
          identity: {
            issuer: OIDC_ISSUER,
            subjectPattern: "repo:acme/[a-z-]+:ref:refs/heads/main",
            claimPatterns: { repository_owner_id: "4[0-9]" }
          },
          installations: [a],
          permissions: POLICY
        }
      ]
    })
    const exchange = async (sub: string, owner: unknown) =>
      t.fetch(
        tokenRequest(
          exchangeParams(await t.idToken(sub, { claims: { repository_owner_id: owner } }), t.app.installations[0]!)
        )
      )
    expect((await exchange("repo:acme/inventory:ref:refs/heads/main", "42")).status).toBe(200)
    expect((await exchange("repo:acme/inventory:ref:refs/heads/main", 42)).status).toBe(200)
    expect((await body(await exchange("repo:acme/inventory:ref:refs/heads/main", "420"))).code).toBe(
      "unauthorized_client"
    )
    expect((await body(await exchange("repo:acme/inventory:ref:refs/heads/main-x", "42"))).code).toBe(
      "unauthorized_client"
    )
    expect(t.audit.at(-1)).toMatchObject({ reason: "no_policy" })
  })

  it("matches claims policies on exact claim values", async () => {
    const t = await setup({
      policies: ([a]) => [
        {
          name: "by-claims",
          identity: { issuer: OIDC_ISSUER, claims: { repository: "acme/inventory", ref: "refs/heads/main" } },
          installations: [a],
          permissions: POLICY
        }
      ]
    })
    const good = await t.idToken("anything", { claims: { repository: "acme/inventory", ref: "refs/heads/main" } })
    expect((await t.fetch(tokenRequest(exchangeParams(good, t.app.installations[0]!)))).status).toBe(200)
    const branch = await t.idToken("anything", { claims: { repository: "acme/inventory", ref: "refs/heads/dev" } })
    const refused = await t.fetch(tokenRequest(exchangeParams(branch, t.app.installations[0]!)))
    expect((await body(refused)).code).toBe("unauthorized_client")
  })

  it("takes the first policy in document order that covers the request", async () => {
    const t = await setup({
      policies: ([a]) => [
        subjectPolicy("narrow", SUB, [a!], { organization_info: "VIEW" }),
        subjectPolicy("wider", SUB, [a!], POLICY)
      ]
    })
    const first = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect((await body(first)).scope).toBe("organization_info:VIEW")
    const second = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!, "organization_inventory:REQUEST"))
    )
    expect((await body(second)).scope).toBe("organization_inventory:REQUEST")
    expect(t.audit.map((e) => e.policy)).toEqual(["narrow", "wider"])
  })

  it("accepts ES256 identity tokens", async () => {
    const t = await setup({ alg: "ES256", policies: ([a]) => [subjectPolicy("p", SUB, [a!], POLICY)] })
    expect((await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))).status).toBe(
      200
    )
  })

  it("audits one JSON event per exchange, granted or refused, never with a token", async () => {
    const t = await setup({ policies: ([a]) => [subjectPolicy("inventory-ci", SUB, [a!], POLICY)] })
    const subject = await t.idToken(SUB)
    const granted = await body(
      await t.fetch(
        tokenRequest(exchangeParams(subject, t.app.installations[0]!), { headers: { "x-request-id": "req-1" } })
      )
    )
    await t.fetch(tokenRequest(exchangeParams(await t.idToken("nobody"), t.app.installations[0]!)))
    expect(t.audit).toHaveLength(2)
    expect(t.audit[0]).toEqual({
      event: "broker.token_exchange",
      time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
      requestId: "req-1",
      outcome: "granted",
      caller: { kind: "oidc", issuer: OIDC_ISSUER, sub: SUB },
      policy: "inventory-ci",
      installationId: t.app.installations[0],
      permissions: POLICY,
      tokenId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      tokenDigest: expect.stringMatching(/^[0-9a-f]{16}$/),
      cached: false,
      expiresAt: expect.any(String)
    })
    // The token id is the issuer's own.
    expect((await describeToken(granted.access_token)).body.id).toBe(t.audit[0]!.tokenId)
    expect(t.audit[1]).toMatchObject({
      outcome: "refused",
      code: "unauthorized_client",
      caller: { kind: "oidc", sub: "nobody" }
    })
    const text = JSON.stringify(t.audit)
    expect(text).not.toContain("crs_")
    expect(text).not.toContain(subject.split(".")[2])
    expect(text).not.toContain(t.bindings.BROKER_CACHE_SECRET)
  })
})

describe("several apps per broker: each policy names its app", () => {
  it("mints with the identity of the app the policy names, and refuses a policy naming an app it does not hold", async () => {
    const second = await makeApp([{ organization_info: "VIEW" }])
    const t = await setup({
      policies: ([first]) => [
        { ...subjectPolicy("first-app", SUB, [first!], POLICY) },
        {
          ...subjectPolicy("second-app", "other-sub", [second.installations[0]!], { organization_info: "VIEW" }),
          app: second.appId
        }
      ],
      vars: { BROKER_APPS: JSON.stringify([{ appId: second.appId, privateKey: second.privatePem }]) }
    })
    const one = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(one.status).toBe(200)
    expect((await describeToken((await body(one)).access_token)).body.appId).toBe(t.app.appId)
    const two = await t.fetch(tokenRequest(exchangeParams(await t.idToken("other-sub"), second.installations[0]!)))
    expect(two.status).toBe(200)
    expect((await describeToken((await body(two)).access_token)).body).toMatchObject({
      appId: second.appId,
      installationId: second.installations[0]
    })
    expect(t.audit.at(-1)).toMatchObject({ outcome: "granted", policy: "second-app" })

    const unknown = await setup({
      policies: ([a]) => [{ ...subjectPolicy("stray", SUB, [a!], POLICY), app: "no-such-app" }]
    })
    const health = await unknown.fetch(new Request("https://broker.test/healthz"))
    expect(health.status).toBe(503)
    expect(JSON.stringify(await body(health))).toContain(
      `BROKER_POLICIES[0] \\"stray\\": app: not one of the broker's apps (BROKER_APP_ID, BROKER_APPS)`
    )
  })
})
