import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/Client"
import { InstallationTokens } from "@icr-apps/core/InstallationTokens"
import * as IcrApps from "@icr-apps/core/IcrApps"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { beforeAll } from "vitest"
import { Fault, makeFakeIssuer } from "../src/FakeIssuer.js"
import { type AppKeyPair, generateAppKeyPair } from "../src/Keys.js"
import { countRequests, runAdvancing, sdkLayer, setup, T0 } from "./sdk-harness.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

const MINT = /^\/app\/installations\/[^/]+\/accessTokens$/
const decodePayload = (jwt: string) => JSON.parse(atob(jwt.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")))

describe("AppJwt", () => {
  it.effect("signs iat = now - 60, exp = now + 540, and reuses one JWT until 60 s before exp", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const jwt = yield* AppJwt.make({ appId: 42, privateKey: keys.privatePem })
      const first = Redacted.value(yield* jwt.get)
      expect(decodePayload(first)).toEqual({ iat: T0 / 1000 - 60, exp: T0 / 1000 + 540, iss: "42" })
      yield* TestClock.adjust("479 seconds")
      expect(Redacted.value(yield* jwt.get)).toBe(first)
      yield* TestClock.adjust("1 second")
      const second = Redacted.value(yield* jwt.get)
      expect(second).not.toBe(first)
      expect(decodePayload(second).iat).toBe(T0 / 1000 + 480 - 60)
    })
  )
  it.effect("never signs a lifetime beyond 600 s", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const jwt = yield* AppJwt.make({ appId: "1", privateKey: keys.privatePem, lifetimeSeconds: 3600 })
      const payload = decodePayload(Redacted.value(yield* jwt.get))
      expect(payload.exp - T0 / 1000).toBe(600)
    })
  )
  it.effect("signs identically from PKCS#8 PEM, PKCS#1 PEM, JWK and CryptoKey, with \\n escapes and CRLF", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const forms = [
        keys.privatePem,
        keys.privatePkcs1Pem,
        keys.privatePkcs1Pem.replace(/\n/g, "\\n"),
        keys.privatePem.replace(/\n/g, "\r\n"),
        Redacted.make(keys.privatePem),
        keys.privateJwk,
        keys.privateKey
      ]
      const jwts = new Set<string>()
      for (const privateKey of forms) {
        const jwt = yield* AppJwt.make({ appId: "7", privateKey })
        jwts.add(Redacted.value(yield* jwt.get))
      }
      expect(jwts.size).toBe(1)
    })
  )
  it.effect("fails at construction with a typed error naming the problem, never the key", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "openssh"],
        [keys.privatePem.slice(0, 400), "truncated"],
        [keys.publicPem, "public_key"],
        ["not a key at all", "not_pem"],
        ["-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----", "encrypted"],
        [keys.publicJwk, "public_key"],
        [{ kty: "EC", crv: "P-256", d: "x", x: "y", y: "z" }, "not_rsa"]
      ]
      for (const [privateKey, problem] of cases) {
        const error = yield* Effect.flip(AppJwt.make({ appId: "1", privateKey: privateKey as never }))
        expect(error).toBeInstanceOf(AppJwt.InvalidPrivateKey)
        expect(error.problem).toBe(problem)
        expect(error.message).not.toContain("MII")
        expect(error.message).not.toContain(keys.privatePem.slice(40, 80))
      }
    })
  )
  it.effect("signs through a pluggable signer (a KMS/HSM) and puts its kid in the header", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const signed: Array<number> = []
      const jwt = yield* AppJwt.make({
        appId: "9",
        signer: {
          kid: "kms-key-1",
          sign: (data) =>
            Effect.promise(async () => {
              signed.push(data.byteLength)
              return new Uint8Array(await crypto.subtle.sign("RSASSA-PKCS1-v1_5", keys.privateKey, data))
            })
        }
      })
      const token = Redacted.value(yield* jwt.get)
      expect(JSON.parse(atob(token.split(".")[0]!))).toEqual({ alg: "RS256", typ: "JWT", kid: "kms-key-1" })
      expect(signed).toHaveLength(1)
    })
  )
})

describe("configuration through Effect Config", () => {
  it.effect("reads ICR_APP_ID, ICR_PRIVATE_KEY (escaped newlines too) and ICR_BASE_URL", () =>
    Effect.gen(function* () {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["ICR_APP_ID", "4242"],
          ["ICR_PRIVATE_KEY", keys.privatePem.replace(/\n/g, "\\n")],
          ["ICR_BASE_URL", "http://icr.test/"]
        ])
      )
      const [appId, baseUrl] = yield* Effect.all([
        Effect.map(AppJwt.AppJwt, (j) => j.appId),
        Effect.map(IcrAppsClient, (c) => c.baseUrl)
      ]).pipe(Effect.provide(IcrApps.layerConfig()), Effect.withConfigProvider(provider))
      expect({ appId, baseUrl }).toEqual({ appId: "4242", baseUrl: "http://icr.test" })
      const missing = yield* Effect.flip(
        Effect.provide(AppJwt.AppJwt, IcrApps.layerConfig()).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["ICR_APP_ID", "1"]])))
        )
      )
      expect(String(missing)).toContain("ICR_PRIVATE_KEY")
    })
  )
})

