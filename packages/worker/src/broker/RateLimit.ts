/**
 * The broker's rate limit: a fixed window per key (a caller after authentication, a client
 * address for failed attempts), in memory, per isolate.
 *
 * Per isolate means the limit is per Cloudflare isolate, not global: a caller whose requests land
 * on N isolates gets up to N times the limit. It bounds a noisy or compromised workload and a
 * stream of forged tokens cheaply, with no storage round trip per request; for a global limit,
 * put a Rate Limiting binding (as the issuer's `RATE_LIMITER`) behind the same interface.
 */

import * as Effect from "effect/Effect"

/**
 * A Cloudflare Rate Limiting binding (`ratelimits` in the wrangler config): one budget per key,
 * shared by every isolate of the Worker in a location — what the in-memory windows cannot be.
 */
export interface RateLimitBinding {
  readonly limit: (options: { readonly key: string }) => Promise<{ readonly success: boolean }>
}

/** The period of the bindings the broker declares (wrangler.broker.jsonc): what a refusal asks to wait. */
export const BINDING_PERIOD_SECONDS = 60

/**
 * Counts `cost` requests of `key` against a shared binding, if there is one: whether all were within
 * its budget. A binding that fails allows (the in-memory limit still holds): a limiter outage must not
 * stop every exchange.
 */
export const takeShared = (binding: RateLimitBinding | undefined, key: string, cost = 1): Effect.Effect<boolean> =>
  binding === undefined || cost <= 0
    ? Effect.succeed(true)
    : Effect.promise(async () => {
        let allowed = true
        for (let i = 0; i < cost; i++) {
          try {
            if (!(await binding.limit({ key })).success) allowed = false
          } catch {
            // allowed: see above
          }
        }
        return allowed
      })

/** The answer of one check. */
export interface Decision {
  readonly allowed: boolean
  /** Seconds until the window ends (for `Retry-After`). */
  readonly retryAfterSeconds: number
}

/** A fixed-window limiter. */
export interface RateLimiter {
  /** Counts `cost` (default 1) requests of `key` at `now` (epoch ms) and says whether they are within the limit. */
  readonly take: (key: string, now: number, cost?: number) => Decision
  /** Whether `key` is already over the limit at `now`, without counting. */
  readonly peek: (key: string, now: number) => Decision
}

/**
 * The most keys remembered. Past it, finished windows are swept (at most once a second), and a key
 * that still finds no room shares the one overflow window: a client with many addresses (an IPv6
 * /48 is 65,536 /64s) cannot push an exhausted key out to reset its count, nor make every new key
 * cost a sweep of all the others.
 */
export const MAX_KEYS = 10_000
/** The key every key beyond {@link MAX_KEYS} counts against. */
export const OVERFLOW_KEY = "\u0000overflow"

/** `limit` requests per key per `windowSeconds`. */
export const make = (limit: number, windowSeconds = 60): RateLimiter => {
  const windows = new Map<string, { start: number; count: number }>()
  const windowMillis = windowSeconds * 1000
  let swept = Number.NEGATIVE_INFINITY
  const open = (window: { start: number } | undefined, now: number) =>
    window !== undefined && now - window.start < windowMillis
  /** The key a request counts against: its own, or the overflow key when the table is full. */
  const slot = (key: string, now: number): string => {
    if (windows.has(key) || windows.size < MAX_KEYS) return key
    if (now - swept >= 1000) {
      swept = now
      for (const [k, w] of windows) if (!open(w, now)) windows.delete(k)
    }
    return windows.size < MAX_KEYS ? key : OVERFLOW_KEY
  }
  const current = (key: string, now: number) => {
    const window = windows.get(key)
    if (window !== undefined && open(window, now)) return window
    const fresh = { start: now, count: 0 }
    windows.set(key, fresh)
    return fresh
  }
  const decision = (window: { start: number; count: number }, now: number): Decision => ({
    allowed: window.count <= limit,
    retryAfterSeconds: Math.max(1, Math.ceil((window.start + windowMillis - now) / 1000))
  })
  return {
    take: (key, now, cost = 1) => {
      const window = current(slot(key, now), now)
      window.count += cost
      return decision(window, now)
    },
    peek: (key, now) => {
      const window = windows.get(windows.has(key) || windows.size < MAX_KEYS ? key : OVERFLOW_KEY)
      if (window === undefined || !open(window, now)) return { allowed: true, retryAfterSeconds: 0 }
      return { allowed: window.count < limit, retryAfterSeconds: decision(window, now).retryAfterSeconds }
    }
  }
}
