import { describe, expect, it } from "@effect/vitest"
import { IcrAppsApi, openApiDocument } from "../../src/api/Api.js"

describe("openapi.json is generated from the definition", () => {
  const doc = openApiDocument() as any
  it("is OpenAPI 3.1 at the API version", () => {
    expect(doc.openapi).toBe("3.1.0")
    expect(doc.info.version).toBe("2023-06-16")
  })
  it("has one operation per endpoint of the definition, with the same method and path", () => {
    const fromDefinition = Object.values(IcrAppsApi.groups)
      .flatMap((g) => Object.values(g.endpoints).map((e) => `${e.method} ${e.path.replace(/:(\w+)/g, "{$1}")}`))
      .sort()
    const fromDocument = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${path}`))
      .sort()
    expect(fromDocument).toEqual(fromDefinition)
    expect(fromDocument).toHaveLength(19)
  })
  it("describes every error response as application/problem+json, never the platform's internal shape", () => {
    for (const ops of Object.values<any>(doc.paths)) {
      for (const op of Object.values<any>(ops)) {
        for (const [status, response] of Object.entries<any>(op.responses)) {
          if (Number(status) >= 400) expect(Object.keys(response.content)).toEqual(["application/problem+json"])
        }
      }
    }
    expect(JSON.stringify(doc)).not.toContain("HttpApiDecodeError")
  })
  it("documents the headers the server sets: Link, Cache-Control, WWW-Authenticate, Allow, Retry-After", () => {
    expect(Object.keys(doc.paths["/app/installations"].get.responses["200"].headers)).toEqual(["Link"])
    expect(Object.keys(doc.paths["/app/accessTokens"].post.responses["200"].headers)).toEqual(["Cache-Control"])
    const mint = doc.paths["/app/installations/{installationId}/accessTokens"].post
    expect(Object.keys(mint.responses["200"].headers)).toEqual(["Cache-Control"])
    expect(mint.requestBody.required).toBe(false)
    expect(Object.keys(mint.responses["401"].headers)).toEqual(["WWW-Authenticate"])
    expect(Object.keys(mint.responses["429"].headers)).toEqual(["Retry-After"])
    expect(Object.keys(mint.responses["503"].headers)).toEqual(["Retry-After"])
  })
  it("lists on each operation only the problems it can answer", () => {
    const codesOf = (op: any) =>
      Object.fromEntries(
        Object.entries<any>(op.responses)
          .filter(([status]) => Number(status) >= 400)
          .map(([status, r]) => [status, [...r.description.matchAll(/`(\w+)`/g)].map((m) => m[1])])
      )
    expect(codesOf(doc.paths["/healthz"].get)).toEqual({ "400": ["unsupported_api_version"], "500": ["internal"] })
    expect(codesOf(doc.paths["/openapi.json"].get)).toEqual({
      "400": ["unsupported_api_version"],
      "429": ["rate_limited"],
      "500": ["internal"]
    })
    expect(codesOf(doc.paths["/app/installations/token"].delete)).toEqual({
      "400": ["unsupported_api_version"],
      "401": ["missing_credentials", "invalid_token"],
      "429": ["rate_limited"],
      "500": ["internal"],
      "503": ["unavailable"]
    })
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const where = `${method.toUpperCase()} ${path}`
        const codes = Object.values<Array<string>>(codesOf(op)).flat()
        expect(codes, where).not.toContain("method_not_allowed")
        if (where !== "DELETE /admin/apps/{appId}/keys/{keyId}") expect(codes, where).not.toContain("not_found")
        expect(codes.includes("payload_too_large"), where).toBe(op.requestBody !== undefined)
        const body = op.requestBody?.content["application/json"].schema.$ref?.split("/").pop()
        expect(codes.includes("invalid_permissions"), where).toBe(
          doc.components.schemas[body]?.properties?.permissions !== undefined
        )
      }
    }
  })
  it("describes the mint, and the paging parameters in words", () => {
    const mint = doc.paths["/app/installations/{installationId}/accessTokens"].post
    expect(mint.description).toContain("404 `installation_not_found`")
    expect(mint.description).toContain("403 `installation_suspended`")
    const params = Object.fromEntries(doc.paths["/app/installations"].get.parameters.map((p: any) => [p.name, p]))
    expect(params.cursor.description).toMatch(/^Keyset cursor: the `nextCursor` of the previous page/)
    expect(params.cursor.schema.title).toBe("cursor")
    expect(params.limit.description).toBe("Items per page, an integer from 1 to 100 (default 10)")
    expect(params.page.description).toBe("Zero-based page number, an integer (default 0)")
    for (const path of ["/app/installations", "/admin/apps", "/admin/installations"]) {
      expect(JSON.stringify(doc.paths[path].get.parameters)).not.toMatch(
        /maxLength\(|a string matching the pattern|character\(s\) long/
      )
    }
  })
  it("documents both mints' optional narrowing body: at least one permission, no other member (SPEC §4)", () => {
    const appToken = doc.paths["/app/accessTokens"].post
    const mint = doc.paths["/app/installations/{installationId}/accessTokens"].post
    for (const op of [appToken, mint]) {
      expect(op.requestBody.required).toBe(false)
      expect(op.requestBody.content["application/json"].schema).toEqual({
        $ref: "#/components/schemas/NarrowingRequest"
      })
      expect(op.responses["422"].description).toBe(
        "Problem document (`invalid_permissions`, `permissions_exceed_grant`)"
      )
    }
    const body = doc.components.schemas.NarrowingRequest
    expect(body.additionalProperties).toBe(false)
    expect(body.required).toEqual([])
    expect(body.properties.permissions).toEqual({ $ref: "#/components/schemas/RequestedPermissions" })
    expect(doc.components.schemas.RequestedPermissions.minProperties).toBe(1)
    expect(mint.responses["401"].headers["WWW-Authenticate"].description).toContain('realm="icr-apps"')
  })
  it("documents the three bearer schemes and the paging parameters", () => {
    expect(doc.components.securitySchemes.appJwt).toMatchObject({ type: "http", scheme: "bearer", bearerFormat: "JWT" })
    const params = doc.paths["/app/installations"].get.parameters.map((p: any) => `${p.in}:${p.name}`)
    expect(params).toEqual(
      expect.arrayContaining(["query:limit", "query:page", "query:cursor", "header:x-icr-api-version"])
    )
    const page = doc.components.schemas.InstallationPage
    expect(page.required).toEqual(expect.arrayContaining(["items", "limit", "total"]))
    expect(page.required).not.toContain("nextCursor")
    expect(page.required).not.toContain("page")
    expect(page.properties.nextCursor.type).toBe("string")
  })
  it("documents the operator listings: GET beside POST on /admin/apps and /admin/installations, paged, with Link", () => {
    const apps = doc.paths["/admin/apps"].get
    const installations = doc.paths["/admin/installations"].get
    expect(apps.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(["limit", "page"]))
    expect(installations.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(["appId", "limit", "page"]))
    for (const op of [apps, installations]) {
      expect(Object.keys(op.responses["200"].headers)).toEqual(["Link"])
      expect(op.security).toEqual([{ adminToken: [] }])
    }
    expect(installations.responses["404"].description).toMatch(/app_not_found/)
    expect(doc.components.schemas.AppPage.required).toEqual(expect.arrayContaining(["items", "page", "limit", "total"]))
  })
  it("names the origin it is served from first ('This server'), then production, once each", () => {
    expect(doc.servers).toEqual([{ url: "https://api.carbonregistry.com", description: "Production" }])
    expect(openApiDocument("http://127.0.0.1:8787").servers).toEqual([
      { url: "http://127.0.0.1:8787", description: "This server" },
      { url: "https://api.carbonregistry.com", description: "Production" }
    ])
    expect(openApiDocument("https://api.carbonregistry.com").servers).toEqual([
      { url: "https://api.carbonregistry.com", description: "This server" }
    ])
    // Per origin, the rest of the document is the one generated from the definition.
    expect({ ...openApiDocument("http://a.test"), servers: [] }).toEqual({ ...doc, servers: [] })
  })
})
