/**
 * `runAdvancing` against random schedules: concurrent fibers that sleep, do real asynchronous work
 * (tracked), run timeouts (some of which never fire because their work wins) and retry with
 * jittered exponential backoff (fractional milliseconds). Every run must end, every timeout must
 * decide as virtual time says (real work takes no virtual time), and `slept` must be exactly the
 * steps between the distinct wake-ups that some fiber waited on — never a stale timeout's instant,
 * never a floating-point remainder.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { FastCheck as fc } from "effect"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import { runAdvancing, trackRealWork } from "../src/TestTime.js"

type Step =
  | { readonly _tag: "sleep"; readonly ms: number }
  | { readonly _tag: "work"; readonly realMs: number }
  | { readonly _tag: "timeout"; readonly limit: number; readonly inner: number | "work" }
  | { readonly _tag: "backoff"; readonly failures: number; readonly baseMs: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ _tag: fc.constant("sleep" as const), ms: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({ _tag: fc.constant("work" as const), realMs: fc.integer({ min: 0, max: 3 }) }),
  fc
    .record({
      _tag: fc.constant("timeout" as const),
      limit: fc.integer({ min: 1, max: 3000 }),
      inner: fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.constant("work" as const))
    })
    .filter((t) => t.inner !== t.limit),
  fc.record({
    _tag: fc.constant("backoff" as const),
    failures: fc.integer({ min: 0, max: 3 }),
    baseMs: fc.integer({ min: 50, max: 500 })
  })
)
const program = fc.array(fc.array(step, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 })

/** Real work the clock must wait for: a macrotask or a few ms of real time. */
const realWork = (ms: number) =>
  Effect.promise(() => trackRealWork(() => new Promise<void>((resolve) => setTimeout(resolve, ms))))

interface Observed {
  /** Instants at which a fiber woke from a sleep the clock decided. */
  readonly wakes: Array<number>
  readonly outcomes: Array<string>
}

const runFiber = (steps: ReadonlyArray<Step>, seen: Observed) =>
  Effect.forEach(
    steps,
    (s) => {
      const woke = Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => seen.wakes.push(t)))
      switch (s._tag) {
        case "sleep":
          return Effect.zipRight(Effect.sleep(s.ms), woke)
        case "work":
          return realWork(s.realMs)
        case "timeout": {
          const inner = s.inner === "work" ? realWork(1) : Effect.zipRight(Effect.sleep(s.inner), woke)
          return inner.pipe(
            Effect.timeout(s.limit),
            Effect.matchEffect({
              onFailure: () =>
                Effect.zipRight(
                  woke,
                  Effect.sync(() => seen.outcomes.push("timedOut"))
                ),
              onSuccess: () => Effect.sync(() => seen.outcomes.push("done"))
            })
          )
        }
        case "backoff": {
          let attempts = 0
          // Every attempt after the first starts at a wake-up the backoff waited for.
          const attempt = Effect.suspend(() =>
            Effect.zipRight(
              Effect.zipRight(attempts > 0 ? woke : Effect.void, realWork(0)),
              Effect.suspend(() => (++attempts <= s.failures ? Effect.fail("transient") : Effect.succeed(attempts)))
            )
          )
          return Effect.suspend(() => attempt).pipe(
            Effect.retry(
              Schedule.exponential(Duration.millis(s.baseMs), 2).pipe(
                Schedule.jittered,
                Schedule.intersect(Schedule.recurs(s.failures))
              )
            ),
            Effect.flatMap((n) => Effect.sync(() => seen.outcomes.push(`attempts:${n}`)))
          )
        }
      }
    },
    { discard: true }
  )

