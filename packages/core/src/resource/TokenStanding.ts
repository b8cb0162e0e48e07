/**
 * A resource server's view of an ICR access token (SPEC §10): what the issuer says it is, asked
 * through `GET /app/installations/token` over a URL or a Workers service binding, and remembered
 * for at most `cacheSeconds` (default 0: every request asks, so a revocation is seen at once).
 *
 * Web-standard only (`fetch`, `Request`, `Response`), so it runs on Workers, Deno, Bun and Node.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { API_VERSION } from "../api/Primitives.js"
import { InvalidToken, RateLimited, Unavailable } from "../api/Problems.js"
import { accessTokenPattern, TokenDescription } from "../api/Tokens.js"

/** Anything with a `fetch` method taking a `Request`: a Workers service binding, or a test double. */
export interface FetchLike {
  readonly fetch: (request: Request) => Promise<Response>
}

/** Where the issuer is: its base URL (fetched with the global `fetch`), or a binding to it. */
export type IssuerTarget = string | URL | FetchLike

/** Options of {@link TokenStanding}. */
export interface TokenStandingOptions {
  /** The issuer: a base URL, or a service binding (`env.ISSUER`). */
  readonly issuer: IssuerTarget
  /**
   * How long a token's standing may be reused, in seconds (default 0: ask the issuer on every
   * request). Never beyond the token's own `expiresAt`. A revocation takes up to this long to be seen.
   */
  readonly cacheSeconds?: number | undefined
  /** How long one look-up may take (default 5 s); past it, the request is answered 503. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Sent as `x-icr-api-version` (default `2023-06-16`). */
  readonly apiVersion?: string | undefined
  /** How many standings to remember at most (default 10,000; the oldest go first). */
  readonly capacity?: number | undefined
}

/** Why a token's standing is not known: the token is not good, or the issuer could not say. */
export type StandingError = InvalidToken | RateLimited | Unavailable

/** The issuer's word on a token. */
export class TokenStanding extends Context.Tag("@icr-apps/core/TokenStanding")<
  TokenStanding,
  {
    /** What the token is (kind, app, installation, organization, permissions, expiry), or why not. */
    readonly resolve: (token: Redacted.Redacted<string>) => Effect.Effect<TokenDescription, StandingError>
  }
>() {}

const decodeDescription = Schema.decodeUnknown(TokenDescription)
const decodeRetryAfter = (value: string | null): number | undefined => {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined
  return Number(value.trim())
}

const invalid = (detail: string) => new InvalidToken({ detail })

/** Builds the service: one cache per instance, read and written on Effect's `Clock`. */
export const make = (options: TokenStandingOptions) =>
  Effect.sync(() => {
    const { issuer } = options
    const cacheMillis = Math.max(0, (options.cacheSeconds ?? 0) * 1000)
    const capacity = options.capacity ?? 10_000
    const timeout = options.timeout ?? "5 seconds"
    const apiVersion = options.apiVersion ?? API_VERSION
    const send: (request: Request) => Promise<Response> =
      typeof issuer === "string" || issuer instanceof URL
        ? (request) => globalThis.fetch(request)
        : (request) => issuer.fetch(request)
    const base =
      typeof issuer === "string" || issuer instanceof URL ? String(issuer).replace(/\/+$/, "") : "https://issuer"
    const url = `${base}/app/installations/token`
    // Keyed by the token's SHA-256, never the token itself (a heap dump shows no credential).
    const cache = new Map<string, { readonly description: TokenDescription; readonly until: number }>()
    const keyOf = (token: string) =>
      Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))).pipe(
        Effect.map((digest) => Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""))
      )

    const ask = (token: string) =>
      Effect.gen(function* () {
        const response = yield* Effect.tryPromise({
          try: (signal) =>
            send(
              new Request(url, {
                method: "GET",
                headers: {
                  authorization: `Bearer ${token}`,
                  "x-icr-api-version": apiVersion,
                  accept: "application/json"
                },
                // Never followed: a redirect's target is not the issuer, and its answer would be believed
                // (a 3xx, or the opaque redirect a Worker sees, is "unavailable" below).
                redirect: "manual",
                signal
              })
            ),
          catch: () => new Unavailable({ detail: "the token issuer could not be reached", retryAfter: 1 })
        }).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new Unavailable({ detail: "the token issuer did not answer in time", retryAfter: 1 })
          })
        )
        const body = yield* Effect.promise(() => response.text().catch(() => ""))
        if (response.status === 401) return yield* Effect.fail(invalid("the access token is not valid"))
        if (response.status === 429) {
          return yield* Effect.fail(
            new RateLimited({
              detail: "too many requests for this token's principal at the issuer",
              ...retryAfterOf(response)
            })
          )
        }
        if (response.status !== 200) {
          return yield* Effect.fail(
            new Unavailable({ detail: `the token issuer answered ${response.status}`, retryAfter: 1 })
          )
        }
        const json = yield* Effect.try({ try: () => JSON.parse(body) as unknown, catch: () => undefined })
        return yield* decodeDescription(json)
      }).pipe(
        Effect.catchIf(
          (e): e is Exclude<typeof e, StandingError> =>
            !(e instanceof InvalidToken || e instanceof RateLimited || e instanceof Unavailable),
          () =>
            Effect.fail(
              new Unavailable({ detail: "the token issuer answered an unreadable description", retryAfter: 1 })
            )
        ),
        Effect.withSpan("icr.resource.standing", { captureStackTrace: false, attributes: { "icr.cache": "miss" } })
      )

    const resolve = (secret: Redacted.Redacted<string>): Effect.Effect<TokenDescription, StandingError> =>
      Effect.gen(function* () {
        const token = Redacted.value(secret)
        // Not an access token at all (a JWT, a typo): no need to ask anyone.
        if (!accessTokenPattern.test(token))
          return yield* Effect.fail(invalid("the credential is not an ICR access token"))
        const now = yield* Clock.currentTimeMillis
        // With no cache (the default), no digest either.
        const key = cacheMillis > 0 ? yield* keyOf(token) : undefined
        const hit = key === undefined ? undefined : cache.get(key)
        if (hit !== undefined) {
          if (hit.until > now) return hit.description
          cache.delete(key!)
        }
        const description = yield* ask(token)
        const expiresAt = DateTime.toEpochMillis(description.expiresAt)
        // The issuer said yes, but the token has expired by the resource's clock: not valid here either.
        if (expiresAt <= now) return yield* Effect.fail(invalid("the access token has expired"))
        if (key !== undefined) {
          cache.set(key, { description, until: Math.min(now + cacheMillis, expiresAt) })
          if (cache.size > capacity) cache.delete(cache.keys().next().value!)
        }
        return description
      })

    return TokenStanding.of({ resolve })
  })

const retryAfterOf = (response: Response): { retryAfter?: number } => {
  const seconds = decodeRetryAfter(response.headers.get("retry-after"))
  return seconds === undefined ? {} : { retryAfter: seconds }
}

/** The service as a layer. */
export const layer = (options: TokenStandingOptions): Layer.Layer<TokenStanding> =>
  Layer.effect(TokenStanding, make(options))
