/**
 * The contract every `TokenCache` obeys, as a suite any implementation can run: the in-memory LRU
 * in Node, Cloudflare KV in workerd. Expiry is read on Effect's `Clock` (a `TestClock` here: no real
 * waiting), writes from many fibers at once stay whole, and a store that fails is a cache miss,
 * never an error: the SDK then mints instead of failing.
 */
import type * as TokenCacheModule from "@icr-apps/core/sdk/TokenCache"
import { TokenCache } from "@icr-apps/core/sdk/TokenCache"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { TestRunner } from "./TestRunner.js"

const entry = (expiresAt: number, n = 1): TokenCacheModule.CachedToken => ({
  token: Redacted.make(`crs_${String(n).padStart(48, "0")}`),
  expiresAt: DateTime.unsafeMake(expiresAt),
  permissions: { organization_info: "VIEW" },
  installationId: "123e4567-e89b-12d3-a456-426614174000",
  organizationId: "223e4567-e89b-12d3-a456-426614174000"
})

/** Registers the suite for a cache layer (fresh per test) with the given test runner's functions. */
export const tokenCacheContract = (
  name: string,
  makeLayer: () => Layer.Layer<TokenCache>,
  { describe, expect, it }: TestRunner,
  options: {
    /** The same implementation over a store whose every operation fails (KV down), when it has a store. */
    readonly failing?: () => Layer.Layer<TokenCache>
  } = {}
) =>
  describe(`TokenCache contract: ${name}`, () => {
    const run = <A>(f: (cache: TokenCache["Type"]) => Effect.Effect<A>) =>
      Effect.runPromise(Effect.provide(Effect.flatMap(TokenCache, f), makeLayer()))
    const key = () => `k-${crypto.randomUUID()}`

    it("returns what was set, token still redacted, and nothing for an unknown key", async () => {
      const k = key()
      const value = entry(Date.now() + 3_600_000)
      const got = await run((c) => Effect.zipRight(c.set(k, value), c.get(k)))
      expect(Option.isSome(got)).toBe(true)
      const hit = Option.getOrThrow(got)
      expect(Redacted.value(hit.token)).toBe(Redacted.value(value.token))
      expect(String(hit.token)).toBe("<redacted>")
      expect({ ...hit, token: null }).toEqual({ ...value, token: null })
      expect(Option.isNone(await run((c) => c.get(key())))).toBe(true)
    })
    it("replaces on set and forgets on delete", async () => {
      const k = key()
      const later = entry(Date.now() + 7_200_000, 2)
      const got = await run((c) =>
        Effect.gen(function* () {
          yield* c.set(k, entry(Date.now() + 3_600_000, 1))
          yield* c.set(k, later)
          const replaced = yield* c.get(k)
          yield* c.delete(k)
          return [replaced, yield* c.get(k)] as const
        })
      )
      expect(Redacted.value(Option.getOrThrow(got[0]).token)).toBe(Redacted.value(later.token))
      expect(Option.isNone(got[1])).toBe(true)
    })
    const onTestClock = <A>(f: (cache: TokenCache["Type"]) => Effect.Effect<A>) =>
      Effect.runPromise(
        Effect.provide(Effect.flatMap(TokenCache, f), Layer.merge(makeLayer(), TestContext.TestContext))
      )
    it("expires on the Effect clock: there until expiresAt, gone at it (TestClock, no real wait)", async () => {
      const k = key()
      const got = await onTestClock((c) =>
        Effect.gen(function* () {
          yield* TestClock.setTime(1_765_000_000_000)
          yield* c.set(k, entry(1_765_000_000_000 + 120_000))
          yield* TestClock.adjust("119999 millis")
          const before = yield* c.get(k)
          yield* TestClock.adjust("1 millis")
          return [Option.isSome(before), Option.isSome(yield* c.get(k))]
        })
      )
      expect(got).toEqual([true, false])
    })
    it("keeps every entry whole when many fibers write and read at once", async () => {
      const keys = Array.from({ length: 40 }, key)
      const shared = key()
      const got = await run((c) =>
        Effect.gen(function* () {
          yield* Effect.forEach(
            keys,
            (k, i) =>
              Effect.zipRight(
                c.set(k, entry(Date.now() + 3_600_000, i)),
                c.set(shared, entry(Date.now() + 3_600_000, i))
              ),
            { concurrency: "unbounded", discard: true }
          )
          const each = yield* Effect.forEach(keys, (k) => c.get(k), { concurrency: "unbounded" })
          return { each, shared: yield* c.get(shared) }
        })
      )
      got.each.forEach((hit, i) => {
        expect(Redacted.value(Option.getOrThrow(hit).token)).toBe(`crs_${String(i).padStart(48, "0")}`)
      })
      const last = Option.getOrThrow(got.shared)
      const n = Number(Redacted.value(last.token).slice(4))
      expect(n >= 0 && n < keys.length).toBe(true)
      expect({ ...last, token: null }).toEqual({ ...entry(DateTime.toEpochMillis(last.expiresAt), n), token: null })
    })
    if (options.failing !== undefined) {
      const failing = options.failing
      it("treats a failing store as a miss: get is empty, set and delete do not fail", async () => {
        const k = key()
        const exit = await Effect.runPromiseExit(
          Effect.provide(
            Effect.flatMap(TokenCache, (c) =>
              Effect.gen(function* () {
                yield* c.set(k, entry(Date.now() + 3_600_000))
                const got = yield* c.get(k)
                yield* c.delete(k)
                return Option.isNone(got)
              })
            ),
            Layer.merge(failing(), Logger.remove(Logger.defaultLogger))
          )
        )
        expect(exit._tag).toBe("Success")
        expect(exit._tag === "Success" && exit.value).toBe(true)
      })
    }
    it("never returns an entry past its expiresAt", async () => {
      const k = key()
      const got = await run((c) => Effect.zipRight(c.set(k, entry(Date.now() - 1)), c.get(k)))
      expect(Option.isNone(got)).toBe(true)
    })
  })