/** What virtual time says, for everything but the jitter: outcomes per fiber, and wake-ups. */
const model = (steps: ReadonlyArray<Step>) => {
  let t = 0
  let exact = true
  const wakes: Array<number> = []
  const outcomes: Array<string> = []
  for (const s of steps) {
    if (s._tag === "sleep") {
      t += s.ms
      wakes.push(t)
    } else if (s._tag === "timeout") {
      if (s.inner !== "work" && s.inner < s.limit) {
        t += s.inner
        wakes.push(t)
        outcomes.push("done")
      } else if (s.inner === "work") outcomes.push("done")
      else {
        t += s.limit
        wakes.push(t)
        outcomes.push("timedOut")
      }
    } else if (s._tag === "backoff") {
      outcomes.push(`attempts:${s.failures + 1}`)
      if (s.failures > 0) exact = false
    }
  }
  return { wakes, outcomes, exact }
}

const steps = (wakes: ReadonlyArray<number>, start: number) => {
  const sorted = [...new Set(wakes)].sort((a, b) => a - b)
  return sorted.map((t, i) => t - (i === 0 ? start : sorted[i - 1]!))
}

describe("runAdvancing", () => {
  it("ends, decides every timeout by virtual time, and slept is exactly the distinct wake-ups", async () => {
    await fc.assert(
      fc.asyncProperty(program, fc.integer({ min: 0, max: 2 ** 40 }), async (fibers, start) => {
        const seen = fibers.map((): Observed => ({ wakes: [], outcomes: [] }))
        const { slept } = await Effect.runPromise(
          Effect.gen(function* () {
            yield* TestClock.setTime(start)
            return yield* runAdvancing(
              Effect.forEach(fibers, (f, i) => runFiber(f, seen[i]!), { concurrency: "unbounded", discard: true })
            )
          }).pipe(Effect.provide(TestContext.TestContext))
        )
        const all: Array<number> = []
        fibers.forEach((f, i) => {
          const expected = model(f)
          expect(seen[i]!.outcomes).toEqual(expected.outcomes)
          if (expected.exact) expect(seen[i]!.wakes).toEqual(expected.wakes.map((w) => start + w))
          all.push(...seen[i]!.wakes)
        })
        expect(slept).toEqual(steps(all, start))
      }),
      { numRuns: 30 }
    )
  }, 120_000)

  it.effect("never fires a timeout whose work is still in flight, however far the other fibers sleep", () =>
    Effect.gen(function* () {
      const slow = realWork(40).pipe(Effect.timeout("10 seconds"), Effect.either)
      const { result, slept } = yield* runAdvancing(
        Effect.all([slow, Effect.sleep("1 minute"), Effect.sleep("5 seconds")], { concurrency: "unbounded" })
      )
      expect(result[0]._tag).toBe("Right")
      expect(slept).toEqual([5000, 55000])
    })
  )

  it.effect("steps onto fractional wake-ups exactly (jittered backoffs at once end)", () =>
    Effect.gen(function* () {
      // Instants of a few hundred ms carry fractions finer than a nanosecond: a step of
      // `next - now` rounds to 0 ns there, and a loop of such steps never arrives.
      const backoff = (base: number) =>
        Effect.fail("x").pipe(
          Effect.retry(
            Schedule.exponential(Duration.millis(base)).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(4)))
          ),
          Effect.either
        )
      const { slept } = yield* runAdvancing(
        Effect.all([backoff(31), backoff(37), backoff(41), backoff(43)], { concurrency: "unbounded" }),
        { idleMillis: 200 }
      )
      expect(slept.length).toBe(16)
      expect(slept.every((d) => d > 0)).toBe(true)
    })
  )

  it.effect("says plainly when every fiber waits on nothing the clock will wake", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(runAdvancing(Effect.never, { idleMillis: 50 }))
      expect(exit._tag).toBe("Failure")
      expect(String(exit._tag === "Failure" ? exit.cause : "")).toMatch(/waits, but on nothing the TestClock will wake/)
    })
  )

  it.effect("refuses a jump beyond the horizon, and keeps the older (effect, horizonMillis) form", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(runAdvancing(Effect.sleep("1 hour"), 60_000))
      expect(String(exit._tag === "Failure" ? exit.cause : "")).toMatch(/beyond the horizon of 60000 ms/)
      const { slept } = yield* runAdvancing(Effect.sleep("30 seconds"), 60_000)
      expect(slept).toEqual([30_000])
    })
  )
})
