/**
 * Running Effect code whose clock is a `TestClock` while real asynchronous work (an HTTP call to
 * the in-memory issuer, WebCrypto) happens under it.
 *
 * The rule: time moves only when every fiber is waiting on the clock. The kit counts the real work
 * it starts (every request the fake issuer serves, every arrange call, every JWT the layer's SDK
 * signs); while any of it is in flight, or while a fiber still runs, the clock stands still. Then it
 * jumps to the next absolute wake-up of a sleep a fiber still waits on (`TestClock.setTime`, never
 * a floating-point delta), so a timeout whose work already finished is never "slept".
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"

let inFlight = 0
let version = 0

/**
 * Runs real asynchronous work that {@link runAdvancing} must wait for before it moves the clock.
 * The kit wraps its own (the fake issuer's requests, arrange calls, the layer's JWT signing); wrap
 * yours when code under test awaits something else real (a real `fetch`, a file, a worker).
 */
export const trackRealWork = <A>(work: () => Promise<A>): Promise<A> => {
  inFlight++
  version++
  const done = () => {
    inFlight--
    version++
  }
  let promise: Promise<A>
  try {
    promise = work()
  } catch (e) {
    done()
    throw e
  }
  return promise.then(
    (a) => {
      done()
      return a
    },
    (e) => {
      done()
      throw e
    }
  )
}

/** Inside tracked work, waits on the clock (`Fault.delay`): not real work while it waits. */
export const waitingOnClock = async <A>(wait: Promise<A>): Promise<A> => {
  inFlight--
  version++
  try {
    return await wait
  } finally {
    inFlight++
    version++
  }
}

/** How much tracked real work is in flight now (for diagnostics). */
export const realWorkInFlight = (): number => inFlight

const macrotask = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 0)))

interface SleepEntry {
  readonly 0: number
  readonly 1: { readonly state?: { readonly current?: { readonly _tag?: string; readonly joiners?: Array<unknown> } } }
}

/**
 * The wake-ups some fiber still waits on. `TestClock.sleeps` also lists sleeps whose fiber was
 * interrupted (a timeout whose work won): the TestClock keeps them until their time comes. They are
 * left out here by reading the clock's own state (a sleep nobody awaits any more has no joiner);
 * should that state ever look different, every listed sleep counts.
 */
const liveSleeps: Effect.Effect<ReadonlyArray<number>> = Effect.gen(function* () {
  const clock = yield* TestClock.testClock()
  const state = (clock as unknown as { readonly clockState?: Ref.Ref<{ readonly sleeps: Chunk.Chunk<SleepEntry> }> })
    .clockState
  if (state !== undefined && Ref.RefTypeId in (state as object)) {
    const data = yield* Ref.get(state)
    const out: Array<number> = []
    for (const entry of data.sleeps) {
      const deferredState = entry[1]?.state?.current
      if (deferredState === undefined || deferredState._tag === undefined) {
        return Chunk.toReadonlyArray(yield* TestClock.sleeps())
      }
      if (deferredState._tag === "Pending" && (deferredState.joiners?.length ?? 1) > 0) out.push(entry[0])
    }
    return out
  }
  return Chunk.toReadonlyArray(yield* TestClock.sleeps())
})

/** Options of {@link runAdvancing}. */
export interface RunAdvancingOptions {
  /** The farthest one jump may go, in ms (default: no limit); a wake-up beyond it fails plainly. */
  readonly horizonMillis?: number | undefined
  /**
   * How long (real ms) to wait when every fiber waits but on no sleep and no tracked work — a
   * deadlock, or real work the kit cannot see (see {@link trackRealWork}) — before failing (default 2,000).
   */
  readonly idleMillis?: number | undefined
  /** The most jumps before failing plainly (a loop that sleeps forever; default 10,000). */
  readonly maxSteps?: number | undefined
}

