/**
 * {@link TokenStore} on Cloudflare KV: key `token:<sha256 hex>`, value the JSON record, with
 * `expirationTtl` = the token's lifetime (never below KV's 60 s floor). See STORAGE.md.
 */
import { StoredToken } from "@icr-apps/core/api/Tokens"
import { Unavailable } from "@icr-apps/core/api/Problems"
import { MIN_TTL_SECONDS, TokenStore } from "@icr-apps/core/issuer/TokenStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** The KV key prefix of token records. */
export const TOKEN_PREFIX = "token:"

const decode = Schema.decodeUnknownOption(Schema.parseJson(StoredToken))
const encode = Schema.encodeSync(Schema.parseJson(StoredToken))

const unavailable = () => new Unavailable({ detail: "Token storage is unavailable; retry shortly", retryAfter: 1 })

/** A {@link TokenStore} over a KV namespace. */
export const make = (kv: KVNamespace): TokenStore["Type"] => ({
  put: (digest, token, ttlSeconds) =>
    Effect.tryPromise({
      try: () =>
        kv.put(TOKEN_PREFIX + digest, encode(token), {
          expirationTtl: Math.max(MIN_TTL_SECONDS, Math.ceil(ttlSeconds))
        }),
      catch: unavailable
    }),
  get: (digest) =>
    Effect.map(
      Effect.tryPromise({ try: () => kv.get(TOKEN_PREFIX + digest, "text"), catch: unavailable }),
      // A record that no longer decodes (an older format) is treated as absent, never trusted.
      (text) => (text === null ? Option.none() : decode(text))
    ),
  delete: (digest) => Effect.tryPromise({ try: () => kv.delete(TOKEN_PREFIX + digest), catch: unavailable })
})

/** The store as a layer. */
export const layer = (kv: KVNamespace): Layer.Layer<TokenStore> => Layer.succeed(TokenStore, make(kv))
