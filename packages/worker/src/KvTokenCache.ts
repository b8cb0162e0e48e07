/**
 * The SDK's installation-token cache on Cloudflare KV, for apps that run on Workers: entries
 * survive isolates and are shared by every isolate of the app. KV holds live tokens here — use a
 * namespace only the app can read. TTL comes from `expiresAt`, never below KV's 60 s floor; the
 * SDK also checks `expiresAt` on read, so KV's lazy expiry never hands out a dead token.
 */
import { digestOf } from "@icr-apps/core/AccessTokens"
import { type CachedToken, TokenCache, ttlSecondsFor } from "@icr-apps/core/InstallationTokens"
import { Permissions } from "@icr-apps/core/Domain/Permissions"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

/** The KV key prefix of cached installation tokens. */
export const CACHE_PREFIX = "icr-apps:installation-token:"

const Entry = Schema.parseJson(
  Schema.Struct({
    token: Schema.String,
    expiresAt: Schema.Number,
    permissions: Permissions,
    installationId: Schema.String,
    organizationId: Schema.String
  })
)
const decode = Schema.decodeUnknownOption(Entry)
const encode = Schema.encodeSync(Entry)

/** Cache keys can be long (they hold a base URL and permissions); KV keys are hashed to stay short. */
const kvKey = (key: string) => Effect.map(digestOf(key), (digest) => CACHE_PREFIX + digest)

/**
 * A {@link TokenCache} over a KV namespace. A KV failure degrades to a cache miss (or a skipped
 * write), logged without the key or value: the SDK then mints a token rather than failing.
 */
export const make = (kv: KVNamespace): TokenCache["Type"] => ({
  get: (key) =>
    kvKey(key).pipe(
      Effect.flatMap((name) => Effect.tryPromise(() => kv.get(name, "text"))),
      Effect.flatMap((text) =>
        Effect.map(Clock.currentTimeMillis, (now): Option.Option<CachedToken> => {
          if (text === null) return Option.none()
          return Option.flatMap(decode(text), (e) =>
            e.expiresAt <= now ? Option.none() : Option.some({ ...e, token: Redacted.make(e.token) })
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
          expirationTtl: ttlSecondsFor(value, now)
        })
      )
    }).pipe(Effect.catchAll(() => Effect.logWarning("icr-apps: KV token cache write failed"))),
  delete: (key) =>
    Effect.flatMap(kvKey(key), (name) => Effect.tryPromise(() => kv.delete(name))).pipe(
      Effect.catchAll(() => Effect.logWarning("icr-apps: KV token cache delete failed"))
    )
})

/** The cache as a layer. */
export const layer = (kv: KVNamespace): Layer.Layer<TokenCache> => Layer.succeed(TokenCache, make(kv))
