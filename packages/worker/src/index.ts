/**
 * The ICR Apps API issuer as a Cloudflare Worker. Bindings become the core's layers in
 * {@link layerFromEnv}; the handler is built on the first request (no I/O at module load) and
 * reused for the life of the isolate, so imported keys stay cached.
 */
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { type IssuerOptions, makeWebHandler, type WebHandler } from "@icr-apps/core/issuer/Issuer"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import type { Registry } from "@icr-apps/core/issuer/Registry"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as D1 from "./sql/d1.js"

/** The worker's bindings: the generated `Env` plus the ADMIN_TOKEN secret. */
export interface WorkerEnv extends Env {
  readonly ADMIN_TOKEN?: string | undefined
}

/** The bindings that count requests (SPEC §1), one per budget; see `ratelimits` in wrangler.jsonc. */
export interface RateLimitBindings {
  /** Requests that authenticated nobody, per client address (IPv4, or IPv6 /64). */
  readonly address?: RateLimit | undefined
  /** Authenticated requests, per app or installation. */
  readonly principal?: RateLimit | undefined
  /** The bindings' `period` (10 or 60 seconds): what a 429 tells the client to wait. */
  readonly periodSeconds: number
}

/**
 * The rate limiter over Cloudflare's bindings. A budget without a binding is not limited. If a
 * binding itself fails, the request is let through (and logged): an outage of the limiter must
 * not become an outage of the issuer.
 */
export const rateLimiterLayer = (bindings: RateLimitBindings): Layer.Layer<RateLimiter.RateLimiter> =>
  Layer.succeed(RateLimiter.RateLimiter, {
    check: (scope, key) => {
      const binding = bindings[scope]
      if (binding === undefined) return Effect.succeed({ allowed: true, retryAfterSeconds: 0 })
      return Effect.tryPromise(() => binding.limit({ key })).pipe(
        Effect.map(({ success }) => ({ allowed: success, retryAfterSeconds: bindings.periodSeconds })),
        Effect.catchAll(() =>
          Effect.as(Effect.logWarning(`rate limiter (${scope}) unavailable; request allowed`), {
            allowed: true,
            retryAfterSeconds: 0
          })
        )
      )
    }
  })

/**
 * The storage, entropy, audit and rate-limiting layers of the issuer, from the worker's bindings.
 * Audit events are JSON lines on the console (`"audit":true`), which Workers Logs and Logpush keep.
 */
export const layerFromEnv = (env: WorkerEnv): Layer.Layer<Registry | Entropy.Entropy | AuditLog.AuditLog> =>
  Layer.mergeAll(
    SqlRegistry.layer(D1.make(env.DB)),
    Entropy.layer,
    AuditLog.layerConsole,
    env.RATE_LIMITER === undefined && env.PRINCIPAL_RATE_LIMITER === undefined
      ? Layer.empty
      : rateLimiterLayer({
          address: env.RATE_LIMITER,
          principal: env.PRINCIPAL_RATE_LIMITER,
          periodSeconds: env.RATE_LIMIT_PERIOD_SECONDS === "10" ? 10 : 60
        })
  )

const seconds = (value: string | undefined, fallback: number): number => {
  const n = Number(value)
  return Number.isInteger(n) && n >= 60 ? n : fallback
}

/** The issuer's options, from the worker's vars and secrets. */
export const optionsFromEnv = (env: WorkerEnv): IssuerOptions => ({
  adminToken: env.ADMIN_TOKEN ? Redacted.make(env.ADMIN_TOKEN) : undefined,
  lifetimes: {
    appTokenSeconds: seconds(env.APP_TOKEN_TTL_SECONDS, 3600),
    installationTokenSeconds: seconds(env.INSTALLATION_TOKEN_TTL_SECONDS, 7200)
  },
  publicBaseUrl: env.PUBLIC_BASE_URL || undefined
})

/** One handler per bindings object: in production that is one per isolate. */
const handlers = new WeakMap<WorkerEnv, WebHandler>()

export default {
  fetch(request, env) {
    let handler = handlers.get(env)
    if (handler === undefined) {
      handler = makeWebHandler(layerFromEnv(env), optionsFromEnv(env))
      handlers.set(env, handler)
    }
    return handler.handler(request)
  }
} satisfies ExportedHandler<WorkerEnv>
