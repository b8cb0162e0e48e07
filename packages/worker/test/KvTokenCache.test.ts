import { env } from "cloudflare:test"
import { tokenCacheContract } from "@icr-apps/testkit/TokenCacheContract"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { beforeAll, describe, expect, it } from "vitest"
import * as KvTokenCache from "@icr-apps/core/sdk/KvTokenCache"

/** KV that is down: every operation rejects (the cache must read it as a miss). */
const downKv: KvTokenCache.KvNamespaceLike = {
  get: () => Promise.reject(new Error("KV unavailable")),
  put: () => Promise.reject(new Error("KV unavailable")),
  delete: () => Promise.reject(new Error("KV unavailable"))
}

// The SDK's cache contract, on real KV in workerd.
tokenCacheContract(
  "Cloudflare KV",
  () => KvTokenCache.layer(env.APP_TOKEN_CACHE),
  { describe, it, expect, beforeAll },
  { failing: () => KvTokenCache.layer(downKv) }
)

it("stores under a hashed key with a TTL from expiresAt, never below 60 s", async () => {
  const cache = KvTokenCache.make(env.APP_TOKEN_CACHE)
  const before = new Set(
    (await env.APP_TOKEN_CACHE.list({ prefix: KvTokenCache.CACHE_PREFIX })).keys.map((k) => k.name)
  )
  const expiresAt = Date.now() + 10_000
  await Effect.runPromise(
    cache.set("a very long key ".repeat(100), {
      token: Redacted.make(`crs_${"1".repeat(48)}`),
      expiresAt: DateTime.unsafeMake(expiresAt),
      permissions: {},
      installationId: "i",
      organizationId: "o"
    })
  )
  const keys = (await env.APP_TOKEN_CACHE.list({ prefix: KvTokenCache.CACHE_PREFIX })).keys.filter(
    (k) => !before.has(k.name)
  )
  expect(keys).toHaveLength(1)
  expect(keys[0]!.name).toMatch(/^icr-apps:installation-token:[0-9a-f]{64}$/)
  // KV would have refused a 10 s TTL; the entry exists, so the 60 s floor was applied.
  expect(keys[0]!.expiration).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 55)
  // Stored as epoch milliseconds, as before expiresAt became a DateTime: older entries still read.
  expect(JSON.parse((await env.APP_TOKEN_CACHE.get(keys[0]!.name))!).expiresAt).toBe(expiresAt)
  const read = await Effect.runPromise(cache.get("a very long key ".repeat(100)))
  expect(read._tag === "Some" && DateTime.toEpochMillis(read.value.expiresAt)).toBe(expiresAt)
})
