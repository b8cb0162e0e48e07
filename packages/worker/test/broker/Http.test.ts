import { describe, expect, it } from "vitest"
import { admin, exchangeParams, ISSUER_URL, setup, subjectPolicy, tokenRequest } from "./harness.js"

const SUB = "repo:acme/inventory:ref:refs/heads/main"
const POLICY = { organization_info: "VIEW" } as const
const json = async (response: Response) => (await response.json()) as Record<string, any>

const allowed = (vars: Parameters<typeof setup>[0] = {}) =>
  setup({ policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)], ...vars })

describe("POST /token: the request", () => {
  it("takes JSON as well as a form, and the identity token as a Bearer header", async () => {
    const t = await allowed()
    const id = t.app.installations[0]!
    expect((await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), id), { json: true }))).status).toBe(200)
    const bearer = tokenRequest(
      { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", resource: id },
      { headers: { authorization: `Bearer ${await t.idToken(SUB)}` } }
    )
    expect((await t.fetch(bearer)).status).toBe(200)
  })

  it.each([
    ["no grant_type", { grant_type: undefined }, "grant_type is required"],
    ["another grant_type", { grant_type: "client_credentials" }, "grant_type must be"],
    ["no subject_token_type", { subject_token_type: undefined }, "subject_token_type is required"],
    ["another subject_token_type", { subject_token_type: "urn:x" }, "subject_token_type must be"],
    ["no resource", { resource: undefined }, "resource (the installation id) is required"],
    ["an actor_token", { actor_token: "x" }, "Delegation (actor_token) is not supported"],
    [
      "another requested_token_type",
      { requested_token_type: "urn:ietf:params:oauth:token-type:jwt" },
      "requested_token_type"
    ],
    [
      "no subject token at all",
      { subject_token: undefined, subject_token_type: undefined },
      "Send an OIDC identity token"
    ]
  ])("refuses %s with invalid_request", async (_, change, detail) => {
    const t = await allowed()
    const params = { ...exchangeParams(await t.idToken(SUB), t.app.installations[0]!), ...change }
    const response = await t.fetch(tokenRequest(params))
    expect(response.status).toBe(400)
    expect(await json(response)).toMatchObject({ code: "invalid_request", detail: expect.stringContaining(detail) })
  })

  it("refuses a subject_token and a different Bearer token together", async () => {
    const t = await allowed()
    const response = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!), {
        headers: { authorization: `Bearer ${await t.idToken("other")}` }
      })
    )
    expect((await json(response)).detail).toBe("subject_token and the Authorization header disagree")
  })

  it("refuses a parameter sent twice, a body of another type, bad JSON, and non-string values", async () => {
    const t = await allowed()
    const send = (body: string, type: string) =>
      t.fetch(new Request("https://broker.test/token", { method: "POST", headers: { "content-type": type }, body }))
    const twice = await send("grant_type=a&grant_type=b", "application/x-www-form-urlencoded")
    expect(await json(twice)).toMatchObject({ code: "invalid_request", detail: "grant_type is given more than once" })
    expect((await json(await send("<xml/>", "text/xml"))).code).toBe("invalid_request")
    expect((await json(await send("{", "application/json"))).detail).toBe("The request body is not valid JSON")
    expect((await json(await send('{"resource":1}', "application/json"))).code).toBe("invalid_request")
  })

  it("answers JSON nested 3,000 deep with 400 invalid_request, never 500", async () => {
    const t = await allowed()
    const nested = `${"[".repeat(3000)}${"]".repeat(3000)}`
    for (const body of [nested, `{"resource":${nested}}`, `{"scope":{"a":${nested}}}`]) {
      const response = await t.fetch(
        new Request("https://broker.test/token", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body
        })
      )
      expect(response.status).toBe(400)
      expect(await json(response)).toMatchObject({
        code: "invalid_request",
        error: "invalid_request",
        detail: "The request body nests deeper than 32 levels"
      })
    }
  })

  it("refuses a body over 16 KiB with 413", async () => {
    const t = await allowed()
    const response = await t.fetch(tokenRequest({ grant_type: "x", padding: "a".repeat(17 * 1024) }))
    expect(response.status).toBe(413)
    expect((await json(response)).code).toBe("payload_too_large")
  })

  it("limits each caller per minute, with Retry-After", async () => {
    const t = await allowed({ vars: { BROKER_RATE_LIMIT_PER_MINUTE: "2" } })
    const statuses: Array<number> = []
    let last: Response | undefined
    for (let i = 0; i < 3; i++) {
      last = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
      statuses.push(last.status)
    }
    expect(statuses).toEqual([200, 200, 429])
    expect(Number(last!.headers.get("retry-after"))).toBeGreaterThan(0)
    expect((await json(last!)).code).toBe("rate_limited")
    // Another caller is not affected.
    const other = await t.fetch(tokenRequest(exchangeParams(await t.idToken("someone"), t.app.installations[0]!)))
    expect(other.status).toBe(403)
  })

  it("limits failed attempts per client address, but never refuses a valid credential from it", async () => {
    const t = await allowed()
    const attempt = async (token = "not.a.token") =>
      t.fetch(
        tokenRequest(exchangeParams(token, t.app.installations[0]!), {
          headers: { "cf-connecting-ip": "203.0.113.9" }
        })
      )
    const codes: Array<string> = []
    for (let i = 0; i < 31; i++) codes.push((await json(await attempt())).code)
    expect(codes.slice(0, 30).every((c) => c === "invalid_grant")).toBe(true)
    expect(codes[30]).toBe("rate_limited")
    expect(t.audit.at(-1)).toMatchObject({ code: "rate_limited", reason: "failed_attempts" })
    // A CI runner behind the same NAT with a genuine token is served.
    const valid = await attempt(await t.idToken(SUB))
    expect(valid.status).toBe(200)
  })

  it("groups IPv6 clients by their /64, so rotating addresses within it does not escape the limit", async () => {
    const t = await allowed()
    const codes: Array<string> = []
    for (let i = 0; i < 31; i++) {
      const response = await t.fetch(
        tokenRequest(exchangeParams("not.a.token", t.app.installations[0]!), {
          headers: { "cf-connecting-ip": `2001:db8:1:2::${(i + 1).toString(16)}` }
        })
      )
      codes.push((await json(response)).code)
    }
    expect(codes[30]).toBe("rate_limited")
  })
})

