/**
 * An Effect team's service tested with @icr-apps/testkit, from the READMEs only: paging by cursor,
 * a 429 on the 2nd mint, a suspension mid-stream, a skewed issuer clock, storage faults, a slow
 * issuer and the team's own timeouts — all on the TestClock (`runAdvancing` moves it; nothing
 * sleeps for real), with faults equal to what the real issuer sends.
 * `node scripts/packed-sdk.mjs` runs this file in a fresh project that installed the packed tarballs.
 */
import { describe, expect, it } from "@effect/vitest"
import { IcrAppsClient, InstallationTokens, Problems } from "@icr-apps/core"
import { Fault, FakeIssuer, runAdvancing, testOnlyKeyPair } from "@icr-apps/testkit"
import { Context, Effect, Layer, Stream, TestClock } from "effect"

/** The team's service: every installation's token, suspended ones reported rather than fatal. */
class Inventory extends Context.Tag("Inventory")<
  Inventory,
  {
    readonly sync: Effect.Effect<
      ReadonlyArray<{ readonly id: string; readonly status: "synced" | "suspended" }>,
      Problems.RateLimited | Problems.Unavailable | unknown
    >
  }
>() {}

const InventoryLive = Layer.effect(
  Inventory,
  Effect.gen(function* () {
    const client = yield* IcrAppsClient
    const tokens = yield* InstallationTokens
    return {
      sync: client.installations({ pageSize: 2 }).pipe(
        Stream.mapEffect((i) =>
          tokens.get(i.id).pipe(
            Effect.as({ id: i.id, status: "synced" as const }),
            Effect.catchTag("InstallationSuspended", () => Effect.succeed({ id: i.id, status: "suspended" as const }))
          )
        ),
        Stream.runCollect,
        Effect.map((chunk) => Array.from(chunk))
      )
    }
  })
)

/** `n` installations of the layer's app, created 1 ms apart (listing order is by creation time). */
const installMany = (n: number) =>
  Effect.gen(function* () {
    const issuer = yield* FakeIssuer
    const out: Array<{ readonly id: string }> = []
    for (let i = 0; i < n; i++) {
      out.push(yield* FakeIssuer.arrange.install(issuer.app.id))
      yield* TestClock.adjust("1 millis")
    }
    return out
  })

const withIssuer = (options: Parameters<typeof FakeIssuer.layer>[0] = {}) =>
  Layer.provideMerge(InventoryLive, FakeIssuer.layer(options))

