import { describe, expect, it } from "@effect/vitest"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import { InstallationTokens } from "@icr-apps/core/sdk/InstallationTokens"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { beforeAll } from "vitest"
import { Fault } from "../../src/FakeIssuer.js"
import { type AppKeyPair, generateAppKeyPair } from "../../src/Keys.js"
import { countRequests, sdkLayer, setup, T0 } from "../sdk-harness.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

const MINT = /^\/app\/installations\/[^/]+\/accessTokens$/

describe("InstallationTokens", () => {
  it.effect(
    "without an installation id (an unset variable from JavaScript) fails InvalidRequest, saying so, minting nothing",
    () =>
      Effect.gen(function* () {
        const { issuer, appId } = yield* setup(keys)
        yield* Effect.gen(function* () {
          const tokens = yield* InstallationTokens
          for (const missing of [undefined, "", "  "]) {
            const error = yield* Effect.flip(tokens.get(missing as unknown as string))
            expect(error._tag).toBe("InvalidRequest")
            expect(error.message).toMatch(/an installation id is required/)
            expect(tokens.unsafePeek(missing as unknown as string, undefined, Date.now())).toBeUndefined()
          }
          expect(countRequests(issuer, "POST", MINT)).toBe(0)
        }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
      })
  )
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
  it.effect("50 concurrent refreshes for one installation share one mint, distinct from the cached token", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        const cached = yield* tokens.get(installations[0].id)
        const before = countRequests(issuer, "POST", MINT)
        const refreshed = yield* Effect.all(
          Array.from({ length: 50 }, () => tokens.get(installations[0].id, { refresh: true })),
          { concurrency: "unbounded" }
        )
        expect(countRequests(issuer, "POST", MINT) - before).toBe(1)
        const secrets = new Set(refreshed.map((t) => Redacted.value(t.token)))
        expect(secrets.size).toBe(1)
        expect(secrets.has(Redacted.value(cached.token))).toBe(false)
        // The refreshed token is what the cache now serves.
        expect(Redacted.value((yield* tokens.get(installations[0].id)).token)).toBe([...secrets][0])
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("revoking by one spelling of the id forgets every spelling; peek sees only fresh tokens", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      const id: string = installations[0].id
      yield* Effect.gen(function* () {
        const tokens = yield* InstallationTokens
        const lower = yield* tokens.get(id)
        const upper = yield* tokens.get(id.toUpperCase())
        expect(Redacted.value(upper.token)).toBe(Redacted.value(lower.token))
        expect(countRequests(issuer, "POST", MINT)).toBe(1)
        expect(tokens.unsafePeek(id.toUpperCase(), {}, T0)).toBe(upper)
        // 2 h - 5 min later the token is no longer fresh: peek says so, get mints anew.
        expect(tokens.unsafePeek(id, {}, T0 + 115 * 60_000 + 1)).toBeUndefined()
        yield* tokens.revoke(id)
        expect(tokens.unsafePeek(id.toUpperCase(), {}, T0)).toBeUndefined()
        const again = yield* tokens.get(id.toUpperCase())
        expect(Redacted.value(again.token)).not.toBe(Redacted.value(lower.token))
        expect(countRequests(issuer, "POST", MINT)).toBe(2)
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
