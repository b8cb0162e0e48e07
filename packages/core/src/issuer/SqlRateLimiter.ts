/**
 * The issuer's request budgets (SPEC §1) counted in the database, so that every instance serving
 * one database shares them (a server's `RATE_LIMIT_STORE=database`; SPEC §9). One fixed window per
 * budget and key, in the `rate_limits` table, moved on and counted by one statement per request.
 * Workers count with Cloudflare's rate-limiting bindings instead; a single server process can count
 * in memory (`RateLimiter.layerMemory`), which costs no round trip.
 *
 * An outage of the table must not become an outage of the issuer: a failed count lets the request
 * through (and is logged), as the Workers binding does.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type RateDecision, type RateLimit, RateLimiter, type RateScope } from "./RateLimiter.js"
import type { SqlDriver } from "./Sql.js"

/**
 * Counts one request in its key's window: a newer window starts the count again at 1, an older one
 * (another instance's clock, a little behind) counts in the current window. Both dialects take the
 * same upsert; `RETURNING` gives the count and window the request fell in.
 */
export const COUNT_SQL = `INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, 1)
  ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN excluded.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.count + 1 END,
    window_start = CASE WHEN excluded.window_start > rate_limits.window_start THEN excluded.window_start
      ELSE rate_limits.window_start END
  RETURNING count, window_start`

/** Forgets up to 100 windows that ended before `?` (idle keys), so the table stays as small as its traffic. */
export const PRUNE_SQL =
  "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE window_start < ? ORDER BY window_start LIMIT 100)"

/** How many counts one instance makes between two prunes. */
const PRUNE_EVERY = 256

const ALLOWED: RateDecision = { allowed: true, retryAfterSeconds: 0 }

/** The budgets: per client address, and per principal (the address's when absent); a limit of 0 is no budget. */
export interface SqlRateLimits {
  readonly address: RateLimit
  readonly principal?: RateLimit | undefined
}

/** A {@link RateLimiter} over the `rate_limits` table. */
export const make = (driver: SqlDriver, limits: SqlRateLimits): RateLimiter["Type"] => {
  const budgets: Record<RateScope, RateLimit> = {
    address: limits.address,
    principal: limits.principal ?? limits.address
  }
  const longest = Math.max(budgets.address.periodSeconds, budgets.principal.periodSeconds) * 1000
  let counted = 0
  const count = (scope: RateScope, key: string, now: number): Promise<RateDecision> => {
    const { limit, periodSeconds } = budgets[scope]
    if (limit === 0) return Promise.resolve(ALLOWED)
    const period = periodSeconds * 1000
    const start = now - (now % period)
    if (++counted % PRUNE_EVERY === 0) driver.run(PRUNE_SQL, [now - longest]).catch(() => {})
    return driver.first<{ count: number; window_start: number }>(COUNT_SQL, [`${scope} ${key}`, start]).then((row) => {
      const n = Number(row?.count ?? 1)
      const windowStart = Number(row?.window_start ?? start)
      return n <= limit
        ? ALLOWED
        : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((windowStart + period - now) / 1000)) }
    })
  }
  return {
    check: (scope, key) =>
      Effect.clockWith((clock) =>
        Effect.tryPromise(() => count(scope, key, clock.unsafeCurrentTimeMillis())).pipe(
          Effect.catchAll(() =>
            Effect.as(Effect.logWarning(`rate limiter (${scope}) unavailable; request allowed`), ALLOWED)
          )
        )
      )
  }
}

/** The limiter over the `rate_limits` table, as a layer. */
export const layer = (driver: SqlDriver, limits: SqlRateLimits): Layer.Layer<RateLimiter> =>
  Layer.succeed(RateLimiter, make(driver, limits))
