/**
 * What an Effect team asked of the kit: faults equal to the real issuer's answers (bytes, headers,
 * decoded error), retry overrides merged with the kit's defaults, no time jump over a request in
 * flight, Effect-native arrange/fault/requests, a log with redacted headers, the SDK's transport
 * options, the issuer on the test's clock, and fixture keys.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Problems from "@icr-apps/core/api/Problems"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import { InstallationTokens } from "@icr-apps/core/sdk/InstallationTokens"
import * as TokenCache from "@icr-apps/core/sdk/TokenCache"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { declaredCodes, PROBLEM_CODES } from "../src/Faults.js"
import { Fault, FakeIssuer, type HttpFault, makeFakeIssuer } from "../src/FakeIssuer.js"
import { testOnlyKeyPair } from "../src/Fixtures.js"
import { appClaims, signRs256 } from "../src/Keys.js"
import { runAdvancing } from "../src/TestTime.js"

const BASE = "http://icr.test"
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5)

/** One request, sent to a fresh issuer in the state `arrange` leaves, with the fault (if any) aimed at it. */
const answer = async (
  arrange: (issuer: ReturnType<typeof makeFakeIssuer>, appId: string) => Promise<string>,
  options: { readonly rateLimit?: { limit: number; periodSeconds: number }; readonly fault?: HttpFault } = {}
) => {
  const issuer = makeFakeIssuer({
    now: () => NOW,
    seed: 1,
    ...(options.rateLimit ? { rateLimit: options.rateLimit } : {})
  })
  const keys = await testOnlyKeyPair(0)
  const app = await issuer.arrange.createApp({ publicKey: keys.publicPem, name: "same-app" })
  const path = await arrange(issuer, app.id)
  if (options.fault !== undefined) issuer.inject(options.fault)
  const send = async () =>
    issuer.fetch(`${BASE}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await signRs256(keys.privateKey, appClaims(app.id, NOW / 1000))}`,
        "x-request-id": "6f1c1a2e-4d7b-4e59-9a1c-0d2f3e4a5b6c",
        "cf-connecting-ip": "203.0.113.9"
      }
    })
  let response = await send()
  if (options.rateLimit !== undefined && options.fault === undefined) response = await send()
  return {
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: await response.text()
  }
}

const mintPath = async (issuer: ReturnType<typeof makeFakeIssuer>, appId: string) =>
  `/app/installations/${(await issuer.arrange.install(appId, { organizationId: crypto.randomUUID() })).id}/accessTokens`

