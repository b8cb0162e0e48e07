/**
 * The testkit as an Effect team uses it: a service of their own (`InventorySync`: every
 * installation, a token each) tested against `FakeIssuer.layer()` with aimed faults, `TestClock`
 * and the request log — no hand-written helper.
 */
import { describe, expect, it } from "@effect/vitest"
import { InvalidJwt } from "@icr-apps/core/api/Problems"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import { InstallationTokens } from "@icr-apps/core/sdk/InstallationTokens"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Fault, FakeIssuer } from "../src/FakeIssuer.js"
import { generateAppKeyPair } from "../src/Keys.js"
import { runAdvancing } from "../src/TestTime.js"

/** The consumer's service: for every installation, a token, then (here) just its id. */
class InventorySync extends Context.Tag("InventorySync")<
  InventorySync,
  { readonly run: Effect.Effect<ReadonlyArray<{ readonly installationId: string; readonly synced: boolean }>, unknown> }
>() {}

const InventorySyncLive = Layer.effect(
  InventorySync,
  Effect.gen(function* () {
    const client = yield* IcrAppsClient
    const tokens = yield* InstallationTokens
    return {
      run: Effect.flatMap(Stream.runCollect(client.installations({ pageSize: 2 })), (installations) =>
        Effect.forEach(installations, (installation) =>
          tokens.get(installation.id).pipe(
            Effect.as({ installationId: installation.id, synced: true }),
            Effect.catchTag("InstallationSuspended", () =>
              Effect.succeed({ installationId: installation.id, synced: false })
            )
          )
        )
      )
    }
  })
)

const withIssuer = Layer.provideMerge(InventorySyncLive, FakeIssuer.layer({ seed: 1 }))

describe("FakeIssuer.layer, from a consumer's service", () => {
  it.effect("three pages, a 503 with Retry-After: 2 on one installation's 2nd mint, expiry, one mint each", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const installed = []
      for (let i = 0; i < 6; i++) {
        installed.push(yield* Effect.promise(() => issuer.arrange.install(issuer.app.id)))
        yield* TestClock.adjust("1 millis")
      }
      // The third installation's 2nd mint (its first refresh) will meet a 503 asking for 2 s.
      const target = installed[2]!.id
      issuer.fault(
        { route: "createInstallationAccessToken", installationId: target, skip: 1 },
        Fault.status(503, { retryAfter: "2" })
      )
      const sync = yield* InventorySync

      const first = yield* runAdvancing(sync.run)
      expect(first.result.map((r) => r.installationId)).toEqual(installed.map((i) => i.id))
      expect(issuer.requests({ route: "listInstallations" }).length).toBe(3) // 2 + 2 + 2, by cursor
      for (const i of installed) expect(issuer.mints(i.id)).toBe(1)

      expect(first.slept).toEqual([])
      // Tokens live 2 h and are refreshed 5 min ahead: after 2 h every installation mints again.
      yield* TestClock.adjust("2 hours")
      const second = yield* runAdvancing(sync.run)
      expect(second.result.every((r) => r.synced)).toBe(true)
      expect(second.slept).toEqual([2000])
      const mintsOfTarget = issuer.requests({ route: "createInstallationAccessToken", installationId: target })
      expect(mintsOfTarget.map((r) => [r.status, r.code, r.credential])).toEqual([
        [200, undefined, "app_jwt"],
        [503, "unavailable", "app_jwt"],
        [200, undefined, "app_jwt"]
      ])
      for (const i of installed) expect(issuer.mints(i.id)).toBe(2)
    }).pipe(Effect.provide(withIssuer))
  )

  it.effect("an installation suspended during the walk is reported, the others synced, once each", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const installed: Array<{ readonly id: string }> = []
      for (let i = 0; i < 5; i++) {
        installed.push(yield* Effect.promise(() => issuer.arrange.install(issuer.app.id)))
        yield* TestClock.adjust("1 millis")
      }
      // While the second page is being asked for, the first installation (already listed) is suspended.
      issuer.fault(
        { route: "listInstallations", skip: 1 },
        Fault.script(async () => void (await issuer.arrange.suspend(installed[0]!.id)))
      )
      const sync = yield* InventorySync
      const { result } = yield* runAdvancing(sync.run)
      expect(result.filter((r) => !r.synced).map((r) => r.installationId)).toEqual([installed[0]!.id])
      expect(result.filter((r) => r.synced).length).toBe(4)
      for (const i of installed.slice(1)) expect(issuer.mints(i.id)).toBe(1)
      expect(issuer.mints(installed[0]!.id)).toBe(0)
    }).pipe(Effect.provide(withIssuer))
  )

  it.effect("Fault.delay waits on the TestClock, not on real time", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const client = yield* IcrAppsClient
      issuer.fault({ route: "createAppAccessToken" }, Fault.delay(30_000))
      const { slept } = yield* runAdvancing(client.createAppAccessToken())
      expect(slept).toEqual([30_000])
      const [logged] = issuer.requests({ route: "createAppAccessToken" })
      expect(logged).toMatchObject({ status: 200, fault: "Delay", durationMillis: 30_000, credential: "app_jwt" })
    }).pipe(Effect.provide(FakeIssuer.layer()))
  )

  it.effect("a wrong key is InvalidJwt (invalid_signature), and the log never holds a secret", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      const installation = yield* Effect.promise(() => issuer.arrange.install(issuer.app.id))
      const error = yield* Effect.flip(runAdvancing(tokens.get(installation.id)))
      expect(error).toBeInstanceOf(InvalidJwt)
      expect(error).toMatchObject({ _tag: "InvalidJwt", reason: "invalid_signature" })
      const text = JSON.stringify(issuer.requests())
      expect(text).not.toMatch(/crs_[0-9a-f]{48}|eyJ[\w-]+\.[\w-]+\.[\w-]+/)
    }).pipe(
      Effect.provide(
        Layer.unwrapEffect(
          Effect.map(
            Effect.promise(() => generateAppKeyPair()),
            (wrong) => FakeIssuer.layer({ sdk: { privateKey: wrong.privatePem } })
          )
        )
      )
    )
  )

  it.effect("arranges with typed results, resets its log, and keeps arrange calls out of faults and log", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      issuer.fault({ route: "createInstallation", times: Infinity }, Fault.status(500))
      const installation = yield* Effect.promise(() => issuer.arrange.install(issuer.app.id))
      expect(installation.appId).toBe(issuer.app.id)
      const narrowed = yield* Effect.promise(() =>
        issuer.arrange.setPermissions(installation.id, { organization_info: "VIEW" })
      )
      expect(narrowed.permissions).toEqual({ organization_info: "VIEW" })
      expect((yield* Effect.promise(() => issuer.arrange.suspend(installation.id))).suspendedAt).not.toBeNull()
      expect(issuer.requests()).toEqual([])
      const client = yield* IcrAppsClient
      yield* runAdvancing(client.listInstallations({ limit: 3, page: 1 }))
      const [listed] = issuer.requests()
      expect(listed).toMatchObject({
        method: "GET",
        url: "http://icr.test/app/installations?limit=3&page=1",
        route: "listInstallations",
        status: 200
      })
      issuer.reset()
      expect(issuer.requests()).toEqual([])
    }).pipe(Effect.provide(FakeIssuer.layer()))
  )
})
