/**
 * One audit event per token exchange (SPEC §8): who asked, which policy decided, for which
 * installation and permissions, what came of it, and which token was handed out — by its id and
 * a digest prefix, never the token, the subject token or a key.
 */
import type { Permissions } from "@icr-apps/core/api/Permissions"

/** One token exchange, granted or refused. */
export interface ExchangeEvent {
  readonly event: "broker.token_exchange"
  /** RFC 3339. */
  readonly time: string
  readonly requestId: string
  readonly outcome: "granted" | "refused"
  /** The problem code when refused. */
  readonly code?: string | undefined
  /**
   * Why it was refused, in one word: `expired`, `audience`, `issuer`, `signature`, `unknown_kid`,
   * `too_old`, `malformed`, `no_policy`, `not_reachable`, `beyond_policy`, `suspended`,
   * `rate_limited`, `failed_attempts`, `identity_provider_unavailable`, `issuer_unavailable`, …
   */
  readonly reason?: string | undefined
  /** Who asked, once authenticated. */
  readonly caller?:
    | { readonly kind: "oidc"; readonly issuer: string; readonly sub: string }
    | { readonly kind: "service"; readonly service: string }
    | undefined
  /** The policy that allowed it. */
  readonly policy?: string | undefined
  readonly installationId?: string | undefined
  /** What the token carries (granted), or what was asked for (refused). */
  readonly permissions?: Permissions | undefined
  /**
   * The issuer's id of the token, when this isolate minted it; a token served from another
   * isolate's cache entry is identified by {@link tokenDigest} alone (the SDK's cache keeps no id).
   */
  readonly tokenId?: string | null | undefined
  /** The first 16 hex digits of SHA-256(token): the prefix of the issuer's own `token:<sha256>` KV key. */
  readonly tokenDigest?: string | undefined
  /** Whether the token came from the cache (no mint). */
  readonly cached?: boolean | undefined
  readonly expiresAt?: string | undefined
  /**
   * For a token from a cache: `confirmed` (the issuer described it now), `recent` (it did within
   * BROKER_CACHE_REVALIDATE_SECONDS), `dead` (the issuer had killed it: a fresh one was minted).
   */
  readonly revalidated?: "confirmed" | "recent" | "dead" | undefined
}

/** A change of the trust policies through the operator API (or a refused attempt at one). */
export interface PolicyEvent {
  readonly event: "broker.policies_update"
  readonly time: string
  readonly requestId: string
  readonly outcome: "success" | "refused"
  readonly code?: string | undefined
  /** The version written (or, refused, the version the change was based on: its `If-Match`). */
  readonly version?: number | undefined
  /** The names of the policies now in force. */
  readonly policies?: ReadonlyArray<string> | undefined
  /** `sha256:<hex>` of the policies as stored and as `GET /admin/policies` shows them (compact JSON). */
  readonly digest?: string | undefined
  /** The policies that say `"allowAnySubject": true` (their subjectPattern matches any subject). */
  readonly allowAnySubject?: ReadonlyArray<string> | undefined
}

/**
 * A failed authentication at the operator API (a wrong operator token, or another scheme): never
 * the value presented. At most one event per client address per second.
 */
export interface OperatorEvent {
  readonly event: "broker.operator_authenticate"
  readonly time: string
  readonly requestId: string
  readonly outcome: "failure"
  /** `invalid_token`, `invalid_request`, or `rate_limited` once the address is past its limit. */
  readonly code: string
  /** The client address as rate limits group it (`ip4:…`, an IPv6 address as `ip6:…/64`), when the request carried one. */
  readonly clientAddress?: string | undefined
}

/** Where audit events go. */
export type AuditSink = (event: ExchangeEvent | PolicyEvent | OperatorEvent) => void

/** One JSON line on the Worker's log (Workers Logs / `wrangler tail` index it). */
export const consoleSink: AuditSink = (event) => console.log(JSON.stringify(event))