describe("faults equal the real issuer's answers", () => {
  it("rate limited: Fault.problem(RateLimited) is the issuer's 429 byte for byte, headers and all", async () => {
    const real = await answer(async () => "/app/accessTokens", { rateLimit: { limit: 1, periodSeconds: 60 } })
    expect(real.status).toBe(429)
    const document = JSON.parse(real.body) as { retryAfter: number; detail: string }
    const faulted = await answer(async () => "/app/accessTokens", {
      fault: Fault.problem(Problems.RateLimited, { retryAfter: document.retryAfter, detail: document.detail })
    })
    expect(faulted).toEqual(real)
  })

  it("suspended: Fault.problem(InstallationSuspended) is the issuer's 403, detail included", async () => {
    const real = await answer(async (issuer, appId) => {
      const path = await mintPath(issuer, appId)
      await issuer.arrange.suspend(path.split("/")[3]!)
      return path
    })
    expect(real.status).toBe(403)
    const faulted = await answer(mintPath, { fault: Fault.problem(Problems.InstallationSuspended) })
    expect(faulted).toEqual(real)
  })

  it("unknown installation: Fault.status(404, { code }) is the issuer's 404", async () => {
    const real = await answer(async () => `/app/installations/${crypto.randomUUID()}/accessTokens`)
    expect(real.status).toBe(404)
    const faulted = await answer(async () => `/app/installations/${crypto.randomUUID()}/accessTokens`, {
      fault: Fault.status(404, { code: "installation_not_found" })
    })
    expect(faulted).toEqual(real)
  })

  it.effect("every status decodes to the SDK's typed error, as the real one does", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
      const failWith = (fault: HttpFault) =>
        Effect.gen(function* () {
          yield* FakeIssuer.fault({ route: "createInstallationAccessToken" }, fault)
          return yield* Effect.flip(tokens.get(installation.id, { refresh: true }))
        })
      const limited = yield* failWith(Fault.status(429, { retryAfter: "3" }))
      expect(limited).toBeInstanceOf(Problems.RateLimited)
      expect((limited as Problems.RateLimited).retryAfter).toBe(3)
      // A bare 403 is the endpoint's own 403: on a mint, the suspension.
      const forbidden = yield* failWith(Fault.status(403))
      expect(forbidden._tag).toBe("InstallationSuspended")
      const jwt = yield* failWith(Fault.status(401, { code: "invalid_jwt" }))
      expect(jwt).toMatchObject({ _tag: "InvalidJwt", reason: "invalid_signature" })
      const expired = yield* failWith(Fault.problem(Problems.InvalidJwt, { reason: "unsupported_algorithm" }))
      expect(expired).toMatchObject({ _tag: "InvalidJwt", reason: "unsupported_algorithm" })
      const unavailable = yield* failWith(Fault.problem(Problems.Unavailable, { retryAfter: 7 }))
      expect(unavailable).toMatchObject({ _tag: "Unavailable", retryAfter: 7 })
      const log = yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })
      expect(log.map((r) => [r.status, r.code, r.responseHeaders["retry-after"]])).toEqual([
        [429, "rate_limited", "3"],
        [403, "installation_suspended", undefined],
        [401, "invalid_jwt", undefined],
        [401, "invalid_jwt", undefined],
        [503, "unavailable", "7"]
      ])
    }).pipe(Effect.provide(FakeIssuer.layer({ sdk: { retry: { maxAttempts: 1 } } })))
  )

  it("Fault.status: a date Retry-After goes out as given; a status with no problem of its own is a bare document", async () => {
    const issuer = makeFakeIssuer({ now: () => NOW })
    const date = new Date(NOW + 5_000).toUTCString()
    issuer.inject(Fault.status(503, { retryAfter: date }), Fault.status(502), Fault.status(401))
    const first = await issuer.fetch(`${BASE}/app/installations`)
    expect([first.status, first.headers.get("retry-after")]).toEqual([503, date])
    expect(((await first.json()) as { code: string; retryAfter?: number }).retryAfter).toBeUndefined()
    const second = await issuer.fetch(`${BASE}/app/installations`)
    expect([second.status, ((await second.json()) as { code: string }).code]).toEqual([502, "internal"])
    // A bare 401 on a JWT route is invalid_jwt, with the reason its class needs and the challenge.
    const third = await issuer.fetch(`${BASE}/app/installations`)
    expect((await third.json()) as object).toMatchObject({ code: "invalid_jwt", reason: "invalid_signature" })
    expect(third.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps"')
  })

  it("codes are the union of the real codes", () => {
    expect([...PROBLEM_CODES].sort()).toEqual([...declaredCodes()].sort())
    // @ts-expect-error a typo in a code is a type error
    Fault.status(403, { code: "forbiden" })
  })
})

describe("time never jumps past work in flight", () => {
  it.effect("a retry override keeps the kit's attempt timeout: a 20 s delay is one slow request", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
      yield* FakeIssuer.fault({ route: "createInstallationAccessToken" }, Fault.delay(20_000))
      const { slept } = yield* runAdvancing(tokens.get(installation.id))
      expect(slept).toEqual([20_000])
      expect((yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })).length).toBe(1)
    }).pipe(Effect.provide(FakeIssuer.layer({ sdk: { retry: { maxAttempts: 5 } } })))
  )

  it.effect("the SDK's 10 s attempt timeout waits for a request whose real work takes long", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken" },
        Fault.script(() => new Promise((resolve) => setTimeout(resolve, 60)))
      )
      // The team's own code sleeps 30 s beside the mint: only that sleep is slept.
      const { slept } = yield* runAdvancing(
        Effect.all([tokens.get(installation.id), Effect.sleep("30 seconds")], { concurrency: "unbounded" })
      )
      expect(slept).toEqual([30_000])
      expect(issuer.mints(installation.id)).toBe(1)
      expect((yield* FakeIssuer.requests()).length).toBe(1)
    }).pipe(Effect.provide(FakeIssuer.layer({ sdk: { retry: { attemptTimeout: "10 seconds" } } })))
  )
})

