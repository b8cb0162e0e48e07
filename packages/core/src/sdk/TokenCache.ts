/**
 * Where the SDK caches installation tokens (SPEC §7): the {@link TokenCache} tag, what it holds,
 * and the default bounded in-memory LRU. Cloudflare KV is in {@link ./KvTokenCache.ts}.
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type { Permissions } from "../api/Permissions.js"

/** A cached installation token. */
export interface CachedToken {
  readonly token: Redacted.Redacted<string>
  /**
   * When the token expires: a `DateTime.Utc`, as `expiresAt` is everywhere in the Effect API (the
   * minted `InstallationAccessToken`'s). `DateTime.toEpochMillis` gives epoch milliseconds.
   */
  readonly expiresAt: DateTime.Utc
  readonly permissions: Permissions
  readonly installationId: string
  readonly organizationId: string
}

/** Where installation tokens are cached. Values hold live secrets: keep the store private. */
export class TokenCache extends Context.Tag("@icr-apps/core/TokenCache")<
  TokenCache,
  {
    readonly get: (key: string) => Effect.Effect<Option.Option<CachedToken>>
    /** Stores until `expiresAt` (an implementation may keep it a little longer, never shorter than needed). */
    readonly set: (key: string, value: CachedToken) => Effect.Effect<void>
    readonly delete: (key: string) => Effect.Effect<void>
  }
>() {
  /** A bounded in-memory LRU cache (the module's `layerMemoryCache`, on the tag). */
  static readonly layerMemoryCache = (capacity = 1000): Layer.Layer<TokenCache> => layerMemoryCache(capacity)
}

/** A bounded in-memory LRU cache (default 1,000 entries); entries past `expiresAt` are dropped on read. */
export const layerMemoryCache = (capacity = 1000): Layer.Layer<TokenCache> =>
  Layer.sync(TokenCache, () => {
    const entries = new Map<string, CachedToken>()
    return {
      get: (key) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          const hit = entries.get(key)
          if (hit === undefined) return Effect.succeed(Option.none())
          entries.delete(key)
          if (DateTime.toEpochMillis(hit.expiresAt) <= now) return Effect.succeed(Option.none())
          entries.set(key, hit)
          return Effect.succeed(Option.some(hit))
        }),
      set: (key, value) =>
        Effect.sync(() => {
          entries.delete(key)
          entries.set(key, value)
          while (entries.size > capacity) entries.delete(entries.keys().next().value!)
        }),
      delete: (key) => Effect.sync(() => void entries.delete(key))
    }
  })
