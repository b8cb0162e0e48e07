/**
 * The contract every issuer `RateLimiter` obeys (SPEC §1, §9): fixed windows per budget and key,
 * counted exactly under concurrency, a `Retry-After` that ends with the window, 0 = no budget. Run
 * against the in-memory limiter and the database one (D1, SQLite, Postgres) alike.
 */
import { type RateLimit, RateLimiter } from "@icr-apps/core/issuer/RateLimiter"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import type { TestRunner } from "./TestRunner.js"

/** Registers the suite; `makeLimiter` builds a limiter with the given budgets (a fresh one per call). */
export const rateLimiterContract = (
  name: string,
  makeLimiter: (limits: { readonly address: RateLimit; readonly principal: RateLimit }) => Layer.Layer<RateLimiter>,
  { describe, expect, it }: TestRunner
) =>
  describe(`RateLimiter contract: ${name}`, () => {
    const budgets = { address: { limit: 3, periodSeconds: 60 }, principal: { limit: 5, periodSeconds: 10 } }
    /** Runs `body` on a limiter with `limits`, the clock at `at` ms (a TestClock: it moves only when told). */
    const run = <A>(
      body: (limiter: RateLimiter["Type"]) => Effect.Effect<A>,
      limits: { readonly address: RateLimit; readonly principal: RateLimit } = budgets,
      at = 1_800_000_000_000
    ): Promise<A> =>
      Effect.runPromise(
        Effect.gen(function* () {
          yield* TestClock.setTime(at)
          return yield* body(yield* RateLimiter)
        }).pipe(Effect.provide(makeLimiter(limits)), Effect.provide(TestContext.TestContext))
      )
    const key = () => `k-${crypto.randomUUID()}`

    it("allows each key its budget per window, then refuses until the window ends", async () => {
      const k = key()
      // 20 s into a 60 s window: 40 s remain.
      const decisions = await run(
        (limiter) => Effect.forEach([1, 2, 3, 4, 5], () => limiter.check("address", k)),
        budgets,
        1_800_000_020_000 - (1_800_000_020_000 % 60_000) + 20_000
      )
      expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false, false])
      expect(decisions[3]!.retryAfterSeconds).toBe(40)
    })

    it("keeps budgets apart: each key, and each scope with its own limit", async () => {
      const [a, b] = [key(), key()]
      const allowed = await run((limiter) =>
        Effect.gen(function* () {
          const out: Array<string> = []
          for (let i = 0; i < 6; i++) {
            out.push(
              [
                (yield* limiter.check("address", a)).allowed,
                (yield* limiter.check("address", b)).allowed,
                (yield* limiter.check("principal", a)).allowed
              ].join(",")
            )
          }
          return out
        })
      )
      expect(allowed).toEqual([
        "true,true,true",
        "true,true,true",
        "true,true,true",
        "false,false,true",
        "false,false,true",
        "false,false,false"
      ])
    })

    it("starts counting afresh in the next window", async () => {
      const k = key()
      const start = 1_800_000_000_000 - (1_800_000_000_000 % 10_000)
      const decisions = await run(
        (limiter) =>
          Effect.gen(function* () {
            const out: Array<boolean> = []
            for (let i = 0; i < 6; i++) out.push((yield* limiter.check("principal", k)).allowed)
            yield* TestClock.adjust("10 seconds")
            for (let i = 0; i < 2; i++) out.push((yield* limiter.check("principal", k)).allowed)
            return out
          }),
        budgets,
        start
      )
      expect(decisions).toEqual([true, true, true, true, true, false, true, true])
    })

    it("never refuses a budget of 0", async () => {
      const k = key()
      const decisions = await run(
        (limiter) => Effect.forEach(Array.from({ length: 20 }), () => limiter.check("address", k)),
        { address: { limit: 0, periodSeconds: 60 }, principal: budgets.principal }
      )
      expect(decisions.every((d) => d.allowed)).toBe(true)
    })

    it("counts concurrent requests exactly: the budget, and not one more, is allowed", async () => {
      const k = key()
      const decisions = await run(
        (limiter) =>
          Effect.forEach(Array.from({ length: 20 }), () => limiter.check("principal", k), { concurrency: "unbounded" }),
        { address: budgets.address, principal: { limit: 7, periodSeconds: 60 } }
      )
      expect(decisions.filter((d) => d.allowed).length).toBe(7)
    })
  })