describe("the Effect-native kit", () => {
  it.effect("arrange, fault and requests as Effects; the log keeps headers, never a credential", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const client = yield* IcrAppsClient
      const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
      yield* FakeIssuer.fault({ route: "getInstallation" }, Fault.networkError())
      yield* runAdvancing(client.getInstallation(installation.id))
      const token = yield* client.createInstallationAccessToken(installation.id)
      yield* client.describeAccessToken(token.token)
      const log = yield* FakeIssuer.requests()
      expect(log.map((r) => [r.method, r.path, r.route, r.status, r.fault ?? null])).toEqual([
        ["GET", `/app/installations/${installation.id}`, "getInstallation", 0, "NetworkError"],
        ["GET", `/app/installations/${installation.id}`, "getInstallation", 200, null],
        ["POST", `/app/installations/${installation.id}/accessTokens`, "createInstallationAccessToken", 200, null],
        ["GET", "/app/installations/token", "describeAccessToken", 200, null]
      ])
      expect(log[0]!.headers.authorization).toBe("Bearer <app_jwt>")
      expect(log[3]!.headers.authorization).toBe("Bearer <access_token>")
      expect(log[3]!.headers["x-icr-api-version"]).toBe("2023-06-16")
      const text = JSON.stringify(log)
      expect(text).not.toContain(Redacted.value(token.token))
      expect(text).not.toMatch(/crs_[0-9a-f]{48}|eyJ[\w-]+\.eyJ/)
    }).pipe(Effect.provide(FakeIssuer.layer()))
  )

  it.effect("takes the SDK's cache and httpClient, keeps the issuer on the test's clock, uses the fixture key", () => {
    const sets: Array<string> = []
    const cache = Layer.effect(
      TokenCache.TokenCache,
      Effect.map(TokenCache.TokenCache, (inner) => ({
        ...inner,
        set: (key: string, value: TokenCache.CachedToken) =>
          Effect.zipRight(
            Effect.sync(() => sets.push(key)),
            inner.set(key, value)
          )
      }))
    ).pipe(Layer.provide(TokenCache.layerMemoryCache()))
    return Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      expect(issuer.keys.publicPem).toBe((yield* Effect.promise(() => testOnlyKeyPair(0))).publicPem)
      yield* TestClock.adjust("3 hours")
      const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
      expect(DateTime.toEpochMillis(installation.createdAt)).toBe(3 * 3_600_000)
      const token = yield* tokens.get(installation.id)
      expect(DateTime.toEpochMillis(token.expiresAt)).toBe(5 * 3_600_000)
      expect(sets.length).toBe(1)
      const [mint] = yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })
      expect(mint!.headers["x-team-trace"]).toBe("abc")
      expect(Option.isSome(yield* Effect.serviceOption(FakeIssuer))).toBe(true)
    }).pipe(
      Effect.provide(
        FakeIssuer.layer({
          cache,
          httpClient: (client) => HttpClient.mapRequest(client, HttpClientRequest.setHeader("x-team-trace", "abc"))
        })
      )
    )
  })

  it.effect("the issuer reads the calling fiber's Clock, even when the layer was built on another", () =>
    Effect.gen(function* () {
      // Built outside the test, on the live clock (as a shared runtime or a beforeAll would).
      const runtime = ManagedRuntime.make(FakeIssuer.layer())
      const { context } = yield* Effect.promise(() => runtime.runtime())
      const at = Date.UTC(2030, 0, 1)
      yield* TestClock.setTime(at)
      const [createdAt, expiresAt, mints] = yield* Effect.gen(function* () {
        const issuer = yield* FakeIssuer
        const installation = yield* FakeIssuer.arrange.install(issuer.app.id)
        const token = yield* (yield* InstallationTokens).get(installation.id)
        return [
          DateTime.toEpochMillis(installation.createdAt),
          DateTime.toEpochMillis(token.expiresAt),
          (yield* FakeIssuer.requests()).map((r) => r.status)
        ] as const
      }).pipe(Effect.provide(context))
      yield* Effect.promise(() => runtime.dispose())
      expect([createdAt, expiresAt]).toEqual([at, at + 2 * 3_600_000])
      expect(mints).toEqual([200]) // no skew to learn: both sides read the same clock
    })
  )
})
