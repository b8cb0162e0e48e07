/**
 * The direct path (`Direct.ts`) answers exactly as the router does: every request below goes to two
 * issuers over the same registry — one that takes the direct path, one that routes everything
 * (`directPath: false`) — and their answers (status, every header but `Date`, the body byte for
 * byte) and their audit events must be the same. Each scenario also says whether the direct path
 * must have answered it, so removing the direct path (or narrowing it) fails here too.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { StoredToken } from "../../src/api/Tokens.js"
import { digestOf } from "../../src/issuer/AccessTokens.js"
import * as AuditLog from "../../src/issuer/AuditLog.js"
import * as Entropy from "../../src/issuer/Entropy.js"
import { type DirectRoute, MIN_ADMIN_TOKEN_LENGTH, makeWebHandler, type WebHandler } from "../../src/issuer/Issuer.js"
import * as RateLimiter from "../../src/issuer/RateLimiter.js"
import * as Registry from "../../src/issuer/Registry.js"
import { rsaKeyPair, signRs256 } from "../fixtures.js"

const ORIGIN = "http://icr.test"
const ADMIN = "d".repeat(MIN_ADMIN_TOKEN_LENGTH)
const GRANT = { organization_info: "VIEW", organization_members: "VIEW" } as const
const PEER = { remoteAddress: "203.0.113.7" }
const ISO_TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g

/** How often an issuer drew entropy through the forms without an effect (only the direct path does). */
let drawnNow = 0

/**
 * The same secrets and ids, in the same order, for each issuer: both mint identical tokens. With
 * the forms without an effect too, as the platform's source has them, drawing from the same sequence.
 */
const seededEntropy = (): Layer.Layer<Entropy.Entropy> => {
  let n = 0
  const bytes = (size: number) => {
    n++
    return Uint8Array.from({ length: size }, (_, i) => (n * 31 + i * 7) & 255)
  }
  const uuid = () => `00000000-0000-4000-8000-${(++n).toString(16).padStart(12, "0")}`
  return Layer.succeed(Entropy.Entropy, {
    bytes: (size) => Effect.sync(() => bytes(size)),
    uuid: Effect.sync(uuid),
    bytesNow: (size) => {
      drawnNow++
      return bytes(size)
    },
    uuidNow: () => {
      drawnNow++
      return uuid()
    }
  })
}

/** The registry both issuers share, with a switch that makes its reads and writes fail (503). */
const sharedRegistry = (promises: boolean) => {
  const inner = Effect.runSync(Effect.provide(Registry.Registry, Registry.layerMemory))
  const failing = new Set<string>()
  const wrapped: Record<string, unknown> = {}
  for (const [name, f] of Object.entries(inner)) {
    wrapped[name] = (...args: Array<unknown>) =>
      failing.has(name)
        ? Effect.fail(new Registry.StorageUnavailable())
        : (f as (...a: Array<unknown>) => unknown)(...args)
  }
  // The promise form of a token's standing, as `SqlRegistry` has it: the direct path then reads it
  // without a fiber. Without it (`promises: false`), on one.
  const reads = { promised: 0 }
  if (promises) {
    // As `SqlRegistry` has them: the effects' answers, a failure rejecting.
    const now =
      (name: "findToken" | "getAppWithInstallation" | "putToken") =>
      (...args: Array<unknown>) => {
        reads.promised++
        // A failure rejects as itself (a `StorageUnavailable`), as `SqlRegistry`'s promise forms do.
        const effect = (wrapped[name] as (...a: Array<unknown>) => Effect.Effect<unknown, unknown>)(...args)
        return Effect.runPromise(Effect.either(effect)).then((result) =>
          result._tag === "Right" ? result.right : Promise.reject(result.left)
        )
      }
    wrapped.findTokenNow = now("findToken")
    wrapped.getAppWithInstallationNow = now("getAppWithInstallation")
    wrapped.putTokenNow = now("putToken")
  }
  return { registry: inner, layer: Layer.succeed(Registry.Registry, wrapped as typeof inner), failing, reads }
}

interface Issuer {
  readonly handler: WebHandler
  readonly audit: Array<AuditLog.AuditEvent>
  readonly direct: Array<DirectRoute>
}

