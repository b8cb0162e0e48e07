/**
 * The broker's rate limit: a fixed window per key (a caller after authentication, a client
 * address for failed attempts), in memory, per isolate.
 *
 * Per isolate means the limit is per Cloudflare isolate, not global: a caller whose requests land
 * on N isolates gets up to N times the limit. It bounds a noisy or compromised workload and a
 * stream of forged tokens cheaply, with no storage round trip per request; for a global limit,
 * put a Rate Limiting binding (as the issuer's `RATE_LIMITER`) behind the same interface.
 */

/** The answer of one check. */
export interface Decision {
  readonly allowed: boolean
  /** Seconds until the window ends (for `Retry-After`). */
  readonly retryAfterSeconds: number
}

/** A fixed-window limiter. */
export interface RateLimiter {
  /** Counts one request of `key` at `now` (epoch ms) and says whether it is within the limit. */
  readonly take: (key: string, now: number) => Decision
  /** Whether `key` is already over the limit at `now`, without counting. */
  readonly peek: (key: string, now: number) => Decision
}

/** The most keys remembered; beyond it the oldest windows are forgotten first. */
const MAX_KEYS = 10_000

/** `limit` requests per key per `windowSeconds`. */
export const make = (limit: number, windowSeconds = 60): RateLimiter => {
  const windows = new Map<string, { start: number; count: number }>()
  const windowMillis = windowSeconds * 1000
  const current = (key: string, now: number) => {
    const window = windows.get(key)
    if (window !== undefined && now - window.start < windowMillis) return window
    windows.delete(key)
    if (windows.size >= MAX_KEYS) windows.delete(windows.keys().next().value!)
    const fresh = { start: now, count: 0 }
    windows.set(key, fresh)
    return fresh
  }
  const decision = (window: { start: number; count: number }, now: number): Decision => ({
    allowed: window.count <= limit,
    retryAfterSeconds: Math.max(1, Math.ceil((window.start + windowMillis - now) / 1000))
  })
  return {
    take: (key, now) => {
      const window = current(key, now)
      window.count++
      return decision(window, now)
    },
    peek: (key, now) => {
      const window = windows.get(key)
      if (window === undefined || now - window.start >= windowMillis) return { allowed: true, retryAfterSeconds: 0 }
      return { allowed: window.count < limit, retryAfterSeconds: decision(window, now).retryAfterSeconds }
    }
  }
}
