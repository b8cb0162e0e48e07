/**
 * The ICR Apps API issuer as a Cloudflare Worker. Bindings become the core's layers in
 * {@link layerFromEnv}; the handler is built on the first request (no I/O at module load) and
 * reused for the life of the isolate, so imported keys stay cached.
 */
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { type IssuerOptions, makeWebHandler, type WebHandler } from "@icr-apps/core/issuer/Issuer"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import type { Registry } from "@icr-apps/core/issuer/Registry"
import type { TokenStore } from "@icr-apps/core/issuer/TokenStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as D1Registry from "./D1Registry.js"
import * as KvTokenStore from "./KvTokenStore.js"

/** The worker's bindings: the generated `Env` plus the ADMIN_TOKEN secret. */
export interface WorkerEnv extends Env {
  readonly ADMIN_TOKEN?: string | undefined
}

/** The window of the RATE_LIMITER binding, in seconds (its `period` in wrangler.jsonc). */
const RATE_PERIOD_SECONDS = 60

/**
 * The rate limiter over Cloudflare's binding. If the binding itself fails, the request is let
 * through (and logged): an outage of the limiter must not become an outage of the issuer.
 */
export const rateLimiterLayer = (binding: RateLimit): Layer.Layer<RateLimiter.RateLimiter> =>
  Layer.succeed(RateLimiter.RateLimiter, {
    check: (key) =>
      Effect.tryPromise(() => binding.limit({ key })).pipe(
        Effect.map(({ success }) => ({ allowed: success, retryAfterSeconds: RATE_PERIOD_SECONDS })),
        Effect.catchAll(() =>
          Effect.as(Effect.logWarning("rate limiter unavailable; request allowed"), {
            allowed: true,
            retryAfterSeconds: 0
          })
        )
      )
  })

/** The storage, entropy and rate-limiting layers of the issuer, from the worker's bindings. */
export const layerFromEnv = (env: WorkerEnv): Layer.Layer<TokenStore | Registry | Entropy.Entropy> =>
  Layer.mergeAll(
    KvTokenStore.layer(env.TOKENS),
    D1Registry.layer(env.DB),
    Entropy.layer,
    env.RATE_LIMITER === undefined ? Layer.empty : rateLimiterLayer(env.RATE_LIMITER)
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
