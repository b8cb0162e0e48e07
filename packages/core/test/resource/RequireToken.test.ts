/**
 * `requireToken` (SPEC §10) against the real issuer handlers in memory (the testkit's fake issuer,
 * reached as a service binding would be): token kind, organization, levels in SPEC §3's order, the
 * problem documents of each refusal, and the standing cache on a TestClock.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { makeFakeIssuer } from "../../../testkit/src/FakeIssuer.js"
import { Problems } from "../../src/api/Problems.js"
import * as RequireToken from "../../src/resource/RequireToken.js"
import * as TokenStanding from "../../src/resource/TokenStanding.js"
import { createIcrAppsClient } from "../../src/sdk/Promise.js"
import { rsaKeyPair } from "../fixtures.js"

const keys = await rsaKeyPair()
const org = "0b9a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
const otherOrg = "1b9a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"

const setup = async () => {
  const issuer = makeFakeIssuer()
  const app = await issuer.arrange.createApp({ publicKey: keys.publicPem })
  const installation = await issuer.arrange.install(app.id, {
    organizationId: org,
    permissions: { organization_inventory: "REQUEST", organization_info: "VIEW" }
  })
  const sdk = createIcrAppsClient({
    appId: app.id,
    privateKey: keys.privatePem,
    baseUrl: "https://issuer.test",
    fetch: issuer.fetch
  })
  const installationToken = (permissions?: Record<string, string>) =>
    sdk.createInstallationAccessToken(installation.id, permissions === undefined ? {} : ({ permissions } as never))
  return { issuer, app, installation, sdk, installationToken }
}

const get = (token?: string, headers: Record<string, string> = {}) =>
  new Request("https://resource.test/x", {
    headers: token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers }
  })

describe("requireToken (plain fetch guard)", () => {
  it("passes a token that meets the route, and answers 403 insufficient_permissions naming what is short", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const guard = RequireToken.makeRequireToken({ issuer })
    const { token } = await installationToken()
    const ok = await guard.check(get(token), {
      organizationId: org,
      permissions: { organization_inventory: "REQUEST" }
    })
    expect(ok.ok && ok.token.organizationId).toBe(org)

    const short = await guard.check(get(token), { permissions: { organization_inventory: "WRITE" } })
    expect(short.ok).toBe(false)
    const response = !short.ok ? short.response : undefined!
    expect(response.status).toBe(403)
    expect(response.headers.get("content-type")).toBe("application/problem+json")
    expect(await response.json()).toMatchObject({
      code: "insufficient_permissions",
      status: 403,
      permission: "organization_inventory",
      level: "WRITE"
    })

    // Narrowed to VIEW: REQUEST is now beyond it (VIEW < REQUEST < WRITE).
    const narrowed = (await installationToken({ organization_inventory: "VIEW" })).token
    const view = await guard.check(get(narrowed), { permissions: { organization_inventory: "VIEW" } })
    expect(view.ok).toBe(true)
    const request = await guard.check(get(narrowed), { permissions: { organization_inventory: "REQUEST" } })
    expect(!request.ok && (await request.response.json()).level).toBe("REQUEST")
    // A permission the token lacks altogether.
    const missing = await guard.check(get(token), { permissions: { organization_warehouse: "VIEW" } })
    expect(!missing.ok && (await missing.response.json()).permission).toBe("organization_warehouse")
    await sdk.dispose()
  })

  it("fails closed on a requirement the compiler did not check: an unknown permission, level or kind refuses every token", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const guard = RequireToken.makeRequireToken({ issuer })
    const { token } = await installationToken()
    const wrong = [
      { permissions: { organization_inventory: "write" } },
      { permissions: { organization_inventory: "ADMIN" } },
      { permissions: { organization_info: "WRITE" } },
      { permissions: { organization_invntory: "VIEW" } },
      { kind: "ap" }
    ] as unknown as ReadonlyArray<RequireToken.Requirement>
    for (const requirement of wrong) {
      const result = await guard.check(get(token), requirement)
      expect(result.ok).toBe(false)
      const response = !result.ok ? result.response : undefined!
      expect(response.status).toBe(403)
      expect(await response.json()).toMatchObject({ code: "forbidden" })
      // Wired as a route, the same requirement is refused when the route is made, not on a request.
      expect(() => guard.route(requirement, async () => new Response("served"))).toThrow(/requirement/)
    }
    expect(
      RequireToken.requirementProblem({ permissions: { organization_inventory: "VIEW" }, kind: "installation" })
    ).toBe(undefined)
    await sdk.dispose()
  })

  it("refuses the wrong organization and the wrong kind, naming the route's permission", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const guard = RequireToken.makeRequireToken({ issuer })
    const { token } = await installationToken()
    const wrongOrg = await guard.check(get(token), {
      organizationId: otherOrg,
      permissions: { organization_inventory: "VIEW" }
    })
    expect(!wrongOrg.ok && (await wrongOrg.response.json())).toMatchObject({
      code: "insufficient_permissions",
      permission: "organization_inventory",
      level: "VIEW"
    })
    // The organization is matched case-insensitively (ids are, SPEC §1).
    expect((await guard.check(get(token), { organizationId: org.toUpperCase() })).ok).toBe(true)

    const appToken = (await sdk.createAppAccessToken()).token
    const asApp = await guard.check(get(appToken), { organizationId: org, permissions: { organization_info: "VIEW" } })
    expect(!asApp.ok && asApp.response.status).toBe(403)
    // A route that takes either kind serves the app token; one that takes installation tokens only does not.
    expect((await guard.check(get(appToken), {})).ok).toBe(true)
    const kindOnly = await guard.check(get(appToken), { kind: "installation" })
    expect(!kindOnly.ok && (await kindOnly.response.json()).code).toBe("forbidden")
    await sdk.dispose()
  })

  it("answers 401 invalid_token for none, a malformed one, a revoked one — WWW-Authenticate as SPEC §1 says", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const guard = RequireToken.makeRequireToken({ issuer })
    const none = await guard.check(get())
    expect(!none.ok && none.response.status).toBe(401)
    expect(!none.ok && none.response.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps"')
    expect(!none.ok && (await none.response.json()).code).toBe("invalid_token")

    const before = issuer.requests().length
    const jwtLike = await guard.check(get("eyJhbGciOiJSUzI1NiJ9.e30.sig"))
    expect(!jwtLike.ok && jwtLike.response.headers.get("www-authenticate")).toBe(
      'Bearer realm="icr-apps", error="invalid_token"'
    )
    expect(issuer.requests().length).toBe(before) // not an access token: the issuer is not asked

    const { token } = await installationToken()
    expect((await guard.check(get(token))).ok).toBe(true)
    await sdk.revokeAccessToken(token)
    const revoked = await guard.check(get(token))
    expect(!revoked.ok && revoked.response.status).toBe(401)
    const body = !revoked.ok ? await revoked.response.text() : ""
    expect(body).toContain("invalid_token")
    expect(body).not.toContain(token)
    await sdk.dispose()
  })

  it("route() runs the handler only for a token that meets the requirement", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const guard = RequireToken.makeRequireToken({ issuer })
    let calls = 0
    const handler = guard.route({ permissions: { organization_inventory: "VIEW" } }, (_request, token) => {
      calls++
      return Response.json({ organizationId: token.organizationId })
    })
    const { token } = await installationToken()
    expect(await (await handler(get(token))).json()).toEqual({ organizationId: org })
    expect((await handler(get())).status).toBe(401)
    expect(calls).toBe(1)
    await sdk.dispose()
  })

  it("an issuer that cannot answer is 503 unavailable with Retry-After, never 500; its 429 passes on", async () => {
    const down = RequireToken.makeRequireToken({
      issuer: { fetch: () => Promise.reject(new TypeError("fetch failed")) }
    })
    const result = await down.check(get(`crs_${"a".repeat(48)}`))
    expect(!result.ok && result.response.status).toBe(503)
    expect(!result.ok && result.response.headers.get("retry-after")).toBe("1")
    const limited = RequireToken.makeRequireToken({
      issuer: {
        fetch: async () => Response.json({ code: "rate_limited" }, { status: 429, headers: { "retry-after": "7" } })
      }
    })
    const r = await limited.check(get(`crs_${"a".repeat(48)}`))
    expect(!r.ok && r.response.status).toBe(429)
    expect(!r.ok && r.response.headers.get("retry-after")).toBe("7")
    const garbage = RequireToken.makeRequireToken({ issuer: { fetch: async () => new Response("<html>") } })
    const g = await garbage.check(get(`crs_${"a".repeat(48)}`))
    expect(!g.ok && g.response.status).toBe(503)
  })
})

describe("TokenStanding over a URL", () => {
  it("never follows a redirect: a 302 to another origin that 'describes' any token is 503, not a grant", async () => {
    const { createServer } = await import("node:http")
    const listen = (handler: Parameters<typeof createServer>[1]) =>
      new Promise<{ url: string; close: () => void; hits: () => number }>((resolve) => {
        let hits = 0
        const server = createServer((req, res) => {
          hits += 1
          handler!(req, res)
        }).listen(0, "127.0.0.1", () => {
          const { port } = server.address() as { port: number }
          resolve({ url: `http://127.0.0.1:${port}`, close: () => server.close(), hits: () => hits })
        })
      })
    const description = {
      kind: "installation",
      appId: "1",
      installationId: "123e4567-e89b-12d3-a456-426614174000",
      organizationId: org,
      permissions: { organization_inventory: "WRITE" },
      expiresAt: new Date(Date.now() + 3_600_000).toISOString()
    }
    const elsewhere = await listen((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(description))
    })
    const issuer = await listen((_req, res) => {
      res.writeHead(302, { location: `${elsewhere.url}/app/installations/token` }).end()
    })
    try {
      const guard = RequireToken.makeRequireToken({ issuer: issuer.url })
      const result = await guard.check(get(`crs_${"ab".repeat(24)}`), {
        permissions: { organization_inventory: "VIEW" }
      })
      expect(!result.ok && result.response.status).toBe(503)
      expect(issuer.hits()).toBe(1)
      expect(elsewhere.hits()).toBe(0)
    } finally {
      issuer.close()
      elsewhere.close()
    }
  })
})

describe("TokenStanding cache (TestClock)", () => {
  it.effect("default 0: every request asks the issuer, so a revocation is seen at once", () =>
    Effect.gen(function* () {
      const { issuer, installationToken, sdk } = yield* Effect.promise(setup)
      const { token } = yield* Effect.promise(() => installationToken())
      const standing = yield* TokenStanding.make({ issuer })
      const before = issuer.requests().length
      yield* standing.resolve(Redacted.make(token))
      yield* standing.resolve(Redacted.make(token))
      expect(issuer.requests().length - before).toBe(2)
      yield* Effect.promise(() => sdk.revokeAccessToken(token))
      const e = yield* Effect.flip(standing.resolve(Redacted.make(token)))
      expect(e._tag).toBe("InvalidToken")
      yield* Effect.promise(() => sdk.dispose())
    })
  )

  it.effect("cacheSeconds: 30 reuses a standing for 30 s of test time, then asks again", () =>
    Effect.gen(function* () {
      const { issuer, installationToken, sdk } = yield* Effect.promise(setup)
      const { token } = yield* Effect.promise(() => installationToken())
      // The test clock starts at the epoch; move it to the issuer's now so the token is not expired here.
      yield* TestClock.setTime(Date.now())
      const standing = yield* TokenStanding.make({ issuer, cacheSeconds: 30 })
      const before = issuer.requests().length
      yield* standing.resolve(Redacted.make(token))
      yield* TestClock.adjust("29 seconds")
      yield* standing.resolve(Redacted.make(token))
      expect(issuer.requests().length - before).toBe(1)
      yield* TestClock.adjust("2 seconds")
      yield* standing.resolve(Redacted.make(token))
      expect(issuer.requests().length - before).toBe(2)
      yield* Effect.promise(() => sdk.dispose())
    })
  )

  it.effect("a standing is never reused past the token's expiry", () =>
    Effect.gen(function* () {
      const { issuer, installationToken, sdk } = yield* Effect.promise(setup)
      const { token, expiresAt } = yield* Effect.promise(() => installationToken())
      yield* TestClock.setTime(Date.parse(expiresAt) - 5_000)
      const standing = yield* TokenStanding.make({ issuer, cacheSeconds: 3600 })
      yield* standing.resolve(Redacted.make(token))
      yield* TestClock.adjust("6 seconds")
      // Past expiresAt by the resource's clock: refused even though the issuer (on real time) still says yes.
      const e = yield* Effect.flip(standing.resolve(Redacted.make(token)))
      expect(e._tag).toBe("InvalidToken")
      yield* Effect.promise(() => sdk.dispose())
    })
  )
})

// An HttpApi resource served behind the middleware.
const Inventory = Schema.Struct({ organizationId: Schema.String })
const ResourceApi = HttpApi.make("resource").add(
  HttpApiGroup.make("inventory")
    .add(
      HttpApiEndpoint.get("read", "/organizations/:organizationId/inventory")
        .setPath(Schema.Struct({ organizationId: Schema.String }))
        .addSuccess(Inventory)
        .addError(Problems.InsufficientPermissions)
        .addError(Problems.Forbidden)
    )
    .middleware(RequireToken.TokenAuth)
)
const InventoryLive = HttpApiBuilder.group(ResourceApi, "inventory", (handlers) =>
  handlers.handle("read", ({ path }) =>
    Effect.map(
      RequireToken.requires({ organizationId: path.organizationId, permissions: { organization_inventory: "VIEW" } }),
      (token) => ({ organizationId: token.organizationId! })
    )
  )
)

describe("TokenAuth (HttpApi middleware)", () => {
  it("serves a token that meets the route; 401 with WWW-Authenticate; 403 naming the permission", async () => {
    const { issuer, installationToken, sdk } = await setup()
    const { handler, dispose } = HttpApiBuilder.toWebHandler(
      Layer.mergeAll(
        HttpApiBuilder.api(ResourceApi).pipe(
          Layer.provide(InventoryLive),
          Layer.provide(RequireToken.layer({ issuer }))
        ),
        HttpServer.layerContext
      )
    )
    const { token } = await installationToken()
    const call = (organizationId: string, t?: string) =>
      handler(
        new Request(`https://resource.test/organizations/${organizationId}/inventory`, {
          headers: t === undefined ? {} : { authorization: `Bearer ${t}` }
        })
      )
    const ok = await call(org, token)
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ organizationId: org })

    const wrong = await call(otherOrg, token)
    expect(wrong.status).toBe(403)
    expect(await wrong.json()).toMatchObject({
      code: "insufficient_permissions",
      permission: "organization_inventory",
      level: "VIEW"
    })

    await sdk.revokeAccessToken(token)
    const revoked = await call(org, token)
    expect(revoked.status).toBe(401)
    expect(revoked.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps", error="invalid_token"')
    expect((await revoked.json()).code).toBe("invalid_token")
    await dispose()
    await sdk.dispose()
  })
})
