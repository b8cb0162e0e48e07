/**
 * The ICR Apps API issuer as a Cloudflare Worker. Bindings become the core's layers in
 * {@link layerFromEnv}; the handler is built on the first request (no I/O at module load) and
 * reused for the life of the isolate, so imported keys stay cached.
 */
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { makeWebHandler, type WebHandler, type WebHandlerOptions } from "@icr-apps/core/issuer/Issuer"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import type { Registry } from "@icr-apps/core/issuer/Registry"
import * as ShardedRegistry from "@icr-apps/core/issuer/ShardedRegistry"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as D1 from "./sql/d1.js"

/** The worker's bindings: the generated `Env` plus the ADMIN_TOKEN secret. */
export interface WorkerEnv extends Env {
  readonly ADMIN_TOKEN?: string | undefined
  /** The D1 bindings the registry is split over, home first (SCALE.md); `DB` alone when unset. */
  readonly SHARD_BINDINGS?: string | undefined
  /** The shards new installations go to (comma-separated numbers); every shard when unset. */
  readonly OPEN_SHARDS?: string | undefined
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
 * The D1 databases the registry is split over (SCALE.md), home first: the bindings `SHARD_BINDINGS`
 * names (comma-separated, in shard order; a shard's number is its place in this list, for good), or
 * `DB` alone. Throws, naming it, when a name is no D1 binding.
 */
export const shardsFromEnv = (env: WorkerEnv): ReadonlyArray<D1Database> => {
  const text = (env.SHARD_BINDINGS ?? "").trim()
  if (text === "") return [env.DB]
  const names = text.split(",").map((name) => name.trim())
  if (names.some((name) => name === "") || new Set(names).size !== names.length) {
    throw new Error(`SHARD_BINDINGS must name each D1 binding once, comma-separated; it is ${JSON.stringify(text)}`)
  }
  return names.map((name) => {
    const binding = (env as unknown as Record<string, unknown>)[name]
    if (typeof binding !== "object" || binding === null || typeof (binding as D1Database).batch !== "function") {
      throw new Error(`SHARD_BINDINGS names ${JSON.stringify(name)}, which is no D1 binding of this worker`)
    }
    return binding as D1Database
  })
}

/** The shards new installations go to (`OPEN_SHARDS`, comma-separated shard numbers); every shard when unset. */
export const openShardsFromEnv = (env: WorkerEnv, count: number): ReadonlyArray<number> | undefined => {
  const text = (env.OPEN_SHARDS ?? "").trim()
  if (text === "") return undefined
  const items = text.split(",").map((n) => n.trim())
  const open = items.map(Number)
  if (items.some((n) => !/^[0-9]+$/.test(n)) || open.some((n) => n >= count) || new Set(open).size !== open.length) {
    throw new Error(`OPEN_SHARDS must list shard numbers from 0 to ${count - 1}; it is ${JSON.stringify(text)}`)
  }
  return open
}

/** The storage and entropy layers of the issuer, from the worker's bindings: one D1 database, or several shards. */
export const layerFromEnv = (env: WorkerEnv): Layer.Layer<Registry | Entropy.Entropy> => {
  const shards = shardsFromEnv(env)
  const registry =
    shards.length === 1
      ? SqlRegistry.layer(D1.make(shards[0]!))
      : ShardedRegistry.layer(shards.map(D1.make), { open: openShardsFromEnv(env, shards.length) })
  return Layer.mergeAll(registry, Entropy.layer)
}

/** The rate limiter of the worker's `ratelimits` bindings; none when it has neither. */
export const rateLimiterFromEnv = (env: WorkerEnv): Layer.Layer<RateLimiter.RateLimiter> | undefined =>
  env.RATE_LIMITER === undefined && env.PRINCIPAL_RATE_LIMITER === undefined
    ? undefined
    : rateLimiterLayer({
        address: env.RATE_LIMITER,
        principal: env.PRINCIPAL_RATE_LIMITER,
        periodSeconds: env.RATE_LIMIT_PERIOD_SECONDS === "10" ? 10 : 60
      })

const seconds = (value: string | undefined, fallback: number): number => {
  const n = Number(value)
  return Number.isInteger(n) && n >= 60 ? n : fallback
}

/**
 * The issuer's options, from the worker's vars, secrets and bindings. Audit events are JSON lines on
 * the console (`"audit":true`), which Workers Logs and Logpush keep.
 */
export const optionsFromEnv = (env: WorkerEnv): WebHandlerOptions => ({
  auditLog: AuditLog.layerConsole,
  rateLimiter: rateLimiterFromEnv(env),
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
