/**
 * The SDK's installation-token cache on Cloudflare KV, for apps that run on Workers: entries
 * survive isolates and are shared by every isolate of the app. KV holds live tokens here — use a
 * namespace only the app can read. TTL comes from `expiresAt`, never below KV's 60 s floor; the
 * SDK also checks `expiresAt` on read, so KV's lazy expiry never hands out a dead token.
 */
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { Permissions } from "../api/Permissions.js"
import { sha256Hex } from "../internal/digest.js"
import { kvTtlSeconds } from "../internal/kv.js"
import { type CachedToken, TokenCache } from "./TokenCache.js"

/**
 * The part of a Cloudflare `KVNamespace` the cache uses. Structural, so the SDK needs no Workers
 * types: pass `env.MY_KV` as it is, or anything with the same three methods.
 */
export interface KvNamespaceLike {
  get(key: string, type: "text"): Promise<string | null>
  put(key: string, value: string, options: { expirationTtl: number }): Promise<void>
  delete(key: string): Promise<void>
}

/** The KV key prefix of cached installation tokens. */
export const CACHE_PREFIX = "icr-apps:installation-token:"

const Entry = Schema.parseJson(
  Schema.Struct({
    token: Schema.String,
    // Stored as epoch milliseconds (what entries written before expiresAt became a DateTime hold).
    expiresAt: Schema.DateTimeUtcFromNumber,
    permissions: Permissions,
    installationId: Schema.String,
    organizationId: Schema.String
  })
)
const decode = Schema.decodeUnknownOption(Entry)
const encode = Schema.encodeSync(Entry)

/** Cache keys can be long (they hold a base URL and permissions); KV keys are hashed to stay short. */
const kvKey = (key: string) => Effect.map(sha256Hex(key), (digest) => CACHE_PREFIX + digest)

/**
 * A {@link TokenCache} over a KV namespace. A KV failure degrades to a cache miss (or a skipped
 * write), logged without the key or value: the SDK then mints a token rather than failing.
 */
export const make = (kv: KvNamespaceLike): TokenCache["Type"] => ({
  get: (key) =>
    kvKey(key).pipe(
      Effect.flatMap((name) => Effect.tryPromise(() => kv.get(name, "text"))),
      Effect.flatMap((text) =>
        Effect.map(Clock.currentTimeMillis, (now): Option.Option<CachedToken> => {
          if (text === null) return Option.none()
          return Option.flatMap(decode(text), (e) =>
            DateTime.toEpochMillis(e.expiresAt) <= now
              ? Option.none()
              : Option.some({ ...e, token: Redacted.make(e.token) })
          )
        })
      ),
      Effect.catchAll(() => Effect.as(Effect.logWarning("icr-apps: KV token cache read failed"), Option.none()))
    ),
  set: (key, value) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const name = yield* kvKey(key)
      yield* Effect.tryPromise(() =>
        kv.put(name, encode({ ...value, token: Redacted.value(value.token) }), {
          expirationTtl: kvTtlSeconds(DateTime.toEpochMillis(value.expiresAt), now)
        })
      )
    }).pipe(Effect.catchAll(() => Effect.logWarning("icr-apps: KV token cache write failed"))),
  delete: (key) =>
    Effect.flatMap(kvKey(key), (name) => Effect.tryPromise(() => kv.delete(name))).pipe(
      Effect.catchAll(() => Effect.logWarning("icr-apps: KV token cache delete failed"))
    )
})

/** The cache as a layer. */
export const layer = (kv: KvNamespaceLike): Layer.Layer<TokenCache> => Layer.succeed(TokenCache, make(kv))
