/**
 * Running Effect code whose clock is a `TestClock` while real asynchronous work (an HTTP call to
 * the in-memory issuer, WebCrypto) happens under it.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"

/**
 * Runs `effect` while moving the `TestClock` to each sleep it schedules less than `horizonMillis`
 * ahead (backoff, `Retry-After`, `Fault.delay`), and letting real I/O finish in between. Returns
 * the result and the delays it slept, in order — so a test can assert "waited exactly 2 s".
 */
export const runAdvancing = <A, E, R>(effect: Effect.Effect<A, E, R>, horizonMillis = 5 * 60_000) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    const slept: Array<number> = []
    for (let i = 0; i < 100_000; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) break
      const sleeps = yield* TestClock.sleeps()
      const now = yield* Clock.currentTimeMillis
      const due = Chunk.findFirst(
        Chunk.sort(sleeps, (a: number, b: number) => (a < b ? -1 : a > b ? 1 : 0)),
        (t) => t - now < horizonMillis
      )
      if (Option.isSome(due)) {
        slept.push(due.value - now)
        yield* TestClock.adjust(due.value - now)
      } else {
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
      }
    }
    return { result: yield* Fiber.join(fiber), slept }
  })