const issuerOver = (registry: Layer.Layer<Registry.Registry>, direct: boolean, principalLimit: number): Issuer => {
  const audit: Array<AuditLog.AuditEvent> = []
  const answered: Array<DirectRoute> = []
  const handler = makeWebHandler(Layer.mergeAll(registry, seededEntropy()), {
    adminToken: Redacted.make(ADMIN),
    auditLog: AuditLog.layerMemory(audit),
    rateLimiter: RateLimiter.layerMemory({
      limit: 10_000,
      periodSeconds: 60,
      principal: { limit: principalLimit, periodSeconds: 60 }
    }),
    directPath: direct,
    onDirectAnswer: (route) => answered.push(route)
  })
  return { handler, audit, direct: answered }
}

/** A response as compared: status, headers but `Date`, and the body as text. */
const snapshot = async (response: Response) => {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    if (name !== "date") headers[name] = value
  })
  return { status: response.status, headers, body: await response.text() }
}

/** The time of an audit event is the only field allowed to differ (the two requests are not simultaneous). */
const timeless = (events: ReadonlyArray<AuditLog.AuditEvent>) => events.map(({ time: _, ...rest }) => rest)

/** Two issuers over one registry, and a way to send both the same request. */
const pair = async (principalLimit = 10_000, promises = true) => {
  const shared = sharedRegistry(promises)
  const direct = issuerOver(shared.layer, true, principalLimit)
  const routed = issuerOver(shared.layer, false, principalLimit)
  // A third issuer seeds the registry, so the two compared draw the same entropy.
  const seeder = issuerOver(shared.layer, false, 10_000)
  const admin = async (method: string, path: string, body: unknown) => {
    const res = await seeder.handler.handler(
      new Request(`${ORIGIN}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      })
    )
    expect(res.status, `${method} ${path}`).toBeLessThan(300)
    const text = await res.text()
    return (text === "" ? {} : JSON.parse(text)) as Record<string, any>
  }
  let sent = 0
  /**
   * Sends the request `make` builds to both issuers (the direct one first) and expects the same
   * answer and the same audit events; `viaDirect`: whether the direct path must have answered it.
   */
  const both = async (name: string, make: () => Request, viaDirect: boolean) => {
    const id = `req-${++sent}`
    const withId = () => {
      const request = make()
      if (!request.headers.has("x-request-id")) request.headers.set("x-request-id", id)
      return request
    }
    const [directBefore, auditBefore, routedAuditBefore] = [
      direct.direct.length,
      direct.audit.length,
      routed.audit.length
    ]
    const request = withId()
    const ours = await snapshot(await direct.handler.handler(request, PEER))
    const theirs = await snapshot(await routed.handler.handler(withId(), PEER))
    // A mint's times are the clock's when each issuer minted; everything else, the token included, is the same.
    const timesOf = (body: string) => (request.method === "POST" ? body.replace(ISO_TIME, "<time>") : body)
    // A 429's Retry-After counts down its window: the two answers may fall either side of a second.
    const countdown = (answer: typeof ours) => {
      if (answer.status !== 429) return { ...answer, body: timesOf(answer.body) }
      const seconds = Number(answer.headers["retry-after"])
      expect(seconds, `${name}: Retry-After`).toBeGreaterThanOrEqual(1)
      expect(seconds, `${name}: Retry-After`).toBeLessThanOrEqual(60)
      return {
        ...answer,
        headers: { ...answer.headers, "retry-after": "<seconds>" },
        body: answer.body.replace(/"retryAfter":\d+/, '"retryAfter":"<seconds>"')
      }
    }
    expect(countdown(ours), name).toEqual(countdown(theirs))
    expect(timeless(direct.audit.slice(auditBefore)), `${name}: audit events`).toEqual(
      timeless(routed.audit.slice(routedAuditBefore))
    )
    // Over a registry without promise forms, the direct path takes nothing: every request is routed.
    expect(direct.direct.length - directBefore, `${name}: answered by the direct path`).toBe(
      viaDirect && promises ? 1 : 0
    )
    expect(routed.direct, "the routing issuer never takes the direct path").toEqual([])
    return ours
  }
  const dispose = () => Promise.all([direct.handler.dispose(), routed.handler.dispose(), seeder.handler.dispose()])
  return { admin, both, dispose, registry: shared.registry, failing: shared.failing, reads: shared.reads }
}

const describeRequest =
  (bearer: string | undefined, extra: Record<string, string> = {}, path = "/app/installations/token", method = "GET") =>
  () =>
    new Request(`${ORIGIN}${path}`, {
      method,
      headers: { ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }), ...extra }
    })

const mintRequest =
  (installationId: string, bearer: string, body: string | undefined = undefined, extra: Record<string, string> = {}) =>
  () =>
    new Request(`${ORIGIN}/app/installations/${installationId}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json", ...extra },
      ...(body === undefined ? {} : { body })
    })

/** An app with a key, an installation of it, and App JWTs. */
const seed = async (admin: Awaited<ReturnType<typeof pair>>["admin"], name: string) => {
  const keys = await rsaKeyPair()
  const app = await admin("POST", "/admin/apps", { name, permissions: GRANT, publicKey: keys.publicPem })
  const installation = await admin("POST", "/admin/installations", {
    appId: app.id,
    organizationId: crypto.randomUUID(),
    permissions: GRANT
  })
  const now = Math.floor(Date.now() / 1000)
  const jwt = (claims: Record<string, unknown> = {}) =>
    signRs256(keys.privateKey, { iss: String(app.id), iat: now - 60, exp: now + 540, ...claims })
  return { appId: String(app.id), installationId: String(installation.id), jwt, keys }
}

describe("the direct path answers as the router does (issue 16)", () => {
  it.each([
    ["", true],
    [" (a registry without findTokenNow: all routed)", false]
  ])(
    "token uses%s: successes and every kind of refusal, with the same answers and audit events",
    async (_, promises) => {
      const { admin, both, dispose, registry, failing, reads } = await pair(10_000, promises)
      const { appId, installationId, jwt } = await seed(admin, "describe")
      const other = await seed(admin, "describe-other")
      const good = await jwt()
      // Tokens minted through the router (the routing issuer of a fresh pair would do as well).
      const minted = await both("mint", mintRequest(installationId, good), true)
      expect(minted.status).toBe(200)
      const token = JSON.parse(minted.body).token as string
      const mintToken = async (installation: string, bearer: string) =>
        JSON.parse((await both("mint", mintRequest(installation, bearer), true)).body).token as string

      expect((await both("describe", describeRequest(token), true)).status).toBe(200)
      const described = JSON.parse((await both("describe again", describeRequest(token), true)).body)
      expect(described).toMatchObject({ kind: "installation", appId, installationId })
      await both(
        "describe, the caller's request id",
        describeRequest(token, { "x-request-id": "the-callers-own-id" }),
        true
      )
      await both("describe, this API version", describeRequest(token, { "x-icr-api-version": "2023-06-16" }), true)

      // An app token, minted by the router (its route is not direct), described by the direct path.
      const appToken = await both(
        "app token mint",
        () =>
          new Request(`${ORIGIN}/app/accessTokens`, {
            method: "POST",
            headers: { authorization: `Bearer ${good}`, "content-type": "application/json" }
          }),
        false
      )
      expect((await both("describe an app token", describeRequest(JSON.parse(appToken.body).token), true)).status).toBe(
        200
      )

      // Refusals the direct path never takes: the request's shape.
      const routedOnly: ReadonlyArray<[string, () => Request]> = [
        ["no credential", describeRequest(undefined)],
        [
          "another scheme",
          () => new Request(`${ORIGIN}/app/installations/token`, { headers: { authorization: "Basic abc" } })
        ],
        ["malformed token", describeRequest("crs_nothex")],
        ["upper-case hex", describeRequest(token.toUpperCase().replace("CRS_", "crs_"))],
        ["a JWT instead", describeRequest(good)],
        ["other version", describeRequest(token, { "x-icr-api-version": "2020-01-01" })],
        ["over-long Authorization", describeRequest(`crs_${"a".repeat(9000)}`)],
        ["a query", describeRequest(token, {}, "/app/installations/token?x=1")],
        ["trailing slash", describeRequest(token, {}, "/app/installations/token/")],
        ["another spelling", describeRequest(token, {}, "/APP/installations/token")],
        ["HEAD", describeRequest(token, {}, "/app/installations/token", "HEAD")],
        ["POST", describeRequest(token, {}, "/app/installations/token", "POST")]
      ]
      for (const [name, make] of routedOnly) await both(`describe, ${name}`, make, false)

      // Refusals after the lookup: the direct path answers them, as the router would.
      await both("describe, unknown token", describeRequest(`crs_${"ab".repeat(24)}`), true)
      const revoked = await mintToken(installationId, good)
      await Effect.runPromise(registry.revokeToken(await Effect.runPromise(digestOf(revoked)), Date.now()))
      expect((await both("describe, revoked", describeRequest(revoked), true)).status).toBe(401)
      const expired = `crs_${"5e".repeat(24)}`
      const now = Date.now()
      await Effect.runPromise(
        registry.putToken(
          await Effect.runPromise(digestOf(expired)),
          new StoredToken({
            id: crypto.randomUUID(),
            kind: "installation",
            appId,
            installationId,
            organizationId: crypto.randomUUID(),
            permissions: GRANT,
            createdAt: now - 3_600_000,
            expiresAt: now - 1000,
            appEpoch: 0,
            installationEpoch: 0
          })
        )
      )
      expect(JSON.parse((await both("describe, expired", describeRequest(expired), true)).body).detail).toMatch(
        /expired/
      )
      // Kill switches, read on every use: a suspension, a change of permissions, an epoch bump, an uninstall.
      const suspendedToken = await mintToken(other.installationId, await other.jwt())
      expect((await both("describe before the suspension", describeRequest(suspendedToken), true)).status).toBe(200)
      await admin("PATCH", `/admin/installations/${other.installationId}`, { suspended: true })
      expect((await both("describe, suspended", describeRequest(suspendedToken), true)).status).toBe(401)
      await admin("PATCH", `/admin/installations/${other.installationId}`, { suspended: false })
      expect((await both("describe, unsuspended (still ended)", describeRequest(suspendedToken), true)).status).toBe(
        401
      )
      const killed = await mintToken(installationId, good)
      await admin("POST", `/admin/installations/${installationId}/revokeTokens`, {})
      expect((await both("describe, epoch bumped", describeRequest(killed), true)).status).toBe(401)
      await both("describe, the first token after the bump", describeRequest(token), true)
      // Storage failing: 503, as the router answers it.
      failing.add("findToken")
      const fresh = await mintToken(installationId, good)
      expect((await both("describe, storage down", describeRequest(fresh), true)).status).toBe(503)
      failing.delete("findToken")
      expect((await both("describe, storage back", describeRequest(fresh), true)).status).toBe(200)
      // The direct path read the standing as a promise (and without one, nothing read it so).
      expect(reads.promised > 0).toBe(promises)
      await dispose()
    },
    60_000
  )

  it.each([
    ["", true],
    [" (a registry without promise forms: all routed)", false]
  ])(
    "installation-token mints%s: successes and every kind of refusal, with the same answers and audit events",
    async (_, promises) => {
      const { admin, both, dispose, failing, reads } = await pair(10_000, promises)
      const drawnBefore = drawnNow
      const { appId, installationId, jwt, keys } = await seed(admin, "mint")
      const other = await seed(admin, "mint-other")
      const good = await jwt()
      const ok = await both("mint", mintRequest(installationId, good), true)
      expect(ok.status).toBe(200)
      expect(JSON.parse(ok.body)).toMatchObject({ installationId, isActive: true, permissions: GRANT })
      await both("mint, upper-case id", mintRequest(installationId.toUpperCase(), good), true)
      await both("mint, {}", mintRequest(installationId, good, "{}"), true)
      await both(
        "mint, narrowed",
        mintRequest(installationId, good, '{"permissions":{"organization_info":"VIEW"}}'),
        true
      )
      await both(
        "mint, this API version",
        mintRequest(installationId, good, undefined, { "x-icr-api-version": "2023-06-16" }),
        true
      )
      const claims = () => ({
        iss: appId,
        iat: Math.floor(Date.now() / 1000) - 60,
        exp: Math.floor(Date.now() / 1000) + 540
      })
      await both(
        "mint, a kid that names no key",
        mintRequest(
          installationId,
          await signRs256(keys.privateKey, claims(), { alg: "RS256", typ: "JWT", kid: "nokey" })
        ),
        true
      )

      // The shape of the request: routed.
      const routedOnly: ReadonlyArray<[string, () => Request]> = [
        ["an access token instead", mintRequest(installationId, `crs_${"ab".repeat(24)}`)],
        [
          "no credential",
          () => new Request(`${ORIGIN}/app/installations/${installationId}/accessTokens`, { method: "POST" })
        ],
        ["unknown level", mintRequest(installationId, good, '{"permissions":{"organization_info":"WRITE"}}')],
        ["empty grant", mintRequest(installationId, good, '{"permissions":{}}')],
        ["unknown member", mintRequest(installationId, good, '{"other":1}')],
        ["malformed id", mintRequest("not-a-uuid", good)],
        ["other version", mintRequest(installationId, good, undefined, { "x-icr-api-version": "2020-01-01" })],
        ["percent-encoded id", mintRequest(installationId.replace(/-/g, "%2D"), good)],
        [
          "a query",
          () =>
            new Request(`${ORIGIN}/app/installations/${installationId}/accessTokens?x=1`, {
              method: "POST",
              headers: { authorization: `Bearer ${good}` }
            })
        ],
        // The edge refuses these before any route is chosen.
        ["wrong content type", mintRequest(installationId, good, "permissions=1", { "content-type": "text/plain" })],
        ["not JSON", mintRequest(installationId, good, "{permissions")],
        ["too deep", mintRequest(installationId, good, `${"[".repeat(40)}${"]".repeat(40)}`)],
        ["declared too large", mintRequest(installationId, good, "{}", { "content-length": String(64 * 1024) })],
        ["too large", mintRequest(installationId, good, JSON.stringify({ permissions: { x: "y".repeat(20_000) } }))]
      ]
      for (const [name, make] of routedOnly) await both(`mint, ${name}`, make, false)

      // Refusals of the verification and of the mint: answered by the direct path, as the router would.
      const now = Math.floor(Date.now() / 1000)
      const stranger = await rsaKeyPair()
      const refused: ReadonlyArray<[string, () => Request, number]> = [
        [
          "bad signature",
          mintRequest(
            installationId,
            await signRs256(stranger.privateKey, { iss: appId, iat: now - 60, exp: now + 540 })
          ),
          401
        ],
        [
          "unknown app",
          mintRequest(
            installationId,
            await signRs256(stranger.privateKey, { iss: "999999", iat: now - 60, exp: now + 540 })
          ),
          401
        ],
        ["expired JWT", mintRequest(installationId, await jwt({ iat: now - 700, exp: now - 100 })), 401],
        ["malformed JWT", mintRequest(installationId, "a.b.c"), 401],
        ["unknown installation", mintRequest("11111111-2222-4333-8444-555555555555", good), 404],
        ["another app's installation", mintRequest(other.installationId, good), 404],
        ["beyond the grant", mintRequest(installationId, good, '{"permissions":{"organization_projects":"VIEW"}}'), 422]
      ]
      for (const [name, make, status] of refused)
        expect((await both(`mint, ${name}`, make, true)).status, name).toBe(status)
      await admin("PATCH", `/admin/installations/${installationId}`, { suspended: true })
      expect((await both("mint, suspended", mintRequest(installationId, good), true)).status).toBe(403)
      await admin("PATCH", `/admin/installations/${installationId}`, { suspended: false })
      expect((await both("mint, unsuspended", mintRequest(installationId, good), true)).status).toBe(200)
      // Storage failing while reading, then while storing the token (the failure is audited).
      failing.add("getAppWithInstallation")
      expect((await both("mint, storage down", mintRequest(installationId, good), true)).status).toBe(503)
      failing.delete("getAppWithInstallation")
      failing.add("putToken")
      expect((await both("mint, storage fails to store", mintRequest(installationId, good), true)).status).toBe(503)
      failing.delete("putToken")
      expect((await both("mint, storage back", mintRequest(installationId, good), true)).status).toBe(200)
      // The direct path read and wrote as promises, and drew its entropy without an effect (and
      // without the promise forms, nothing did either).
      expect(reads.promised > 0).toBe(promises)
      expect(drawnNow > drawnBefore).toBe(promises)
      await dispose()
    },
    60_000
  )

  it("rate limits: each principal's budget is counted once per request, and 429 answered alike", async () => {
    const { admin, both, dispose } = await pair(3)
    const { installationId, jwt } = await seed(admin, "limited")
    const good = await jwt()
    /** 429's `Retry-After` counts down the window: the two answers may fall either side of a second. */
    const statusOf = async (name: string, make: () => Request) => {
      const answer = await both(name, make, true)
      return answer.status
    }
    // The app is the principal of its mints, the installation that of its tokens' uses.
    const mints: Array<number> = []
    for (let i = 0; i < 5; i++) mints.push(await statusOf(`mint ${i}`, mintRequest(installationId, good)))
    expect(mints).toEqual([200, 200, 200, 429, 429])
    const other = await seed(admin, "limited-uses")
    const token = JSON.parse((await both("mint", mintRequest(other.installationId, await other.jwt()), true)).body)
      .token as string
    const uses: Array<number> = []
    for (let i = 0; i < 4; i++) uses.push(await statusOf(`use ${i}`, describeRequest(token)))
    expect(uses).toEqual([200, 200, 200, 429])
    await dispose()
  }, 60_000)
})
