/**
 * The issuer's storage over a server's database: the `Registry` of SPEC §3–§5 is `SqlRegistry`, the
 * same rules D1 serves on Workers, over the driver the `DATABASE_URL` chose; the request budgets are
 * counted in this process (`RATE_LIMIT_STORE=memory`, the default) or in the database, shared by
 * every instance on it (`RATE_LIMIT_STORE=database`).
 */
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import type { Registry } from "@icr-apps/core/issuer/Registry"
import * as SqlRateLimiter from "@icr-apps/core/issuer/SqlRateLimiter"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ServerSqlDriver } from "../sql/ServerSql.js"

/** The registry over `driver`. */
export const registryLayer = (driver: ServerSqlDriver): Layer.Layer<Registry> => SqlRegistry.layer(driver)

/** Where request budgets are counted. */
export type RateLimitStore = "memory" | "database"

const ALLOWED = { allowed: true, retryAfterSeconds: 0 } as const

/**
 * The issuer's rate limiter off Cloudflare: SPEC §1's two budgets per minute, 0 turning one off
 * (both off: no limiter). In memory, each instance counts its own requests, so N instances behind a
 * balancer allow up to N times the budget; in the database, every instance shares one count, at one
 * statement per request.
 */
export const rateLimiterLayer = (
  store: RateLimitStore,
  driver: ServerSqlDriver,
  addressPerMinute: number,
  principalPerMinute: number
): Layer.Layer<RateLimiter.RateLimiter> | undefined => {
  if (addressPerMinute === 0 && principalPerMinute === 0) return undefined
  if (store === "database")
    return SqlRateLimiter.layer(driver, {
      address: { limit: addressPerMinute, periodSeconds: 60 },
      principal: { limit: principalPerMinute, periodSeconds: 60 }
    })
  const memory = RateLimiter.layerMemory({
    limit: Math.max(addressPerMinute, 1),
    periodSeconds: 60,
    principal: { limit: Math.max(principalPerMinute, 1), periodSeconds: 60 }
  })
  return Layer.effect(
    RateLimiter.RateLimiter,
    Effect.map(RateLimiter.RateLimiter, (inner) => ({
      check: (scope: RateLimiter.RateScope, key: string) =>
        (scope === "address" ? addressPerMinute : principalPerMinute) === 0
          ? Effect.succeed(ALLOWED)
          : inner.check(scope, key)
    }))
  ).pipe(Layer.provide(memory))
}
