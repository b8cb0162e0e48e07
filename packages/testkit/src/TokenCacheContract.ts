/**
 * The contract every `TokenCache` obeys, as a suite any implementation can run: the in-memory LRU
 * in Node, Cloudflare KV in workerd.
 */
import type * as TokenCacheModule from "@icr-apps/core/sdk/TokenCache"
import { TokenCache } from "@icr-apps/core/sdk/TokenCache"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
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
  { describe, expect, it }: TestRunner
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
    it("never returns an entry past its expiresAt", async () => {
      const k = key()
      const got = await run((c) => Effect.zipRight(c.set(k, entry(Date.now() - 1)), c.get(k)))
      expect(Option.isNone(got)).toBe(true)
    })
  })
