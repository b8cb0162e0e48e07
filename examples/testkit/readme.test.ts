// The Effect example of packages/testkit/README.md, verbatim (packages/testkit/test/Docs.test.ts checks that
// every TypeScript snippet of that README is in a file here), run from the packed tarballs by packed-sdk.
import { describe, expect, it } from "@effect/vitest"
import { IcrAppsClient, InstallationTokens, Problems } from "@icr-apps/core"
import { Fault, FakeIssuer, runAdvancing } from "@icr-apps/testkit"
import { Effect, Stream, TestClock } from "effect"

// Your service under test, built on the SDK's services.
const sync = Effect.gen(function* () {
  const client = yield* IcrAppsClient
  const tokens = yield* InstallationTokens
  const all = yield* Stream.runCollect(client.installations({ pageSize: 2 }))
  return yield* Effect.forEach(all, (i) => tokens.get(i.id))
})

describe("my sync", () => {
  it.effect("mints once per installation, and waits out a 429 on a refresh", () =>
    Effect.gen(function* () {
      const issuer = yield* FakeIssuer
      const a = yield* FakeIssuer.arrange.install(issuer.app.id)
      const b = yield* FakeIssuer.arrange.install(issuer.app.id)

      // The 2nd mint of `b` (its refresh, 2 h later) meets the issuer's 429 asking for 3 s.
      yield* FakeIssuer.fault(
        { route: "createInstallationAccessToken", installationId: b.id, skip: 1 },
        Fault.problem(Problems.RateLimited, { retryAfter: 3 })
      )

      yield* runAdvancing(sync)
      expect([yield* FakeIssuer.mints(a.id), yield* FakeIssuer.mints(b.id)]).toEqual([1, 1])

      yield* TestClock.adjust("2 hours") // tokens live 2 h, refreshed 5 min ahead
      const { slept } = yield* runAdvancing(sync)
      expect(slept).toEqual([3000]) // exactly the Retry-After, on the TestClock
      expect(yield* FakeIssuer.mints(b.id)).toBe(2)
    }).pipe(Effect.provide(FakeIssuer.layer()))
  )
})
