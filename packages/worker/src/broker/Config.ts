/**
 * The broker's configuration (SPEC §8), read from its vars and secrets. Every problem is
 * collected, not just the first, so `/healthz` can say everything that is wrong at once; a
 * message names the variable (and, for policies, the path) but never quotes a secret.
 */
import { DEFAULT_BASE_URL } from "@icr-apps/core/sdk/Client"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import type { JSONWebKeySet } from "jose"
import { isAllowedUrl } from "./Oidc.js"
import { decodePolicies, type Policy } from "./Policies.js"

/** The vars and secrets the broker reads. */
export interface BrokerVars {
  readonly BROKER_APP_ID?: string | undefined
  readonly BROKER_PRIVATE_KEY?: string | undefined
  readonly BROKER_ISSUER_URL?: string | undefined
  readonly BROKER_AUDIENCE?: string | undefined
  readonly BROKER_OIDC_ISSUERS?: string | undefined
  readonly BROKER_POLICIES?: string | undefined
  readonly BROKER_CACHE_SECRET?: string | undefined
  readonly BROKER_RATE_LIMIT_PER_MINUTE?: string | undefined
  readonly BROKER_CACHE_REVALIDATE_SECONDS?: string | undefined
  readonly BROKER_MAX_TOKEN_AGE_SECONDS?: string | undefined
  readonly BROKER_OIDC_JWKS?: string | undefined
  readonly BROKER_ISSUER_BUDGET_PER_MINUTE?: string | undefined
  readonly BROKER_ADMIN_TOKEN?: string | undefined
  readonly BROKER_APPS?: string | undefined
}

/** The configuration, once valid. */
export interface BrokerSettings {
  readonly appId: string
  readonly privateKey: Redacted.Redacted<string>
  /** Every app the broker speaks for: BROKER_APP_ID first, then BROKER_APPS. */
  readonly apps: ReadonlyArray<{ readonly appId: string; readonly privateKey: Redacted.Redacted<string> }>
  readonly issuerUrl: string
  /** The `aud` identity tokens must carry (absent when no policy is for an OIDC identity). */
  readonly audience: string | undefined
  readonly oidcIssuers: ReadonlyArray<string>
  /** Key sets given by configuration, by issuer (`BROKER_OIDC_JWKS`): never fetched. */
  readonly oidcJwks: Readonly<Record<string, JSONWebKeySet>>
  readonly policies: ReadonlyArray<Policy>
  /** BROKER_POLICIES as written (what `GET /admin/policies` shows until a document is stored). */
  readonly policiesRaw: ReadonlyArray<unknown>
  /** The operator token guarding `/admin/policies`; absent (the API off) unless at least 32 characters. */
  readonly adminToken: Redacted.Redacted<string> | undefined
  readonly cacheSecret: Redacted.Redacted<string>
  /** Token exchanges and listings per caller per minute, per isolate. */
  readonly ratePerMinute: number
  /**
   * How long the issuer's confirmation of a cached token's standing holds (0: a cached token is
   * described at the issuer every time it is served).
   */
  readonly revalidateSeconds: number
  /** The oldest identity token accepted, by `iat`. */
  readonly maxTokenAgeSeconds: number
  /** Requests the whole broker makes to the issuer per minute (per isolate): below the app's own budget there. */
  readonly issuerBudgetPerMinute: number
}

/** The shortest `BROKER_ADMIN_TOKEN` that turns the operator API on. */
export const MIN_ADMIN_TOKEN_LENGTH = 32
/** The shortest `BROKER_CACHE_SECRET` accepted. */
export const MIN_CACHE_SECRET_LENGTH = 32
/** The default of `BROKER_RATE_LIMIT_PER_MINUTE`. */
export const DEFAULT_RATE_PER_MINUTE = 60

/** The default of `BROKER_CACHE_REVALIDATE_SECONDS`: confirm every serve. */
export const DEFAULT_REVALIDATE_SECONDS = 0
/** The most `BROKER_CACHE_REVALIDATE_SECONDS` may say: a killed token is never served longer than this. */
export const MAX_REVALIDATE_SECONDS = 600
/**
 * The default of `BROKER_ISSUER_BUDGET_PER_MINUTE`: half the issuer's default budget per app
 * (`PRINCIPAL_RATE_LIMIT_PER_MINUTE`, 1200), so the app's own calls always have the other half.
 */
