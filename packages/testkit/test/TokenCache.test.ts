import * as TokenCache from "@icr-apps/core/sdk/TokenCache"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { beforeAll, describe, expect, it } from "vitest"
import { tokenCacheContract } from "../src/TokenCacheContract.js"

tokenCacheContract("in-memory LRU", () => TokenCache.layerMemoryCache(), { describe, it, expect, beforeAll })

describe("in-memory LRU bound", () => {
  it("evicts the least recently used entry beyond its capacity", async () => {
    const value = (n: number): TokenCache.CachedToken => ({
      token: Redacted.make(`crs_${n}`),
      expiresAt: DateTime.unsafeMake(Date.now() + 3_600_000),
      permissions: {},
      installationId: "x",
      organizationId: "y"
    })
    const present = await Effect.runPromise(
      Effect.provide(
        Effect.gen(function* () {
          const cache = yield* TokenCache.TokenCache
          yield* cache.set("a", value(1))
          yield* cache.set("b", value(2))
          yield* cache.get("a") // a is now the most recently used
          yield* cache.set("c", value(3))
          return [yield* cache.get("a"), yield* cache.get("b"), yield* cache.get("c")].map(Option.isSome)
        }),
        TokenCache.layerMemoryCache(2)
      )
    )
    expect(present).toEqual([true, false, true])
  })
})