describe("the Effect team's scenarios, on the TestClock", () => {
  it.effect("paging: five installations in three cursor pages, each minted once", () =>
    Effect.gen(function* () {
      const installed = yield* installMany(5)
      const { result, slept } = yield* runAdvancing((yield* Inventory).sync)
      expect(result.map((r) => r.id)).toEqual(installed.map((i) => i.id))
      expect(slept).toEqual([])
      const pages = yield* FakeIssuer.requests({ route: "listInstallations" })
      expect(pages.map((r) => new URL(r.url).searchParams.has("cursor"))).toEqual([false, true, true])
      for (const i of installed) expect(yield* FakeIssuer.mints(i.id)).toBe(1)
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("a 429 on the 2nd mint: the SDK waits exactly its Retry-After, then mints", () =>
    Effect.gen(function* () {
      const [a, b] = yield* installMany(2)
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken", skip: 1 },
        Fault.problem(Problems.RateLimited, { retryAfter: 3 })
      )
      const { result, slept } = yield* runAdvancing((yield* Inventory).sync)
      expect(result.every((r) => r.status === "synced")).toBe(true)
      expect(slept).toEqual([3000])
      const mints = yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })
      expect(mints.map((r) => [r.installationId, r.status, r.code])).toEqual([
        [a!.id, 200, undefined],
        [b!.id, 429, "rate_limited"],
        [b!.id, 200, undefined]
      ])
      expect(mints[1]!.responseHeaders["retry-after"]).toBe("3")
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("a 429 that never ends is RateLimited with the issuer's retryAfter, after 3 waits", () =>
    Effect.gen(function* () {
      const [a] = yield* installMany(1)
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken", times: Number.POSITIVE_INFINITY },
        Fault.status(429, { retryAfter: "3" })
      )
      const tokens = yield* InstallationTokens
      const { result, slept } = yield* runAdvancing(Effect.flip(tokens.get(a!.id)))
      expect(result).toBeInstanceOf(Problems.RateLimited)
      expect(result).toMatchObject({ _tag: "RateLimited", retryAfter: 3, status: 429, code: "rate_limited" })
      expect(slept).toEqual([3000, 3000, 3000])
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("a suspension mid-stream: reported, the rest synced, nothing minted for it, gone from the next walk", () =>
    Effect.gen(function* () {
      const installed = yield* installMany(4)
      const victim = installed[2]!
      // Listed on page 2, then suspended just before its mint reaches the issuer.
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken", installationId: victim.id },
        Fault.suspendInstallation()
      )
      const inventory = yield* Inventory
      const { result } = yield* runAdvancing(inventory.sync)
      expect(result.map((r) => r.status)).toEqual(["synced", "synced", "suspended", "synced"])
      expect(result[2]!.id).toBe(victim.id)
      expect(yield* FakeIssuer.mints(victim.id)).toBe(0)
      const again = yield* runAdvancing(inventory.sync)
      expect(again.result.map((r) => r.id)).not.toContain(victim.id)
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("skew: an issuer 10 minutes ahead refuses the first JWT as expired; the SDK learns its clock once", () =>
    Effect.gen(function* () {
      const [a, b] = yield* installMany(2)
      yield* FakeIssuer.setClockOffset(10 * 60_000)
      const tokens = yield* InstallationTokens
      yield* runAdvancing(Effect.all([tokens.get(a!.id), tokens.get(b!.id)]))
      const mints = yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })
      expect(mints.map((r) => [r.status, r.code])).toEqual([
        [401, "invalid_jwt"],
        [200, undefined],
        [200, undefined]
      ])
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("storage faults: a 503 from the registry is waited out (its Retry-After: 1 s)", () =>
    Effect.gen(function* () {
      const [a] = yield* installMany(1)
      yield* FakeIssuer.failStorage(1)
      const tokens = yield* InstallationTokens
      const { slept } = yield* runAdvancing(tokens.get(a!.id))
      expect(slept).toEqual([1000])
      const mints = yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })
      expect(mints.map((r) => [r.status, r.code])).toEqual([
        [503, "unavailable"],
        [200, undefined]
      ])
    }).pipe(Effect.provide(withIssuer()))
  )

  it.effect("a slow issuer meets the SDK's own 10 s attempt timeout, and the retry gets through", () =>
    Effect.gen(function* () {
      const [a] = yield* installMany(1)
      yield* FakeIssuer.fault({ route: "createInstallationAccessToken" }, Fault.delay(15_000))
      const tokens = yield* InstallationTokens
      const { slept } = yield* runAdvancing(tokens.get(a!.id))
      expect(slept[0]).toBe(10_000) // the attempt timeout, to the millisecond
      expect(slept.length).toBe(2) // then one jittered backoff, in whole milliseconds
      expect(Number.isInteger(slept[1])).toBe(true)
      expect((yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })).length).toBe(2)
    }).pipe(Effect.provide(withIssuer({ sdk: { retry: { attemptTimeout: "10 seconds" } } })))
  )

  it.effect("the team's own 30 s timeout never fires while a request is in flight", () =>
    Effect.gen(function* () {
      const [a, b] = yield* installMany(2)
      // Real work inside the issuer (a script that takes 50 ms of real time) and backoff beside it.
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken", installationId: a!.id },
        Fault.script(() => new Promise((resolve) => setTimeout(resolve, 50)))
      )
      yield* FakeIssuer.fault({ route: "createInstallationAccessToken", installationId: b!.id }, Fault.networkError())
      const tokens = yield* InstallationTokens
      const guarded = Effect.all([tokens.get(a!.id), tokens.get(b!.id)], { concurrency: "unbounded" }).pipe(
        Effect.timeout("30 seconds")
      )
      const { result, slept } = yield* runAdvancing(guarded)
      expect(result.length).toBe(2)
      expect(slept.length).toBe(1) // b's one backoff; nothing else moved the clock
      expect((yield* FakeIssuer.requests({ route: "createInstallationAccessToken" })).length).toBe(3)
    }).pipe(Effect.provide(withIssuer({ sdk: { retry: { maxAttempts: 2 } } })))
  )

  it.effect("a key the app does not have is InvalidJwt (invalid_signature), caught by tag", () =>
    Effect.gen(function* () {
      const [a] = yield* installMany(1)
      const tokens = yield* InstallationTokens
      const outcome = yield* tokens.get(a!.id).pipe(
        Effect.as("minted"),
        Effect.catchTag("InvalidJwt", (e) => Effect.succeed(e.reason))
      )
      expect(outcome).toBe("invalid_signature")
    }).pipe(
      Effect.provide(
        Layer.unwrapEffect(
          Effect.map(
            Effect.promise(() => testOnlyKeyPair(1)),
            (wrong) => withIssuer({ sdk: { privateKey: wrong.privatePem } })
          )
        )
      )
    )
  )
})
