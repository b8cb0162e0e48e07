/**
 * Where the issuer keeps access tokens: records keyed by the SHA-256 digest of the secret, never
 * the secret. Cloudflare KV in the worker; an in-memory store here that obeys KV's rules.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Unavailable } from "../api/Problems.js"
import type { StoredToken } from "../api/Tokens.js"
import { KV_MIN_TTL_SECONDS } from "../internal/kv.js"

/** KV refuses an `expirationTtl` below 60 seconds; every store obeys the same floor. */
export const MIN_TTL_SECONDS = KV_MIN_TTL_SECONDS

/** Storage for token records, keyed by digest. */
export class TokenStore extends Context.Tag("@icr-apps/core/TokenStore")<
  TokenStore,
  {
    /** Stores a record that disappears after `ttlSeconds` (>= 60). */
    readonly put: (digest: string, token: StoredToken, ttlSeconds: number) => Effect.Effect<void, Unavailable>
    /** The record for a digest, if it is still there. */
    readonly get: (digest: string) => Effect.Effect<Option.Option<StoredToken>, Unavailable>
    /** Forgets a digest. */
    readonly delete: (digest: string) => Effect.Effect<void, Unavailable>
  }
>() {}

/** A store in memory, expiring entries by `Clock` (so `TestClock` moves them), with KV's TTL floor. */
export const layerMemory: Layer.Layer<TokenStore> = Layer.sync(TokenStore, () => {
  const entries = new Map<string, { readonly token: StoredToken; readonly expiresAt: number }>()
  return {
    put: (digest, token, ttlSeconds) =>
      Effect.gen(function* () {
        if (!(ttlSeconds >= MIN_TTL_SECONDS)) {
          return yield* Effect.dieMessage(`expirationTtl ${ttlSeconds} is below the ${MIN_TTL_SECONDS} s floor`)
        }
        const now = yield* Clock.currentTimeMillis
        entries.set(digest, { token, expiresAt: now + ttlSeconds * 1000 })
      }),
    get: (digest) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = entries.get(digest)
        if (entry === undefined) return Option.none()
        if (entry.expiresAt <= now) {
          entries.delete(digest)
          return Option.none()
        }
        return Option.some(entry.token)
      }),
    delete: (digest) => Effect.sync(() => void entries.delete(digest))
  }
})
