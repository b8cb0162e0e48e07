/**
 * Request rate limiting for the issuer, per client. Optional: an issuer without a `RateLimiter`
 * in its context does not limit. The worker uses Cloudflare's rate-limiting binding; this module
 * has a fixed-window limiter in memory (per isolate/process), driven by `Clock`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** The verdict on one request. */
export interface RateDecision {
  readonly allowed: boolean
  /** When refused: seconds until the client may try again. */
  readonly retryAfterSeconds: number
}

/** Counts requests per client key. */
export class RateLimiter extends Context.Tag("@icr-apps/core/RateLimiter")<
  RateLimiter,
  { readonly check: (clientKey: string) => Effect.Effect<RateDecision> }
>() {}

/** A fixed-window limiter in memory: at most `limit` requests per `periodSeconds` per client key. */
export const layerMemory = (options: {
  readonly limit: number
  readonly periodSeconds: number
}): Layer.Layer<RateLimiter> =>
  Layer.sync(RateLimiter, () => {
    const windows = new Map<string, { start: number; count: number }>()
    const period = options.periodSeconds * 1000
    return {
      check: (key) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          const start = now - (now % period)
          let w = windows.get(key)
          if (w === undefined || w.start !== start) {
            // Forget every finished window once in a while, so idle clients do not accumulate.
            if (windows.size > 10_000) for (const [k, v] of windows) if (v.start !== start) windows.delete(k)
            w = { start, count: 0 }
            windows.set(key, w)
          }
          w.count++
          return Effect.succeed(
            w.count <= options.limit
              ? { allowed: true, retryAfterSeconds: 0 }
              : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((start + period - now) / 1000)) }
          )
        })
    }
  })