describe("IcrAppsClient against the in-memory issuer", () => {
  it.effect("mints, describes, lists, gets and revokes", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      const id = installations[0].id
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const appToken = yield* client.createAppAccessToken()
        expect(appToken.appId).toBe(appId)
        const token = yield* client.createInstallationAccessToken(id, { permissions: { organization_info: "VIEW" } })
        expect(token.permissions).toEqual({ organization_info: "VIEW" })
        expect((yield* client.describeAccessToken(token.token)).kind).toBe("installation")
        expect((yield* client.listInstallations({ limit: 5 })).total).toBe(1)
        expect((yield* client.getInstallation(id.toUpperCase())).id).toBe(id)
        yield* client.revokeAccessToken(token.token)
        const error = yield* Effect.flip(client.describeAccessToken(token.token))
        expect(error._tag).toBe("InvalidToken")
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("delivers every SPEC §6 error as its own tagged error, without retrying 4xx", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations, admin } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const before = countRequests(issuer, "POST", MINT)
        // Checked before sending, failing as the server would.
        const unknown = yield* Effect.flip(
          client.createInstallationAccessToken(installations[0].id, {
            permissions: { organization_secrets: "VIEW" } as never
          })
        )
        expect(unknown._tag).toBe("InvalidPermissions")
        expect((yield* Effect.flip(client.getInstallation("nope")))._tag).toBe("InvalidRequest")
        expect(countRequests(issuer, "POST", MINT)).toBe(before)
        // Answered by the server.
        expect((yield* Effect.flip(client.getInstallation(crypto.randomUUID())))._tag).toBe("InstallationNotFound")
        yield* Effect.promise(() => admin("PATCH", `/admin/installations/${installations[0].id}`, { suspended: true }))
        const suspended = yield* Effect.flip(client.createInstallationAccessToken(installations[0].id))
        expect(suspended._tag).toBe("InstallationSuspended")
        issuer.inject(Fault.status(400, { code: "invalid_request" }))
        expect((yield* Effect.flip(client.createInstallationAccessToken(installations[0].id)))._tag).toBe(
          "InvalidRequest"
        )
        issuer.inject(Fault.status(418))
        expect((yield* Effect.flip(client.createAppAccessToken()))._tag).toBe("UnexpectedResponse")
        // 4xx are final: one request each.
        expect(countRequests(issuer, "POST", MINT) - before).toBe(2)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("honours Retry-After in seconds and as an HTTP-date", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.status(429, { retryAfter: "7" }))
        const seconds = yield* runAdvancing(client.createAppAccessToken())
        expect(seconds.slept).toEqual([7000])
        issuer.inject(Fault.status(503, { retryAfter: new Date(T0 + 7000 + 12_000).toUTCString() }))
        const date = yield* runAdvancing(client.createAppAccessToken())
        // An HTTP-date has whole seconds: the wait is the 12 s asked for, less the sub-second part of now.
        expect(date.slept).toHaveLength(1)
        expect(date.slept[0]).toBeGreaterThan(11_000)
        expect(date.slept[0]).toBeLessThanOrEqual(12_000)
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(4)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("retries network errors and 5xx with growing, capped, bounded backoff", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.networkError(), Fault.status(502), Fault.status(504))
        const recovered = yield* runAdvancing(client.createAppAccessToken())
        expect(recovered.slept).toHaveLength(3)
        const [a, b, c] = recovered.slept as [number, number, number]
        // 250 ms doubling, each with ±20 % jitter.
        expect(a).toBeGreaterThanOrEqual(200)
        expect(a).toBeLessThanOrEqual(300)
        expect(b).toBeGreaterThanOrEqual(400)
        expect(c).toBeGreaterThanOrEqual(800)
        issuer.inject(...Array.from({ length: 10 }, () => Fault.status(503, { retryAfter: "1" })))
        const before = countRequests(issuer, "POST", /^\/app\/accessTokens$/)
        const exhausted = yield* runAdvancing(Effect.flip(client.createAppAccessToken()))
        expect(exhausted.result._tag).toBe("Unavailable")
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/) - before).toBe(4)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  // On the real clock: a TestClock cannot tell an attempt's timeout from a request still in flight.
  it.live("times out a hung attempt and retries it", () =>
    Effect.gen(function* () {
      const issuer = makeFakeIssuer()
      const { id: appId } = yield* Effect.promise(() =>
        issuer.admin("POST", "/admin/apps", { name: "slow", permissions: {}, publicKey: keys.publicPem })
      )
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.delay(5_000))
        const started = Date.now()
        expect((yield* client.createAppAccessToken()).appId).toBe(appId)
        expect(Date.now() - started).toBeLessThan(4_000)
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(2)
      }).pipe(
        Effect.provide(
          sdkLayer(issuer, {
            appId,
            privateKey: keys.privatePem,
            retry: { attemptTimeout: "1 second", baseDelay: "10 millis" }
          })
        )
      )
    })
  )
  it.effect("a network failure that outlasts every attempt is a TransportError", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(...Array.from({ length: 4 }, () => Fault.networkError()))
        const { result } = yield* runAdvancing(Effect.flip(client.createAppAccessToken()))
        expect(result._tag).toBe("TransportError")
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("learns a server clock 5 minutes ahead once, keeps it, and every later call succeeds first time", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      issuer.setClockOffset(5 * 60_000)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const jwt = yield* AppJwt.AppJwt
        const refusals = () => countRequests(issuer, "POST", /^\/app\/accessTokens$/) - calls
        let calls = 0
        // Every 30 s for 20 minutes: the JWT signed on the local clock would expire on the server's.
        for (let i = 0; i < 40; i++) {
          yield* client.createAppAccessToken()
          calls++
          yield* TestClock.adjust("30 seconds")
        }
        expect(refusals()).toBe(1)
        // The Date header has whole seconds, so the learned offset is exact to within one.
        expect(Math.abs((yield* jwt.clockOffset) - 5 * 60_000)).toBeLessThan(1000)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("learns a server clock 10 minutes behind (iat_in_future) and retries once", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      issuer.setClockOffset(-10 * 60_000)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        yield* client.createAppAccessToken()
        yield* client.listInstallations()
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(2)
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(1)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("streams every installation once, page by page, stopping on a short or empty page", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys, { installations: 25 })
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const all = yield* Stream.runCollect(client.installations({ pageSize: 10 }))
        expect(Chunk.toReadonlyArray(all).map((i) => i.id)).toEqual(installations.map((i) => i.id))
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(3)
        const exact = yield* Stream.runCollect(client.installations({ pageSize: 5 }))
        expect(exact.length).toBe(25)
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(3 + 6)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
})

describe("InstallationTokens", () => {
  it.effect("1,000 concurrent gets for one installation cause exactly one mint", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        const got = yield* Effect.all(
          Array.from({ length: 1000 }, () => tokens.get(installations[0].id)),
          { concurrency: "unbounded" }
        )
        expect(new Set(got.map((t) => Redacted.value(t.token))).size).toBe(1)
        expect(countRequests(issuer, "POST", MINT)).toBe(1)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("refreshes ahead: reuses until expiresAt - 5 min, then mints anew", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        const first = yield* tokens.get(installations[0].id)
        yield* TestClock.adjust("114 minutes")
        expect(Redacted.value((yield* tokens.get(installations[0].id)).token)).toBe(Redacted.value(first.token))
        yield* TestClock.adjust("60 seconds")
        expect(Redacted.value((yield* tokens.get(installations[0].id)).token)).not.toBe(Redacted.value(first.token))
        expect(countRequests(issuer, "POST", MINT)).toBe(2)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("keys the cache by permissions; refresh: true mints anew; revoke evicts and revokes", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        const client = yield* IcrAppsClient
        const id = installations[0].id
        const full = yield* tokens.get(id)
        const narrow = yield* tokens.get(id, { permissions: { organization_info: "VIEW" } })
        expect(Redacted.value(narrow.token)).not.toBe(Redacted.value(full.token))
        expect(Redacted.value((yield* tokens.get(id, { permissions: { organization_info: "VIEW" } })).token)).toBe(
          Redacted.value(narrow.token)
        )
        const refreshed = yield* tokens.get(id, { refresh: true })
        expect(Redacted.value(refreshed.token)).not.toBe(Redacted.value(full.token))
        expect(Redacted.value((yield* tokens.get(id)).token)).toBe(Redacted.value(refreshed.token))
        expect(countRequests(issuer, "POST", MINT)).toBe(3)
        yield* tokens.revoke(id)
        expect((yield* Effect.flip(client.describeAccessToken(refreshed.token)))._tag).toBe("InvalidToken")
        const after = yield* tokens.get(id)
        expect(Redacted.value(after.token)).not.toBe(Redacted.value(refreshed.token))
        expect(countRequests(issuer, "POST", MINT)).toBe(4)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("a failed mint is shared by its waiters and not cached", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        issuer.inject(Fault.status(403, { code: "installation_suspended" }))
        const failures = yield* Effect.all(
          Array.from({ length: 10 }, () => Effect.flip(tokens.get(installations[0].id))),
          { concurrency: "unbounded" }
        )
        expect(failures.every((e) => e._tag === "InstallationSuspended")).toBe(true)
        expect((yield* tokens.get(installations[0].id)).installationId).toBe(installations[0].id)
        expect(countRequests(issuer, "POST", MINT)).toBe(2)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
})
