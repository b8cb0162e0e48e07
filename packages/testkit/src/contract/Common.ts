/**
 * The issuer contract: SPEC §1, the rules every endpoint follows: the version header, the request id, 404/405, the body and `Authorization` caps, JSON bodies, never an echoed credential, the final newline, `/healthz` and `/openapi.json`.
 */
import { type ContractContext, BASE, uuidRe, type Json } from "./Context.js"

/** Registers the area's tests. */
export const commonRules = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, admin, problem, newApp, unique, org } = c

  describe("§1 common rules", () => {
    it("GET /healthz answers {status: ok} with the common headers", async () => {
      const r = await api("GET", "/healthz")
      expect(r.res.status).toBe(200)
      expect(r.json).toEqual({ status: "ok" })
      expect(r.res.headers.get("x-icr-api-version")).toBe("2023-06-16")
      expect(r.res.headers.get("x-request-id")).toMatch(uuidRe)
      expect(Number.isNaN(Date.parse(r.res.headers.get("date") ?? ""))).toBe(false)
      expect(r.res.headers.get("x-content-type-options")).toBe("nosniff")
    })
    it("serves x-icr-api-version 2023-06-16 and refuses any other", async () => {
      const ok = await api("GET", "/healthz", { headers: { "x-icr-api-version": "2023-06-16" } })
      expect(ok.res.status).toBe(200)
      problem(
        await api("GET", "/healthz", { headers: { "x-icr-api-version": "2022-11-28" } }),
        400,
        "unsupported_api_version"
      )
    })
    it("echoes a sane x-request-id and replaces an insane one", async () => {
      const sane = await api("GET", "/healthz", { headers: { "x-request-id": "req-123.abc" } })
      expect(sane.res.headers.get("x-request-id")).toBe("req-123.abc")
      const insane = await api("GET", "/healthz", { headers: { "x-request-id": "<script>" } })
      expect(insane.res.headers.get("x-request-id")).toMatch(uuidRe)
    })
    it("answers an unknown route with 404 not_found", async () => {
      problem(await api("GET", "/nope"), 404, "not_found")
    })
    it("answers a known path with the wrong method with 405 and Allow", async () => {
      const r = await api("PUT", "/app/accessTokens")
      problem(r, 405, "method_not_allowed")
      expect(r.res.headers.get("allow")).toBe("POST")
      const t = await api("POST", "/app/installations/token")
      problem(t, 405, "method_not_allowed")
      expect(t.res.headers.get("allow")).toBe("DELETE, GET, HEAD")
    })
    it("answers a path it cannot decode with 400 invalid_request, not 404 or 405", async () => {
      const { jwt } = await newApp()
      problem(await api("GET", "/app/installations/%E0%A4%A", { token: await jwt() }), 400, "invalid_request")
    })
    it("refuses a body over 16 KiB with 413 payload_too_large", async () => {
      const big = JSON.stringify({ name: "x".repeat(17 * 1024) })
      problem(
        await api("POST", "/admin/apps", {
          token: c.target.adminToken,
          rawBody: big,
          headers: { "content-type": "application/json" }
        }),
        413,
        "payload_too_large"
      )
    })
    it("refuses an Authorization value over 8 KiB with 401", async () => {
      const r = await api("POST", "/app/accessTokens", { token: "a".repeat(8 * 1024 + 1) })
      expect(r.res.status).toBe(401)
      expect(r.res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
    })
    it("challenges every 401 with WWW-Authenticate: the realm, and invalid_token only when credentials were sent", async () => {
      const realm = 'Bearer realm="icr-apps"'
      const withError = 'Bearer realm="icr-apps", error="invalid_token"'
      const challenge = async (path: string, headers: Record<string, string> = {}) => {
        const r = await api("GET", path, { headers })
        expect(r.res.status, `${path} ${JSON.stringify(headers).slice(0, 60)}`).toBe(401)
        return r.res.headers.get("www-authenticate")
      }
      expect(await challenge("/app/installations/token")).toBe(realm)
      expect(await challenge("/app/installations")).toBe(realm)
      expect(await challenge("/admin/apps")).toBe(realm)
      expect(await challenge("/app/installations/token", { authorization: "   " })).toBe(realm)
      expect(await challenge("/app/installations/token", { authorization: `Bearer crs_${"0".repeat(48)}` })).toBe(
        withError
      )
      expect(await challenge("/app/installations", { authorization: "Bearer not-a-jwt" })).toBe(withError)
      expect(await challenge("/admin/apps", { authorization: `Bearer ${c.target.adminToken}x` })).toBe(withError)
      expect(await challenge("/app/installations/token", { authorization: "Basic dXNlcjpwYXNz" })).toBe(withError)
      expect(await challenge("/app/installations/token", { authorization: `Bearer ${"a".repeat(8 * 1024 + 1)}` })).toBe(
        withError
      )
      // Other statuses carry no challenge.
      expect((await api("GET", "/nope", { token: "x" })).res.headers.get("www-authenticate")).toBeNull()
    })
    it("answers JSON nested 3,000 deep with 400 invalid_request, never 500, on every endpoint that takes a body", async () => {
      const { jwt, appId } = await newApp()
      const installation = crypto.randomUUID()
      const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`
      const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`
      for (const body of [
        deep(3000),
        `{"permissions":${deep(3000)}}`,
        `{"permissions":${deepObject(1500)}}`,
        `{"name":${deep(3000)},"permissions":{},"publicKey":"x"}`,
        `{"permissions":{"organization_info":${deep(40)}}}`
      ]) {
        for (const [path, token] of [
          ["/admin/apps", c.target.adminToken],
          [`/admin/apps/${appId}/keys`, c.target.adminToken],
          ["/app/accessTokens", await jwt()],
          [`/app/installations/${installation}/accessTokens`, await jwt()]
        ] as const) {
          const r = await api("POST", path, { token, rawBody: body, headers: { "content-type": "application/json" } })
          expect(`${path} ${r.res.status} ${r.json?.code}`).toBe(`${path} 400 invalid_request`)
          problem(r, 400, "invalid_request")
        }
      }
      // Nesting an honest body needs is fine: a JWK under publicKey.
      const jwk = await admin("POST", "/admin/apps", {
        name: c.unique("jwk"),
        permissions: {},
        publicKey: c.keys.publicJwk
      })
      expect(jwk.res.status).toBe(201)
    })
    it("replaces an x-request-id that looks like a credential, so no credential is echoed or logged", async () => {
      for (const credential of [`crs_${"ab".repeat(24)}`, "trace-CRS_0123", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"]) {
        const r = await api("GET", "/healthz", { headers: { "x-request-id": credential } })
        expect(r.res.headers.get("x-request-id")).toMatch(uuidRe)
        const problemAnswer = await api("GET", "/nope", { headers: { "x-request-id": credential } })
        expect(problemAnswer.res.headers.get("x-request-id")).toMatch(uuidRe)
      }
    })
    it("answers a body that is not JSON with 400 invalid_request", async () => {
      problem(
        await api("POST", "/admin/apps", {
          token: c.target.adminToken,
          rawBody: "{nope",
          headers: { "content-type": "application/json" }
        }),
        400,
        "invalid_request"
      )
      problem(
        await api("POST", "/admin/apps", {
          token: c.target.adminToken,
          rawBody: "name=x",
          headers: { "content-type": "application/x-www-form-urlencoded" }
        }),
        400,
        "invalid_request"
      )
      problem(
        await api("POST", "/admin/apps", {
          token: c.target.adminToken,
          rawBody: "[1,2]",
          headers: { "content-type": "application/json" }
        }),
        400,
        "invalid_request"
      )
    })
    it("never echoes a credential that appears in a path or a body", async () => {
      const { jwt, appId } = await newApp()
      const token = (await api("POST", "/app/accessTokens", { token: await jwt() })).json.token as string
      const signed = await jwt()
      const texts = [
        (await api("GET", `/${token}`)).text,
        (await api("GET", `/app/installations/${token}`, { token: signed })).text,
        (await admin("POST", "/admin/apps", { name: "x", permissions: {}, publicKey: c.keys.publicPem, [token]: 1 }))
          .text,
        (
          await admin("POST", "/admin/installations", {
            appId,
            organizationId: org(),
            permissions: { [signed]: "VIEW" }
          })
        ).text,
        (await admin("POST", "/admin/apps", { name: "y", permissions: {}, publicKey: c.keys.privatePem })).text
      ]
      for (const text of texts) {
        expect(text).toMatch(/"status":4\d\d/)
        expect(text).not.toContain(token.slice(4))
        expect(text).not.toContain(signed.split(".")[2])
        expect(text).not.toContain("PRIVATE KEY-----\n")
        expect(text).not.toContain(c.keys.privatePem.split("\n")[1])
      }
    })
    it("ends every JSON body, problem documents included, with one newline that Content-Length counts", async () => {
      const { jwt } = await newApp()
      const responses = [
        await api("GET", "/healthz"),
        await api("GET", "/openapi.json"),
        await api("GET", "/nope"),
        await api("GET", "/app/installations", { token: await jwt() }),
        await api("POST", "/app/accessTokens", { token: "not-a-jwt" }),
        await admin("POST", "/admin/apps", { name: unique("nl"), permissions: {}, publicKey: c.keys.publicPem })
      ]
      for (const { res, text } of responses) {
        expect(text.endsWith("}\n"), `${res.status} ${text.slice(-40)}`).toBe(true)
        const length = res.headers.get("content-length")
        if (length !== null) expect(Number(length)).toBe(new TextEncoder().encode(text).byteLength)
      }
      const head = await api("HEAD", "/healthz")
      expect(head.res.status).toBe(200)
      expect(head.text).toBe("")
    })
    it("GET /openapi.json names the origin it is served from first ('This server'), then production", async () => {
      const here = await api("GET", "/openapi.json")
      expect(here.json.servers).toEqual([
        { url: BASE, description: "This server" },
        { url: "https://api.carbonregistry.com", description: "Production" }
      ])
      // A request for another host names that host, unless the issuer has an origin of its own (SPEC §9).
      const elsewhere = await c.target.fetch(new Request("http://127.0.0.1:8788/openapi.json"))
      expect(((await elsewhere.json()) as Json).servers[0]).toEqual({
        url: c.target.origin ?? "http://127.0.0.1:8788",
        description: "This server"
      })
    })
    it("GET /openapi.json is an OpenAPI 3.1 document listing every public path", async () => {
      const r = await api("GET", "/openapi.json")
      expect(r.res.status).toBe(200)
      expect(r.json.openapi).toMatch(/^3\.1\./)
      expect(Object.keys(r.json.paths).sort()).toEqual(
        [
          "/admin/apps",
          "/admin/apps/{appId}",
          "/admin/apps/{appId}/keys",
          "/admin/apps/{appId}/keys/{keyId}",
          "/admin/apps/{appId}/revokeTokens",
          "/admin/installations",
          "/admin/installations/{installationId}",
          "/admin/installations/{installationId}/revokeTokens",
          "/app/accessTokens",
          "/app/installations",
          "/app/installations/token",
          "/app/installations/{installationId}",
          "/app/installations/{installationId}/accessTokens",
          "/healthz",
          "/openapi.json"
        ].sort()
      )
      expect(Object.keys(r.json.components.securitySchemes).sort()).toEqual(["accessToken", "adminToken", "appJwt"])
      expect(Object.keys(r.json.paths["/admin/apps"]).sort()).toEqual(["get", "post"])
      expect(Object.keys(r.json.paths["/admin/installations"]).sort()).toEqual(["get", "post"])
      const params = r.json.paths["/app/installations"].get.parameters.map((p: Json) => p.name)
      expect(params).toEqual(expect.arrayContaining(["limit", "page", "cursor"]))
      expect(r.json.components.schemas.InstallationPage.properties).toHaveProperty("nextCursor")
    })
  })
}
