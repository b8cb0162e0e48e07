/** Cloudflare KV's rules that every store of this project obeys, in memory as in KV. */

/** KV refuses an `expirationTtl` below 60 seconds. */
export const KV_MIN_TTL_SECONDS = 60

/** The `expirationTtl` of an entry that must live until `expiresAtMillis`, never below KV's floor. */
export const kvTtlSeconds = (expiresAtMillis: number, nowMillis: number): number =>
  Math.max(KV_MIN_TTL_SECONDS, Math.ceil((expiresAtMillis - nowMillis) / 1000))
