import * as KvTokenCache from "@icr-apps/core/sdk/KvTokenCache"
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

/** A KV namespace in memory (no TTL: the contract reads expiry from `expiresAt` on the clock). */
const memoryKv = (): KvTokenCache.KvNamespaceLike => {
  const store = new Map<string, string>()
  return {
    get: async (key) => store.get(key) ?? null,
    put: async (key, value) => void store.set(key, value),
    delete: async (key) => void store.delete(key)
  }
}
/** A KV namespace that is down: every operation rejects. */
const downKv: KvTokenCache.KvNamespaceLike = {
  get: () => Promise.reject(new Error("KV unavailable")),
  put: () => Promise.reject(new Error("KV unavailable")),
  delete: () => Promise.reject(new Error("KV unavailable"))
}

tokenCacheContract(
  "KV token cache over an in-memory namespace",
  () => KvTokenCache.layer(memoryKv()),
  { describe, it, expect, beforeAll },
  { failing: () => KvTokenCache.layer(downKv) }
)
