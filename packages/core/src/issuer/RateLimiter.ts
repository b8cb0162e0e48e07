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

/** One budget: at most `limit` requests per `periodSeconds` per key. */
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
    return {
      check: (scope, key) =>
        Effect.clockWith((clock) => {
          const { limit, periodSeconds } = budgets[scope]
          const period = periodSeconds * 1000
          const now = clock.unsafeCurrentTimeMillis()
          const start = now - (now % period)
          const id = `${scope} ${key}`
          let w = windows.get(id)
          if (w === undefined || w.start !== start) {
            // Forget every finished window once in a while, so idle clients do not accumulate.
            if (windows.size > 10_000) for (const [k, v] of windows) if (v.start + period <= now) windows.delete(k)
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

/** The principal keys (SPEC §1): an app, or an installation. */
export const principalKey = {
  app: (appId: string): string => `app:${appId}`,
  installation: (installationId: string): string => `installation:${installationId.toLowerCase()}`
}

const ipv4 = (text: string): Array<number> | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4 || !parts.every((p) => /^[0-9]{1,3}$/.test(p))) return undefined
  const octets = parts.map(Number)
  return octets.every((o) => o <= 255) ? octets : undefined
}

/** The eight 16-bit groups of an IPv6 address (`::`, an IPv4 tail, zone and brackets allowed). */
const ipv6 = (text: string): Array<number> | undefined => {
  const bare = text.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "")
  const halves = bare.split("::")
  if (halves.length > 2) return undefined
  const groupsOf = (half: string): Array<number> | undefined => {
    if (half === "") return []
    const out: Array<number> = []
    const pieces = half.split(":")
    for (const [i, piece] of pieces.entries()) {
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = ipv4(piece)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else if (/^[0-9a-f]{1,4}$/i.test(piece)) out.push(Number.parseInt(piece, 16))
      else return undefined
    }
    return out
  }
  const head = groupsOf(halves[0]!)
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  if (halves.length === 1) return head.length === 8 ? head : undefined
  const missing = 8 - head.length - tail.length
  return missing >= 1 ? [...head, ...new Array<number>(missing).fill(0), ...tail] : undefined
}

/**
 * The key a client address is limited under: an IPv4 address as itself (an IPv4-mapped IPv6
 * address too), an IPv6 address by its /64 — the block one subscriber is usually given, so
 * rotating through it does not escape the limit. Anything unparseable is its own key.
 */
export const addressKey = (address: string): string => {
  const text = address.trim().toLowerCase()
  const v4 = ipv4(text)
  if (v4 !== undefined) return `ip4:${v4.join(".")}`
  const v6 = ipv6(text)
  if (v6 === undefined) return `addr:${text.slice(0, 64)}`
  if (v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff) {
    return `ip4:${[v6[6]! >> 8, v6[6]! & 255, v6[7]! >> 8, v6[7]! & 255].join(".")}`
  }
  return `ip6:${v6
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`
}

/**
 * The rate limiting of the request being served, made for each request by the common rules.
 * The authentication middlewares tell it who authenticated; whatever authenticated nobody is
 * counted against the client's address once the request is answered.
 */
export interface RequestLimitsService {
  /** Counts the request against an authenticated principal; fails with `RateLimited` past its budget. */
  readonly principal: (key: string) => Effect.Effect<void, RateLimited>
  /** The request counts against no budget (the operator, liveness checks). */
  readonly exempt: Effect.Effect<void>
  /** Counts the request against its address unless a principal or an exemption settled it already. */
  readonly settle: Effect.Effect<void, RateLimited>
}

/** The current request's {@link RequestLimitsService}; outside a request, one that limits nothing. */
export class RequestLimits extends Context.Reference<RequestLimits>()("@icr-apps/core/RateLimiter/RequestLimits", {
  defaultValue: (): RequestLimitsService => ({ principal: () => Effect.void, exempt: Effect.void, settle: Effect.void })
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
    principal: (key) =>
      Effect.suspend(() => {
        settled = true
        return enforce("principal", key, "Too many requests for this app or installation; retry later")
      }),
    exempt: Effect.sync(() => {
      settled = true
    }),
    settle: Effect.suspend(() => {
      if (settled || address === undefined) return Effect.void
      settled = true
      return enforce("address", addressKey(address), "Too many requests from this client; retry later")
    })
  }
}
