/**
 * The broker's token cache: the SDK's KV cache (`KvTokenCache`: TTL from `expiresAt`, never
 * below KV's 60 s floor, a failure is a miss) over a KV namespace that encrypts at rest.
 *
 * Two keys are derived from `BROKER_CACHE_SECRET` with HKDF-SHA256: an AES-256-GCM key for values
 * and an HMAC-SHA256 key for key names. A value is `v1.<iv>.<ciphertext>` (base64url, a fresh
 * 96-bit IV each write) sealed with its own KV key name as additional data, so an entry copied
 * under another name (a broad token moved to where a narrow one is looked up) fails to open. Key
 * names are HMACs of the SDK's cache key, so a KV listing does not reveal which installations or
 * permissions are cached. Anything that does not open — another secret, a tampered value, an
 * older format — is a cache miss, and the broker mints a new token.
 */
import * as KvTokenCache from "@icr-apps/core/sdk/KvTokenCache"
import { TokenCache } from "@icr-apps/core/sdk/TokenCache"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"

/** The KV key prefix of the broker's cached tokens. */
export const PREFIX = "broker:token:"
/** The format tag of an encrypted value. */
const VERSION = "v1"
const SALT = "icr-apps/broker/token-cache"

const utf8 = (text: string) => new Uint8Array(new TextEncoder().encode(text))

/** The two keys of the cache, derived from the secret. */
export interface CacheKeys {
  readonly seal: CryptoKey
  readonly name: CryptoKey
}

/** Derives the value-sealing and key-naming keys from a secret (HKDF-SHA256; neither is extractable). */
export const deriveKeys = (secret: string): Promise<CacheKeys> =>
  (async () => {
    const base = await crypto.subtle.importKey("raw", utf8(secret), "HKDF", false, ["deriveKey"])
    const hkdf = (info: string) => ({ name: "HKDF", hash: "SHA-256", salt: utf8(SALT), info: utf8(info) })
    const [seal, name] = await Promise.all([
      crypto.subtle.deriveKey(hkdf("aes-256-gcm value key v1"), base, { name: "AES-GCM", length: 256 }, false, [
        "encrypt",
        "decrypt"
      ]),
      crypto.subtle.deriveKey(
        hkdf("hmac-sha256 key-name key v1"),
        base,
        { name: "HMAC", hash: "SHA-256", length: 256 },
        false,
        ["sign"]
      )
    ])
    return { seal, name }
  })()

const hex = (bytes: ArrayBuffer) => Encoding.encodeHex(new Uint8Array(bytes))

/** The KV key name under which `key` is stored: {@link PREFIX} and the HMAC of `key`. */
export const kvName = async (keys: CacheKeys, key: string): Promise<string> =>
  PREFIX + hex(await crypto.subtle.sign("HMAC", keys.name, utf8(key)))

/** The part of a KV namespace the cache needs (structurally a Workers `KVNamespace`). */
export type KvLike = KvTokenCache.KvNamespaceLike

/**
 * A KV namespace that seals every value it stores and opens every value it reads, under names
 * derived from the keys it is given. What reaches the underlying KV is never plaintext.
 */
export const sealedKv = (kv: KvLike, keys: CacheKeys): KvLike => {
  const nameOf = (key: string) => kvName(keys, key)
  return {
    get: async (key) => {
      const name = await nameOf(key)
      const stored = await kv.get(name, "text")
      if (stored === null) return null
      const [version, iv, sealed] = stored.split(".")
      const ivBytes = Encoding.decodeBase64Url(iv ?? "")
      const sealedBytes = Encoding.decodeBase64Url(sealed ?? "")
      if (version !== VERSION || Either.isLeft(ivBytes) || Either.isLeft(sealedBytes)) return null
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: new Uint8Array(ivBytes.right), additionalData: utf8(name) },
          keys.seal,
          new Uint8Array(sealedBytes.right)
        )
        return new TextDecoder().decode(plain)
      } catch {
        // Another secret, or a value that was tampered with or moved: a miss, never an error.
        return null
      }
    },
    put: async (key, value, options) => {
      const name = await nameOf(key)
      const iv = crypto.getRandomValues(new Uint8Array(12))
      const sealed = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: utf8(name) },
        keys.seal,
        utf8(value)
      )
      await kv.put(
        name,
        `${VERSION}.${Encoding.encodeBase64Url(iv)}.${Encoding.encodeBase64Url(new Uint8Array(sealed))}`,
        options
      )
    },
    delete: async (key) => kv.delete(await nameOf(key))
  }
}

/** The SDK's KV token cache over {@link sealedKv}. */
export const make = (kv: KvLike, keys: CacheKeys): TokenCache["Type"] => KvTokenCache.make(sealedKv(kv, keys))

/** {@link make} as a layer, deriving the keys from `secret` once. */
export const layer = (kv: KvLike, secret: string): Layer.Layer<TokenCache> =>
  Layer.effect(
    TokenCache,
    Effect.map(
      Effect.promise(() => deriveKeys(secret)),
      (keys) => make(kv, keys)
    )
  )
