/**
 * Verifies OIDC identity tokens from the configured issuers only (SPEC §8), with `jose`.
 *
 * The verification key comes from the JWKS that the *configured* issuer's discovery document
 * names — never from anything in the token (`jku`, `x5u`, `jwk` are ignored): the token's `iss`
 * only selects which configured issuer to ask. Discovery and keys are cached per isolate; an
 * unknown `kid` refetches the JWKS (a rotation is picked up at once), but such out-of-turn
 * fetches happen at most once per cool-down, so a stream of forged `kid`s cannot hammer the issuer. Checked: signature (RS256 or ES256 only), `iss`, `aud` (the broker's
 * audience), `exp`, `nbf` and `iat`, with 60 s of allowed skew; `sub`, `iat` and `exp` required.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  jwtVerify
} from "jose"
import type { Caller } from "./Policies.js"
import { InvalidGrant, Unavailable } from "./Problems.js"

/** The algorithms accepted (SPEC §8). */
export const ALGORITHMS = ["RS256", "ES256"] as const
/** Seconds of allowed clock skew on `exp`, `nbf`, `iat`. */
export const CLOCK_SKEW_SECONDS = 60
/** The longest subject token read (the issuer's limit on an Authorization value). */
export const MAX_TOKEN_LENGTH = 8 * 1024

/** How the verifier is configured. */
export interface OidcOptions {
  /** The issuers trusted, exactly as their tokens' `iss`. */
  readonly issuers: ReadonlyArray<string>
  /** The `aud` a token must carry. */
  readonly audience: string
  /** How discovery and JWKS documents are fetched (default: the global `fetch`). */
  readonly fetch?: typeof globalThis.fetch | undefined
  /** How long a JWKS is used before it is fetched again (default 10 minutes). */
  readonly jwksMaxAgeMillis?: number | undefined
  /**
   * How long a JWKS may still be used while fetching a new one fails — the provider unreachable, or
   * answering with something that is not a key set (default twice `jwksMaxAgeMillis`). Beyond it,
   * tokens are answered 503 `unavailable` rather than checked against keys the provider may have
   * retired since.
   */
  readonly jwksMaxStaleMillis?: number | undefined
  /** How long a discovery document is used (default 1 hour). */
  readonly discoveryMaxAgeMillis?: number | undefined
  /** The least time between two out-of-turn fetches of one issuer's JWKS for an unknown `kid` (default 30 s). */
  readonly refetchCooldownMillis?: number | undefined
  /** Per fetch (default 5 s). */
  readonly timeoutMillis?: number | undefined
  /** The oldest token accepted, in seconds since its `iat` (default 3600). */
  readonly maxTokenAgeSeconds?: number | undefined
  /**
   * Key sets given by configuration (`BROKER_OIDC_JWKS`), by issuer: for these issuers nothing is
   * fetched — for identity providers whose discovery is not reachable (a private cluster's).
   */
  readonly staticJwks?: Readonly<Record<string, JSONWebKeySet>> | undefined
}

/** An issuer URL is usable when it is `https:`, or `http:` on a loopback host (local development). */
export const isAllowedUrl = (value: string): boolean => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return false
  }
  if (url.username !== "" || url.password !== "" || url.hash !== "") return false
  if (url.protocol === "https:") return true
  const host = url.hostname.replace(/^\[|\]$/g, "")
  return url.protocol === "http:" && (host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host))
}

const MAX_DOCUMENT_BYTES = 64 * 1024

/** What the verifier fails with. */
export type OidcFailure = InvalidGrant | Unavailable

interface IssuerState {
  discovery?: { readonly jwksUri: string; readonly at: number } | undefined
  /**
   * The JWKS as jose's key set, built once per fetch: it imports each JWK on first use and keeps the
   * `CryptoKey`, so the verifications between two fetches import nothing (a key set built per
   * verification cloned the JWKS and imported the key every time).
   */
  keys?: { readonly verifier: ReturnType<typeof createLocalJWKSet>; readonly at: number } | undefined
  /** When an unknown `kid` last made us fetch the JWKS out of turn. */
  forcedAt?: number | undefined
  /** When a refresh last failed: the next waits {@link RETRY_AFTER_SECONDS}, so an outage is not hammered. */
  failedAt?: number | undefined
  /** One fetch at a time per issuer; concurrent verifications wait for it. */
  pending?: Promise<void> | undefined
}

const grant = (detail: string, reason: string) => new InvalidGrant({ detail, reason })

/** What a 503 tells callers to wait when the provider's keys cannot be had; failed fetches wait as long. */
const RETRY_AFTER_SECONDS = 5

