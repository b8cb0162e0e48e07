/**
 * A consumer's own service tested with @icr-apps/testkit, written from its README only: every
 * installation by cursor (three pages), a token each; a 503 with Retry-After: 2 on one
 * installation's 2nd mint (the SDK waits exactly 2 s of TestClock); a suspension during the walk;
 * token expiry; a wrong key as InvalidJwt; exactly one mint per installation, from the log.
 * `npm test` runs it in a fresh project that installed the packed tarballs with plain npm.
 */
import { describe, expect, it } from "@effect/vitest"
import { IcrAppsClient, InstallationTokens } from "@icr-apps/core"
import { Fault, FakeIssuer, generateAppKeyPair, runAdvancing } from "@icr-apps/testkit"
import { Context, Effect, Layer, Stream, TestClock } from "effect"

/** The service under test: for every installation, a token; suspended ones are reported, not fatal. */
class InventorySync extends Context.Tag("InventorySync")<
  InventorySync,
  { readonly run: Effect.Effect<ReadonlyArray<{ readonly id: string; readonly synced: boolean }>, unknown> }
>() {}

const InventorySyncLive = Layer.effect(
  InventorySync,
  Effect.gen(function* () {
    const client = yield* IcrAppsClient
    const tokens = yield* InstallationTokens
    return {
      run: Effect.flatMap(Stream.runCollect(client.installations({ pageSize: 2 })), (all) =>
        Effect.forEach(all, (i) =>
          tokens.get(i.id).pipe(
            Effect.as({ id: i.id, synced: true }),
            Effect.catchTag("InstallationSuspended", () => Effect.succeed({ id: i.id, synced: false }))
          )
        )
      )
    }
  })
)

const TestLayer = Layer.provideMerge(InventorySyncLive, FakeIssuer.layer())

describe("InventorySync against the in-memory issuer", () => {
  it.effect("three pages, a 503 on one 2nd mint, a suspension mid-walk, expiry, one mint each", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const installed: Array<{ readonly id: string }> = []
      for (let i = 0; i < 6; i++) {
        installed.push(yield* Effect.promise(() => issuer.arrange.install(issuer.app.id)))
        yield* TestClock.adjust("1 millis")
      }
      const [first, , third] = installed
      issuer.fault(
        { route: "createInstallationAccessToken", installationId: third!.id, skip: 1 },
        Fault.status(503, { retryAfter: "2" })
      )
      const sync = yield* InventorySync

      const before = yield* runAdvancing(sync.run)
      expect(before.result.map((r) => r.id)).toEqual(installed.map((i) => i.id))
      expect(issuer.requests({ route: "listInstallations" }).length).toBe(3)
      for (const i of installed) expect(issuer.mints(i.id)).toBe(1)

      // Two hours on, every token has expired: the walk mints again; the third one's 2nd mint
      // meets the 503, and the first one is suspended while the second page is read.
      yield* TestClock.adjust("2 hours")
      issuer.fault(
        { route: "listInstallations", skip: 1 },
        Fault.script(async () => void (await issuer.arrange.suspend(first!.id)))
      )
      const after = yield* runAdvancing(sync.run)
      expect(after.slept).toEqual([2000])
      expect(after.result.filter((r) => !r.synced).map((r) => r.id)).toEqual([first!.id])
      expect(after.result.length).toBe(6)
      for (const i of installed.slice(1)) expect(issuer.mints(i.id)).toBe(2)
      expect(issuer.mints(first!.id)).toBe(1)
      expect(
        issuer.requests({ route: "createInstallationAccessToken", installationId: third!.id }).map((r) => r.status)
      ).toEqual([200, 503, 200])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("a key the app does not have is InvalidJwt (invalid_signature)", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const tokens = yield* InstallationTokens
      const installation = yield* Effect.promise(() => issuer.arrange.install(issuer.app.id))
      const error = yield* Effect.flip(runAdvancing(tokens.get(installation.id)))
      expect(error).toMatchObject({ _tag: "InvalidJwt", reason: "invalid_signature" })
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
})