describe("the HTTP rules", () => {
  it("answers unknown routes 404 and wrong methods 405 with Allow, as problem documents", async () => {
    const t = await allowed()
    const missing = await t.fetch(new Request("https://broker.test/nope"))
    expect(missing.status).toBe(404)
    expect(missing.headers.get("content-type")).toBe("application/problem+json")
    const wrong = await t.fetch(new Request("https://broker.test/token"))
    expect(wrong.status).toBe(405)
    expect(wrong.headers.get("allow")).toBe("POST")
    expect((await json(wrong)).code).toBe("method_not_allowed")
    const head = await t.fetch(new Request("https://broker.test/healthz", { method: "HEAD" }))
    expect(head.status).toBe(200)
  })

  it("stamps no-store, security headers and a request id on every answer", async () => {
    const t = await allowed()
    const response = await t.fetch(new Request("https://broker.test/healthz", { headers: { "x-request-id": "abc-1" } }))
    expect(response.headers.get("cache-control")).toBe("no-store")
    expect(response.headers.get("x-content-type-options")).toBe("nosniff")
    expect(response.headers.get("x-request-id")).toBe("abc-1")
    const fresh = await t.fetch(new Request("https://broker.test/healthz", { headers: { "x-request-id": "a b" } }))
    expect(fresh.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("shares the issuer's edge: no credential-like request id is echoed, every answer has Date and a final newline", async () => {
    const t = await allowed()
    for (const id of [
      `crs_${"ab".repeat(24)}`,
      "trace-CRS_0123",
      "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
      "ewogICJhbGciOiAiUlMyNTYiCn0.ewogICJzdWIiOiAieCIKfQ.c2lnbmF0dXJl",
      `ghs_${"A1".repeat(18)}`
    ]) {
      const response = await t.fetch(new Request("https://broker.test/healthz", { headers: { "x-request-id": id } }))
      expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
      // Nor written into the exchange's audit line.
      const exchange = await t.fetch(tokenRequest({ grant_type: "x" }, { headers: { "x-request-id": id } }))
      expect(exchange.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
      expect(t.audit.at(-1)!.requestId).toBe(exchange.headers.get("x-request-id"))
      expect(JSON.stringify(t.audit)).not.toContain(id)
    }
    for (const request of [
      new Request("https://broker.test/healthz"),
      new Request("https://broker.test/nope"),
      tokenRequest({ grant_type: "x" })
    ]) {
      const response = await t.fetch(request)
      const text = await response.text()
      expect(text.endsWith("}\n")).toBe(true)
      expect(Number(response.headers.get("content-length"))).toBe(new TextEncoder().encode(text).byteLength)
      expect(Number.isNaN(Date.parse(response.headers.get("date") ?? ""))).toBe(false)
      expect(response.headers.get("pragma")).toBe("no-cache")
      // SPEC §8: §1 applies to the broker except the version header.
      expect(response.headers.get("x-icr-api-version")).toBeNull()
    }
  })

  it("answers an over-long credential with 400 invalid_request (SPEC §8), not 401", async () => {
    const t = await allowed()
    const response = await t.fetch(
      tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!), {
        headers: { authorization: `Bearer ${"a".repeat(8 * 1024 + 1)}` }
      })
    )
    expect(response.status).toBe(400)
    expect(response.headers.get("www-authenticate")).toBeNull()
    expect(await json(response)).toMatchObject({ code: "invalid_request", error: "invalid_request" })
    // Whatever version a caller names, the broker serves it: the header is the issuer's.
    const versioned = await t.fetch(
      new Request("https://broker.test/healthz", { headers: { "x-icr-api-version": "1999-01-01" } })
    )
    expect(versioned.status).toBe(200)
  })

  it("serves its OpenAPI 3.1 document, generated from the definition that serves it", async () => {
    const t = await allowed()
    const document = await json(await t.fetch(new Request("https://broker.test/openapi.json")))
    expect(document.openapi).toBe("3.1.0")
    expect(Object.keys(document.paths).sort()).toEqual([
      "/.well-known/oauth-authorization-server",
      "/admin/policies",
      "/healthz",
      "/installations",
      "/openapi.json",
      "/token"
    ])
    const token = document.paths["/token"].post
    expect(Object.keys(token.requestBody.content).sort()).toEqual([
      "application/json",
      "application/x-www-form-urlencoded"
    ])
    expect(token.responses["400"].content["application/problem+json"]).toBeDefined()
    expect(token.responses["400"].description).toContain("`invalid_grant`")
    expect(token.responses["403"].description).toContain("`unauthorized_client`")
    expect(token.responses["503"].headers["Retry-After"]).toBeDefined()
    expect(document.components.securitySchemes.oidc).toMatchObject({ type: "http", scheme: "bearer" })
    expect(JSON.stringify(document)).not.toContain("HttpApiDecodeError")
  })
})

describe("standards: RFC 8414 metadata, RFC 8693 resource URIs", () => {
  it("serves /.well-known/oauth-authorization-server naming this broker and its token endpoint", async () => {
    const t = await allowed()
    const response = await t.fetch(new Request("https://broker.example/.well-known/oauth-authorization-server"))
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("application/json")
    expect(await json(response)).toEqual({
      issuer: "https://broker.example",
      token_endpoint: "https://broker.example/token",
      grant_types_supported: ["urn:ietf:params:oauth:grant-type:token-exchange"],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ["none"],
      subject_token_types_supported: [
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:jwt"
      ],
      issued_token_types_supported: ["urn:ietf:params:oauth:token-type:access_token"]
    })
  })

  it("takes resource as the bare id, urn:icr:installation:<id>, or the installation's accessTokensUrl", async () => {
    const t = await allowed()
    const id = t.app.installations[0]!
    const installation = await admin("GET", `/admin/installations?appId=${t.app.appId}`)
    const url = installation.items.find((i: { id: string }) => i.id === id).accessTokensUrl as string
    expect(url).toBe(`${ISSUER_URL}/app/installations/${id}/accessTokens`)
    for (const resource of [id, id.toUpperCase(), `urn:icr:installation:${id}`, url]) {
      const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), resource)))
      expect(response.status).toBe(200)
    }
    expect(new Set(t.audit.map((e) => e.installationId))).toEqual(new Set([id]))
    for (const resource of [
      `https://elsewhere.example/app/installations/${id}/accessTokens`,
      `${ISSUER_URL}/app/installations/${id}`,
      `${ISSUER_URL}/app/installations/${id}/accessTokens?x=1`,
      `urn:icr:installation:${id}x`,
      "urn:icr:app:1"
    ]) {
      const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), resource)))
      expect(await json(response)).toMatchObject({ code: "invalid_target" })
    }
  })
})

describe("errors an OAuth library can read", () => {
  it("labels an error application/json for a client that accepts only that (RFC 6749 §5.2), problem+json otherwise", async () => {
    const t = await allowed()
    const refusal = (accept?: string) =>
      t.fetch(
        tokenRequest(exchangeParams("not.a.token", t.app.installations[0]!), {
          headers: accept === undefined ? {} : { accept }
        })
      )
    const oauth = await refusal("application/json")
    expect(oauth.headers.get("content-type")).toBe("application/json")
    expect(await json(oauth)).toMatchObject({ error: "invalid_grant", code: "invalid_grant", status: 400 })
    for (const accept of [undefined, "*/*", "application/problem+json, application/json"])
      expect((await refusal(accept)).headers.get("content-type")).toContain("application/problem+json")
  })
})