/** A verifier of identity tokens. */
export interface OidcVerifier {
  /** The caller a token proves, or why it proves nothing. */
  readonly verify: (token: string) => Effect.Effect<Extract<Caller, { kind: "oidc" }>, OidcFailure>
}

/** Makes a verifier; nothing is fetched until the first token of each issuer. */
export const make = (options: OidcOptions): OidcVerifier => {
  const fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
  const jwksMaxAge = options.jwksMaxAgeMillis ?? 10 * 60_000
  const jwksMaxStale = options.jwksMaxStaleMillis ?? 2 * jwksMaxAge
  const discoveryMaxAge = options.discoveryMaxAgeMillis ?? 60 * 60_000
  const cooldown = options.refetchCooldownMillis ?? 30_000
  const timeout = options.timeoutMillis ?? 5_000
  const maxAge = options.maxTokenAgeSeconds ?? 3600
  const states = new Map<string, IssuerState>(options.issuers.map((issuer) => [issuer, {}]))
  // A configured key set never expires and is never refetched.
  const fixed = new Map(
    Object.entries(options.staticJwks ?? {}).map(([issuer, set]) => [issuer, createLocalJWKSet(set)] as const)
  )

  /** A small JSON document over https (or loopback http), without following redirects. */
  const getJson = async (url: string): Promise<Record<string, unknown>> => {
    if (!isAllowedUrl(url)) throw new Error("refused URL")
    const response = await fetch(url, {
      headers: { accept: "application/json" },
      redirect: "manual",
      signal: AbortSignal.timeout(timeout)
    })
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
    const text = await response.text()
    if (text.length > MAX_DOCUMENT_BYTES) throw new Error("document too large")
    const value = JSON.parse(text) as unknown
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object")
    return value as Record<string, unknown>
  }

  /** Refreshes an issuer's discovery (when stale) and its JWKS; one refresh at a time per issuer. */
  const refresh = (issuer: string, state: IssuerState, now: number): Promise<void> => {
    state.pending ??= (async () => {
      if (state.discovery === undefined || now - state.discovery.at >= discoveryMaxAge) {
        const document = await getJson(`${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`)
        // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        if (document.issuer !== issuer) throw new Error("discovery names another issuer")
        if (typeof document.jwks_uri !== "string" || !isAllowedUrl(document.jwks_uri))
          throw new Error("discovery has no usable jwks_uri")
        state.discovery = { jwksUri: document.jwks_uri, at: now }
      }
      const set = await getJson(state.discovery.jwksUri)
      if (!Array.isArray(set.keys)) throw new Error("the JWKS has no keys")
      // A malformed set throws here, so it counts as a failed fetch (the last good set stays in use).
      state.keys = { verifier: createLocalJWKSet(set as unknown as JSONWebKeySet), at: now }
    })().finally(() => {
      state.pending = undefined
    })
    return state.pending
  }

  /**
   * The issuer's keys: cached, refreshed when old. While refreshing fails, the last good set is used
   * up to `jwksMaxStale` after it was fetched, and a failed refresh is not retried for the
   * {@link RETRY_AFTER_SECONDS} that a 503 tells callers to wait.
   */
  const keysOf = async (issuer: string, state: IssuerState, now: number) => {
    if (state.keys === undefined || now - state.keys.at >= jwksMaxAge) {
      if (state.failedAt === undefined || now - state.failedAt >= RETRY_AFTER_SECONDS * 1000) {
        try {
          await refresh(issuer, state, now)
          state.failedAt = undefined
        } catch {
          state.failedAt = now
        }
      }
      if (state.keys === undefined || now - state.keys.at >= jwksMaxStale) throw providerDown()
    }
    return state.keys.verifier
  }

  const check = (token: string, issuer: string, keys: ReturnType<typeof createLocalJWKSet>, now: number) =>
    jwtVerify(token, keys, {
      issuer,
      audience: options.audience,
      algorithms: [...ALGORITHMS],
      clockTolerance: CLOCK_SKEW_SECONDS,
      currentDate: new Date(now),
      requiredClaims: ["sub", "iat", "exp"]
    })

  const explain = (e: unknown): InvalidGrant => {
    if (e instanceof errors.JWTExpired) return grant("The subject token has expired", "expired")
    if (e instanceof errors.JWTClaimValidationFailed) {
      if (e.claim === "aud") return grant("The subject token is for another audience", "audience")
      if (e.claim === "nbf") return grant("The subject token is not valid yet (nbf)", "not_yet_valid")
      if (e.reason === "missing") return grant(`The subject token has no "${e.claim}" claim`, "missing_claim")
      return grant(`The subject token's "${e.claim}" claim is not acceptable`, "claim")
    }
    if (e instanceof errors.JOSEAlgNotAllowed)
      return grant("The subject token must be signed with RS256 or ES256", "algorithm")
    if (e instanceof errors.JWKSNoMatchingKey)
      return grant("The subject token is signed with a key the issuer does not list", "unknown_kid")
    if (e instanceof errors.JWSSignatureVerificationFailed)
      return grant("The subject token's signature does not verify", "signature")
    return grant("The subject token is malformed", "malformed")
  }

  /** The identity provider could not be asked about a key: not the caller's fault, so 503, never 400. */
  const providerDown = () =>
    new Unavailable({
      detail: "The identity provider's keys could not be fetched; retry later",
      retryAfter: RETRY_AFTER_SECONDS
    })
  /** Whether the last attempt to fetch the provider's keys failed (and none succeeded since). */
  const lastFetchFailed = (state: IssuerState) =>
    state.failedAt !== undefined && (state.keys === undefined || state.failedAt >= state.keys.at)

  /**
   * The signature and the claims, against the issuer's (cached) keys, as one async function: a warm
   * verification suspends the fiber once, for jose (the key lookup used to add an async step of its
   * own even when the keys were cached).
   */
  const verified = async (
    token: string,
    issuer: string,
    state: IssuerState,
    now: number
  ): Promise<Either.Either<Extract<Caller, { kind: "oidc" }>, OidcFailure>> => {
    const configured = fixed.get(issuer)
    // Fresh keys are taken as they are: awaiting keysOf would cost a turn of the event loop.
    const fresh = state.keys !== undefined && now - state.keys.at < jwksMaxAge
    let keys: ReturnType<typeof createLocalJWKSet>
    try {
      keys = configured ?? (fresh ? state.keys!.verifier : await keysOf(issuer, state, now))
    } catch (e) {
      if (e instanceof Unavailable) return Either.left(e)
      throw e
    }
    let payload: JWTPayload
    try {
      payload = (await check(token, issuer, keys, now)).payload
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey) || configured !== undefined) return Either.left(explain(e))
      // A key we have not seen: the issuer may have rotated. Ask again, at most once per cool-down.
      // While the provider cannot be reached, an unknown key may be its new one: 503, not invalid_grant.
      if (state.forcedAt !== undefined && now - state.forcedAt < cooldown)
        return Either.left(lastFetchFailed(state) ? providerDown() : explain(e))
      state.forcedAt = now
      try {
        await refresh(issuer, state, now)
        state.failedAt = undefined
      } catch {
        state.failedAt = now
        return Either.left(providerDown())
      }
      try {
        payload = (await check(token, issuer, state.keys!.verifier, now)).payload
      } catch (again) {
        return Either.left(explain(again))
      }
    }
    if (typeof payload.iat === "number" && payload.iat > now / 1000 + CLOCK_SKEW_SECONDS)
      return Either.left(grant("The subject token is issued in the future (iat)", "issued_in_future"))
    // However long its `exp`: a leaked token is not a credential for ten years.
    if (typeof payload.iat === "number" && now / 1000 - payload.iat > maxAge)
      return Either.left(grant(`The subject token is older than ${maxAge} s (iat)`, "too_old"))
    if (typeof payload.sub !== "string" || payload.sub === "")
      return Either.left(grant("The subject token has no subject", "missing_claim"))
    return Either.right({ kind: "oidc" as const, issuer, sub: payload.sub, claims: payload as Record<string, unknown> })
  }

  return {
    verify: (token) =>
      Effect.suspend(() => {
        if (token.length > MAX_TOKEN_LENGTH) return grant("The subject token is too long", "malformed")
        // Read, not trusted: the header's alg is checked again by jwtVerify, `iss` only picks a configured issuer.
        let header: ReturnType<typeof decodeProtectedHeader>
        let unverified: JWTPayload
        try {
          header = decodeProtectedHeader(token)
          unverified = decodeJwt(token)
        } catch {
          return grant("The subject token is not a JWT", "malformed")
        }
        if (!ALGORITHMS.includes(header.alg as (typeof ALGORITHMS)[number]))
          return grant("The subject token must be signed with RS256 or ES256", "algorithm")
        const issuer = typeof unverified.iss === "string" ? unverified.iss : undefined
        const state = issuer === undefined ? undefined : states.get(issuer)
        if (issuer === undefined || state === undefined)
          return grant("The subject token's issuer is not one this broker trusts", "issuer")
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.flatten(Effect.promise(() => verified(token, issuer, state, now)))
        )
      })
  }
}