/**
 * Runs `effect`, moving the `TestClock` to each next wake-up whenever every fiber is waiting on the
 * clock and no real work the kit tracks is in flight. Returns the result and the delays it moved
 * the clock by, in order — so a test can assert "waited exactly 2 s". It never moves time while a
 * request is in flight (an attempt timeout cannot fire early), never steps by floating-point
 * deltas, and ends: when the effect ends, or with a plain defect when it cannot go on (waiting on
 * nothing the clock will wake, a jump beyond `horizonMillis`, more than `maxSteps` jumps).
 *
 * `runAdvancing(effect, horizonMillis)` is the older form of `{ horizonMillis }`.
 */
export const runAdvancing = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: number | RunAdvancingOptions = {}
): Effect.Effect<{ readonly result: A; readonly slept: Array<number> }, E, R> =>
  Effect.gen(function* () {
    const opts: RunAdvancingOptions = typeof options === "number" ? { horizonMillis: options } : options
    const horizon = opts.horizonMillis ?? Number.POSITIVE_INFINITY
    const idleMillis = opts.idleMillis ?? 2_000
    const maxSteps = opts.maxSteps ?? 10_000
    // Every fiber the effect forks, however deep, is watched: none may be running when time moves.
    const supervisor = yield* Supervisor.track
    const fiber = yield* Effect.fork(Effect.supervised(effect, supervisor))
    const slept: Array<number> = []
    const done = Effect.map(Fiber.poll(fiber), Option.isSome)

    /**
     * Each fiber's status (asked of the fiber itself, so a fiber with a resumption queued answers only
     * once it has run up to its next suspension), or `undefined` when one is running.
     */
    const statuses = Effect.gen(function* () {
      const fibers = [fiber, ...(yield* supervisor.value)]
      const parts: Array<string> = []
      for (const f of fibers) {
        const status = yield* f.status
        if (status._tag === "Running") return undefined
        parts.push(
          `${FiberId.threadName(f.id())}:${status._tag === "Suspended" ? FiberId.threadName(status.blockingOn) : "done"}`
        )
      }
      return parts.join(";")
    })

    /**
     * Waits until no tracked work is in flight, no fiber runs, and nothing (statuses, wake-ups, the
     * tracked work) changes across three macrotasks: then every fiber waits on the clock or on nothing.
     */
    const settle = Effect.gen(function* () {
      let stable = 0
      let last = ""
      while (stable < 3) {
        yield* macrotask
        if (yield* done) return
        const fibers = yield* statuses
        const snapshot = `${inFlight}|${version}|${(yield* liveSleeps).join(",")}|${fibers}`
        if (inFlight === 0 && fibers !== undefined && snapshot === last) stable++
        else stable = 0
        last = snapshot
      }
    })

    for (let step = 0; ; step++) {
      yield* settle
      if (yield* done) break
      let sleeps = yield* liveSleeps
      if (sleeps.length === 0) {
        // Nothing the clock will wake: give untracked real work a chance, then say so plainly.
        const until = Date.now() + idleMillis
        while (sleeps.length === 0 && Date.now() < until) {
          yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 5)))
          yield* settle
          if (yield* done) break
          sleeps = yield* liveSleeps
        }
        if (yield* done) break
        if (sleeps.length === 0) {
          return yield* Effect.dieMessage(
            `runAdvancing: every fiber waits, but on nothing the TestClock will wake (no sleep scheduled, no tracked work in flight for ${idleMillis} ms): a deadlock, or real asynchronous work the kit cannot see — wrap it with trackRealWork`
          )
        }
        continue
      }
      if (step >= maxSteps) {
        return yield* Effect.dieMessage(
          `runAdvancing: more than ${maxSteps} jumps of the clock (a loop that sleeps forever?)`
        )
      }
      const now = yield* Clock.currentTimeMillis
      const next = Math.min(...sleeps)
      if (next - now > horizon) {
        return yield* Effect.dieMessage(
          `runAdvancing: the next wake-up is ${next - now} ms away, beyond the horizon of ${horizon} ms`
        )
      }
      yield* TestClock.setTime(next)
      slept.push(next - now)
    }
    return { result: yield* Fiber.join(fiber), slept }
  })
