/**
 * Request rate limiting for the issuer (SPEC §1), with two budgets: one per authenticated
 * **principal** (the app on App-JWT routes and for app tokens, the installation for installation
 * tokens), and one per client **address** for everything that authenticated nobody — requests
 * without a credential, failed attempts, unauthenticated routes — with IPv6 grouped by /64.
 * An app is never limited by what others do from the same address (all of Cloudflare's Workers
 * share a few egress addresses), and an attacker cannot escape by rotating through its /64.
 *
 * Optional: an issuer without a `RateLimiter` in its context does not limit. The worker uses
 * Cloudflare's rate-limiting bindings; this module has a fixed-window limiter in memory (per
 * isolate/process), driven by `Clock`, and {@link RequestLimits}, the per-request side that the
 * common rules and the authentication middlewares share.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { RateLimited } from "../api/Problems.js"
import { addressKey } from "../api/ClientAddress.js"

/** The verdict on one request. */
export interface RateDecision {
  readonly allowed: boolean
  /** When refused: seconds until the client may try again. */
  readonly retryAfterSeconds: number
}

/** Which budget a request counts against. */
export type RateScope = "address" | "principal"

/** Counts requests per key, in one budget per scope. */
export class RateLimiter extends Context.Tag("@icr-apps/core/RateLimiter")<
  RateLimiter,
  { readonly check: (scope: RateScope, key: string) => Effect.Effect<RateDecision> }
>() {}

const ALLOWED: RateDecision = { allowed: true, retryAfterSeconds: 0 }

/** One budget: at most `limit` requests per `periodSeconds` per key; a `limit` of 0 turns the budget off. */
export interface RateLimit {
  readonly limit: number
  readonly periodSeconds: number
}

/**
 * A fixed-window limiter in memory. `limit`/`periodSeconds` is the budget of each client address;
 * `principal`, the budget of each app or installation (the same as the address's when absent).
 */
export const layerMemory = (
  options: RateLimit & { readonly principal?: RateLimit | undefined }
): Layer.Layer<RateLimiter> =>
  Layer.sync(RateLimiter, () => {
    const windows = new Map<string, { start: number; count: number }>()
    const budgets: Record<RateScope, RateLimit> = { address: options, principal: options.principal ?? options }
    let swept = Number.NEGATIVE_INFINITY
    return {
      check: (scope, key) =>
        Effect.clockWith((clock) => {
          const { limit, periodSeconds } = budgets[scope]
          // A budget of 0 is no budget (SPEC §9: 0 turns it off).
          if (limit === 0) return Effect.succeed(ALLOWED)
          const period = periodSeconds * 1000
          const now = clock.unsafeCurrentTimeMillis()
          const start = now - (now % period)
          const id = `${scope} ${key}`
          let w = windows.get(id)
          if (w === undefined || w.start !== start) {
            // Forget every finished window once in a while, so idle clients do not accumulate: at most
            // once a second, since a client with many addresses (an IPv6 /48 is 65,536 /64s) keeps
            // more than 10,000 windows open, and a sweep per new window would cost all of them each time.
            if (windows.size > 10_000 && now - swept >= 1000) {
              swept = now
              for (const [k, v] of windows) if (v.start + period <= now) windows.delete(k)
            }
            w = { start, count: 0 }
            windows.set(id, w)
          }
          w.count++
          return Effect.succeed(
            w.count <= limit
              ? { allowed: true, retryAfterSeconds: 0 }
              : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((start + period - now) / 1000)) }
          )
        })
    }
  })

export { addressKey }

/** The principal keys (SPEC §1): an app, or an installation. */
export const principalKey = {
  app: (appId: string): string => `app:${appId}`,
  installation: (installationId: string): string => `installation:${installationId.toLowerCase()}`
}

/**
 * The rate limiting of the request being served, made for each request by the common rules.
 * The authentication middlewares tell it who authenticated; whatever authenticated nobody is
 * counted against the client's address once the request is answered.
 */
export interface RequestLimitsService {
  /** The client address the request counts against when it authenticates nobody (none: not limited by address). */
  readonly address: string | undefined
  /** Whether anything is counted at all (a limiter is configured): without one, every count is a no-op. */
  readonly counting: boolean
  /** Counts the request against an authenticated principal; fails with `RateLimited` past its budget. */
  readonly principal: (key: string) => Effect.Effect<void, RateLimited>
  /** The request counts against no budget (the operator, liveness checks). */
  readonly exempt: Effect.Effect<void>
  /**
   * What counts the request against its address once it is answered: `undefined` when there is
   * nothing to count (a principal or an exemption settled it already, or there is no limiter or no address).
   */
  readonly settle: () => Effect.Effect<void, RateLimited> | undefined
}

/** The current request's {@link RequestLimitsService}; outside a request, one that limits nothing. */
export class RequestLimits extends Context.Reference<RequestLimits>()("@icr-apps/core/RateLimiter/RequestLimits", {
  defaultValue: (): RequestLimitsService => ({
    address: undefined,
    counting: false,
    principal: () => Effect.void,
    exempt: Effect.void,
    settle: () => undefined
  })
}) {}

/**
 * The limits of one request from `address` (its `cf-connecting-ip`; a request without one —
 * local development, tests — is never limited by address, only by principal).
 */
export const makeRequestLimits = (
  limiter: RateLimiter["Type"] | undefined,
  address: string | undefined
): RequestLimitsService => {
  let settled = false
  const enforce = (scope: RateScope, key: string, detail: string) =>
    limiter === undefined
      ? Effect.void
      : Effect.flatMap(limiter.check(scope, key), (decision) =>
          decision.allowed
            ? Effect.void
            : Effect.fail(new RateLimited({ detail, retryAfter: decision.retryAfterSeconds }))
        )
  return {
    address,
    counting: limiter !== undefined,
    principal: (key) =>
      Effect.suspend(() => {
        settled = true
        return enforce("principal", key, "Too many requests for this app or installation; retry later")
      }),
    exempt: Effect.sync(() => {
      settled = true
    }),
    settle: () => {
      if (settled || limiter === undefined || address === undefined) return undefined
      settled = true
      return enforce("address", addressKey(address), "Too many requests from this client; retry later")
    }
  }
}