export const DEFAULT_ISSUER_BUDGET_PER_MINUTE = 600
/** The default of `BROKER_MAX_TOKEN_AGE_SECONDS`: an hour, by `iat`. */
export const DEFAULT_MAX_TOKEN_AGE_SECONDS = 3600

const set = (value: string | undefined): value is string => value !== undefined && value.trim() !== ""

/**
 * Reads the settings. `viaBinding` says whether the issuer is reached through the `ISSUER`
 * service binding (then the URL never leaves Cloudflare and may be `http:`).
 */
export const readSettings = (
  vars: BrokerVars,
  viaBinding: boolean
): Either.Either<BrokerSettings, ReadonlyArray<string>> => {
  const problems: Array<string> = []

  if (!set(vars.BROKER_APP_ID)) problems.push("BROKER_APP_ID is not set: the broker has no app identity")
  if (!set(vars.BROKER_PRIVATE_KEY)) problems.push("BROKER_PRIVATE_KEY is not set: the broker cannot sign App JWTs")

  const issuerUrl = set(vars.BROKER_ISSUER_URL) ? vars.BROKER_ISSUER_URL.trim() : DEFAULT_BASE_URL
  if (!viaBinding && !isAllowedUrl(issuerUrl))
    problems.push("BROKER_ISSUER_URL must be an https: URL (http: only on a loopback host)")

  let oidcIssuers: ReadonlyArray<string> = []
  if (set(vars.BROKER_OIDC_ISSUERS)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(vars.BROKER_OIDC_ISSUERS)
    } catch {
      parsed = undefined
    }
    if (!Array.isArray(parsed) || !parsed.every((i) => typeof i === "string")) {
      problems.push("BROKER_OIDC_ISSUERS must be a JSON array of issuer URLs")
    } else {
      parsed.forEach((issuer: string, index) => {
        if (!isAllowedUrl(issuer))
          problems.push(`BROKER_OIDC_ISSUERS[${index}] must be an https: URL (http: only on a loopback host)`)
      })
      oidcIssuers = parsed
    }
  }

  // `{ "<issuer>": { "keys": [JWK, …] } }`: for a cluster whose discovery is not reachable from here.
  const oidcJwks: Record<string, JSONWebKeySet> = {}
  if (set(vars.BROKER_OIDC_JWKS)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(vars.BROKER_OIDC_JWKS)
    } catch {
      parsed = undefined
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      problems.push('BROKER_OIDC_JWKS must be a JSON object: { "<issuer URL>": { "keys": [JWK, …] } }')
    } else {
      for (const [issuer, jwks] of Object.entries(parsed)) {
        const keys = (jwks as { keys?: unknown } | null)?.keys
        if (!oidcIssuers.includes(issuer)) problems.push("BROKER_OIDC_JWKS: names an issuer not in BROKER_OIDC_ISSUERS")
        else if (
          !Array.isArray(keys) ||
          keys.length === 0 ||
          !keys.every((k) => k !== null && typeof k === "object" && typeof (k as { kty?: unknown }).kty === "string")
        )
          problems.push(`BROKER_OIDC_JWKS[${JSON.stringify(issuer)}] must be a JWKS: { "keys": [JWK, …] }`)
        else oidcJwks[issuer] = { keys } as JSONWebKeySet
      }
    }
  }

  // More apps (a secret: it holds their keys): `[{ "appId": "…", "privateKey": "-----BEGIN PRIVATE KEY-----…" }]`.
  const apps: Array<{ readonly appId: string; readonly privateKey: Redacted.Redacted<string> }> = []
  if (set(vars.BROKER_APP_ID) && set(vars.BROKER_PRIVATE_KEY))
    apps.push({ appId: vars.BROKER_APP_ID.trim(), privateKey: Redacted.make(vars.BROKER_PRIVATE_KEY) })
  if (set(vars.BROKER_APPS)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(vars.BROKER_APPS)
    } catch {
      parsed = undefined
    }
    if (!Array.isArray(parsed)) problems.push('BROKER_APPS must be a JSON array of { "appId", "privateKey" }')
    else
      parsed.forEach((entry: { appId?: unknown; privateKey?: unknown } | null, index) => {
        if (typeof entry?.appId !== "string" || entry.appId.trim() === "" || typeof entry.privateKey !== "string")
          problems.push(`BROKER_APPS[${index}] must be { "appId", "privateKey" } (strings)`)
        else if (apps.some((a) => a.appId === entry.appId))
          problems.push(`BROKER_APPS[${index}].appId: the broker already speaks for that app`)
        else apps.push({ appId: (entry.appId as string).trim(), privateKey: Redacted.make(entry.privateKey) })
      })
  }

  const adminToken =
    set(vars.BROKER_ADMIN_TOKEN) && vars.BROKER_ADMIN_TOKEN.length >= MIN_ADMIN_TOKEN_LENGTH
      ? Redacted.make(vars.BROKER_ADMIN_TOKEN)
      : undefined
  // With an operator API, policies may come from the store alone: no BROKER_POLICIES is no policy yet.
  const policies =
    adminToken !== undefined && !set(vars.BROKER_POLICIES)
      ? Either.right<ReadonlyArray<Policy>>([])
      : decodePolicies(
          vars.BROKER_POLICIES,
          oidcIssuers,
          apps.map((a) => a.appId)
        )
  if (Either.isLeft(policies)) problems.push(...policies.left)

  const audience = set(vars.BROKER_AUDIENCE) ? vars.BROKER_AUDIENCE.trim() : undefined
  const wantsOidc = Either.isRight(policies) && policies.right.some((p) => "issuer" in p.identity)
  if (wantsOidc && audience === undefined)
    problems.push("BROKER_AUDIENCE is not set: identity tokens cannot be checked for this broker's audience")

  if (!set(vars.BROKER_CACHE_SECRET) || vars.BROKER_CACHE_SECRET.length < MIN_CACHE_SECRET_LENGTH)
    problems.push(
      `BROKER_CACHE_SECRET is not set (at least ${MIN_CACHE_SECRET_LENGTH} characters): tokens are never cached unencrypted`
    )

  let ratePerMinute = DEFAULT_RATE_PER_MINUTE
  if (set(vars.BROKER_RATE_LIMIT_PER_MINUTE)) {
    const n = Number(vars.BROKER_RATE_LIMIT_PER_MINUTE)
    if (Number.isInteger(n) && n > 0) ratePerMinute = n
    else problems.push("BROKER_RATE_LIMIT_PER_MINUTE must be a positive integer")
  }

  const whole = (name: keyof BrokerVars, fallback: number, min: number, max: number): number => {
    const raw = vars[name]
    if (!set(raw)) return fallback
    const n = Number(raw)
    if (Number.isInteger(n) && n >= min && n <= max) return n
    problems.push(`${name} must be an integer from ${min} to ${max}`)
    return fallback
  }
  const revalidateSeconds = whole(
    "BROKER_CACHE_REVALIDATE_SECONDS",
    DEFAULT_REVALIDATE_SECONDS,
    0,
    MAX_REVALIDATE_SECONDS
  )
  const issuerBudgetPerMinute = whole("BROKER_ISSUER_BUDGET_PER_MINUTE", DEFAULT_ISSUER_BUDGET_PER_MINUTE, 1, 1_000_000)
  const maxTokenAgeSeconds = whole("BROKER_MAX_TOKEN_AGE_SECONDS", DEFAULT_MAX_TOKEN_AGE_SECONDS, 60, 86_400)

  if (problems.length > 0 || Either.isLeft(policies)) return Either.left(problems)
  return Either.right({
    appId: vars.BROKER_APP_ID!.trim(),
    privateKey: Redacted.make(vars.BROKER_PRIVATE_KEY!),
    apps,
    issuerUrl,
    audience,
    oidcIssuers,
    oidcJwks,
    policies: policies.right,
    policiesRaw: set(vars.BROKER_POLICIES) ? (JSON.parse(vars.BROKER_POLICIES) as ReadonlyArray<unknown>) : [],
    adminToken,
    cacheSecret: Redacted.make(vars.BROKER_CACHE_SECRET!),
    ratePerMinute,
    revalidateSeconds,
    maxTokenAgeSeconds,
    issuerBudgetPerMinute
  })
}
