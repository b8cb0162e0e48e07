/**
 * The broker (SPEC §8): it holds one app's identity and hands narrowed installation tokens to
 * workloads that prove who they are, as the trust policies allow. Underneath is the app-side SDK
 * (`AppJwt`, `IcrAppsClient`, `InstallationTokens`: signing, retries, refresh-ahead, single-flight
 * per isolate) over an encrypted KV token cache; never the issuer's modules.
 *
 * Callers are authenticated two ways: an OIDC identity token from a configured issuer, or a
 * Cloudflare service binding whose `props.service` names the caller (see `index.ts` for why that,
 * and not a header).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { Permissions } from "@icr-apps/core/api/Permissions"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import * as Client from "@icr-apps/core/sdk/Client"
import * as InstallationTokens from "@icr-apps/core/sdk/InstallationTokens"
import { type CachedToken, TokenCache } from "@icr-apps/core/sdk/TokenCache"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import { routerOf, runRoute } from "@icr-apps/core/edge/Router"
import {
  ACCESS_TOKEN_TYPE,
  BrokerApi,
  OperatorAuth,
  openApiDocument,
  SUBJECT_TOKEN_TYPES,
  TOKEN_EXCHANGE_GRANT,
  type TokenRequest,
  type TokenResponse
} from "./Api.js"
import { type AuditSink, consoleSink, type ExchangeEvent } from "./Audit.js"
import { type BrokerSettings, type BrokerVars, MIN_ADMIN_TOKEN_LENGTH, readSettings } from "./Config.js"
import * as EncryptedTokenCache from "./EncryptedTokenCache.js"
import * as Oidc from "./Oidc.js"
import {
  type Caller,
  callerKey,
  decide,
  decodePolicyArray,
  formatScope,
  listing,
  parseScope,
  reaches,
  type Refusal
} from "./Policies.js"
import * as PolicyStore from "./PolicyStore.js"
import {
  AdminDisabled,
  type BrokerProblem,
  PreconditionRequired,
  codeOf,
  InvalidToken,
  MissingCredentials,
  InvalidGrant,
  InvalidRequest,
  InvalidScope,
  InvalidTarget,
  RateLimited,
  UnauthorizedClient,
  Unavailable
} from "./Problems.js"
import { brokerEdge, RequestId } from "./Http.js"
import * as RateLimit from "./RateLimit.js"
import { addressKey } from "@icr-apps/core/api/ClientAddress"
import type { Installation } from "@icr-apps/core/api/Installations"
import { secretsEqual } from "@icr-apps/core/edge/Secrets"

/** The bindings the broker reads: its vars and secrets, its KV namespace, the optional issuer binding. */
export interface BrokerBindings extends BrokerVars {
  readonly BROKER_CACHE: EncryptedTokenCache.KvLike
  /** A service binding to the issuer worker; without it the issuer is reached at BROKER_ISSUER_URL. */
  readonly ISSUER?: { fetch: typeof globalThis.fetch } | undefined
  /** Exchanges and listing units per caller, shared by every isolate (a Rate Limiting binding; optional). */
  readonly CALLER_RATE_LIMITER?: RateLimit.RateLimitBinding | undefined
  /** Requests to the issuer per app, shared by every isolate (a Rate Limiting binding; optional). */
  readonly ISSUER_RATE_LIMITER?: RateLimit.RateLimitBinding | undefined
}

/** What the broker needs from outside besides its bindings (tests replace them). */
export interface BrokerDependencies {
  /** How OIDC discovery and JWKS documents are fetched (default: the global `fetch`). */
  readonly oidcFetch?: typeof globalThis.fetch | undefined
  /** Where audit events go (default: one JSON line on the console). */
  readonly audit?: AuditSink | undefined
  /** How the issuer is retried (default: 3 attempts, 200 ms doubling, 5 s per attempt). */
  readonly retry?: Client.RetryOptions | undefined
  /** Installations per page when listing at the issuer (default 100, the most it serves). */
  readonly listPageSize?: number | undefined
}

/** An installation token's lifetime (SPEC §4: 2 h). */
const INSTALLATION_TOKEN_SECONDS = 7200
/**
 * How long after its mint a cached token is still handed out: 10 minutes. The SDK refreshes ahead
 * of expiry by a margin; here the margin is the rest of the lifetime, so a token the issuer has
 * since killed (suspension, a permission change, a revocation by one of the callers sharing it)
 * stops being handed out within 10 minutes, and every caller gets a token with at least 1 h 50 min
 * left. Against an issuer with shorter-lived tokens the broker simply mints on every exchange.
 */
export const REUSE_SECONDS = 600

/** The issuer retry policy: short, because a caller is waiting on the other side. */
export const DEFAULT_RETRY: Client.RetryOptions = {
  maxAttempts: 3,
  baseDelay: "200 millis",
  maxDelay: "2 seconds",
  maxRetryAfter: "5 seconds",
  attemptTimeout: "5 seconds"
}

/** The caller that came over a service binding (from `ctx.props`), per request. */
export class ServiceCaller extends Context.Tag("@icr-apps/worker/broker/ServiceCaller")<
  ServiceCaller,
  { readonly service: string | undefined }
>() {}

/** One app the broker speaks for: its SDK, its budget at the issuer, its listing cache. */
interface AppSdk {
  readonly appId: string
  readonly tokens: InstallationTokens.InstallationTokens["Type"]
  readonly client: Client.IcrAppsClient["Type"]
  /** Every request made to the issuer for this app (mints, describes, listing pages), under one key. */
  readonly issuerBudget: RateLimit.RateLimiter
  /** The app's installations, as last listed (a short cache: see {@link LIST_CACHE_SECONDS}). */
  readonly listings: {
    readonly pageSize: number
    cached?: { readonly at: number; readonly items: ReadonlyArray<Installation> } | undefined
    /** How many pages the last walk took: what a caller starting the next one pays up front. */
    lastPages: number
    /** The walk under way, which concurrent listings wait on instead of walking again. */
    walking?: Deferred.Deferred<Listed, Unavailable | RateLimited> | undefined
  }
}

/** A broker that can serve. */
interface Ready {
  readonly ready: true
  readonly settings: BrokerSettings
  /** Every app it speaks for, by id (BROKER_APP_ID, then BROKER_APPS). */
  readonly apps: ReadonlyMap<string, AppSdk>
  readonly oidc: Oidc.OidcVerifier | undefined
  /** Exchanges and listings per caller. */
  readonly callers: RateLimit.RateLimiter
  /** Failed authentications per client address. */
  readonly failures: RateLimit.RateLimiter
  /** The limits every isolate shares (Cloudflare Rate Limiting bindings), when bound. */
  readonly shared: {
    readonly callers: RateLimit.RateLimitBinding | undefined
    readonly issuer: RateLimit.RateLimitBinding | undefined
  }
  /** The ids of tokens this isolate minted, by digest prefix (the SDK's cache keeps no id). */
  readonly mintedIds: Map<string, string>
  /** When the issuer last confirmed a cached token's standing, by digest prefix (per isolate). */
  readonly confirmed: Map<string, number>
  readonly audit: AuditSink
  /** The trust policies in force: BROKER_POLICIES, or the document stored through the operator API. */
  readonly policies: PolicyStore.PolicyStore
}

/** The broker's state: ready, or why not. */
export class BrokerState extends Context.Tag("@icr-apps/worker/broker/BrokerState")<
  BrokerState,
  Ready | { readonly ready: false; readonly problems: ReadonlyArray<string>; readonly audit: AuditSink }
>() {}

/**
 * How long a listing of the app's installations is served from memory: one caller listing in a
 * loop costs the issuer one walk of every page per 30 s, not one per request.
 */
export const LIST_CACHE_SECONDS = 30
/** The most pages one listing walks (100 installations each). */
const MAX_LIST_PAGES = 1000

/** Failed authentications allowed per client address per minute before 429. */
const FAILED_ATTEMPTS_PER_MINUTE = 30
/** How many minted token ids are remembered per isolate. */
const MINTED_IDS_KEPT = 1000

/** The id of the token the current exchange minted, if it minted one. */
const MintedHere = FiberRef.unsafeMake<string | undefined>(undefined)

/** The first 16 hex digits of SHA-256(token). */
const digestPrefix = (token: string) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))).pipe(
    Effect.map((d) => Encoding.encodeHex(new Uint8Array(d)).slice(0, 16))
  )

/**
 * Counts one request to the issuer against the broker-wide budget: past it, the caller is told to
 * come back (429) rather than the broker spending the app's own budget at the issuer.
 */
const spend = (
  budget: RateLimit.RateLimiter,
  shared?: { binding: RateLimit.RateLimitBinding | undefined; key: string }
) =>
  Effect.clockWith((clock) => {
    const decision = budget.take("issuer", clock.unsafeCurrentTimeMillis())
    const spent = (retryAfter: number) =>
      Effect.fail(
        new RateLimited({ detail: "The broker's budget of requests to the issuer is spent for now", retryAfter })
      )
    if (!decision.allowed) return spent(decision.retryAfterSeconds)
    if (shared?.binding === undefined) return Effect.void
    return Effect.flatMap(RateLimit.takeShared(shared.binding, shared.key), (allowed) =>
      allowed ? Effect.void : spent(RateLimit.BINDING_PERIOD_SECONDS)
    )
  })

/**
 * The SDK, as the broker uses it: the client records the id of every token it mints (for the
 * audit line), the cache is KV sealed under BROKER_CACHE_SECRET.
 */
const sdkLayer = (
  settings: BrokerSettings,
  app: BrokerSettings["apps"][number],
  env: BrokerBindings,
  retry: Client.RetryOptions,
  ids: Map<string, string>,
  budget: RateLimit.RateLimiter,
  keys: EncryptedTokenCache.CacheKeys
) => {
  const issuer = env.ISSUER
  const fetch: typeof globalThis.fetch =
    issuer !== undefined ? (input, init) => issuer.fetch(input, init) : (input, init) => globalThis.fetch(input, init)
  const recordingClient = Layer.effect(
    Client.IcrAppsClient,
    Effect.map(Client.make({ baseUrl: settings.issuerUrl, retry }), (client) =>
      Client.IcrAppsClient.of({
        ...client,
        createInstallationAccessToken: (installationId, options) =>
          Effect.tap(
            Effect.zipRight(
              spend(budget, { binding: env.ISSUER_RATE_LIMITER, key: `app:${app.appId}` }),
              client.createInstallationAccessToken(installationId, options)
            ),
            (minted) =>
              Effect.flatMap(digestPrefix(Redacted.value(minted.token)), (digest) => {
                ids.set(digest, minted.id)
                if (ids.size > MINTED_IDS_KEPT) ids.delete(ids.keys().next().value!)
                // The mint runs in the fiber of the exchange that caused it (others wait on its result).
                return FiberRef.set(MintedHere, minted.id)
              })
          )
      })
    )
  )
  return InstallationTokens.layer({ refreshMarginSeconds: INSTALLATION_TOKEN_SECONDS - REUSE_SECONDS }).pipe(
    Layer.provideMerge(recordingClient),
    Layer.provide(AppJwt.layer({ appId: app.appId, privateKey: app.privateKey })),
    Layer.provide(Client.layerFetch(fetch)),
    Layer.provide(Layer.succeed(TokenCache, EncryptedTokenCache.make(env.BROKER_CACHE, keys)))
  )
}

/** Reads the configuration and builds the SDK once; a problem makes the broker not ready, never crash. */
const stateLayer = (env: BrokerBindings, deps: BrokerDependencies) =>
  Layer.scoped(
    BrokerState,
    Effect.gen(function* () {
      const audit = deps.audit ?? consoleSink
      const read = readSettings(env, env.ISSUER !== undefined)
      if (Either.isLeft(read)) return { ready: false as const, problems: read.left, audit }
      const settings = read.right
      const mintedIds = new Map<string, string>()
      const keys = yield* Effect.promise(() => EncryptedTokenCache.deriveKeys(Redacted.value(settings.cacheSecret)))
      const apps = new Map<string, AppSdk>()
      for (const [index, app] of settings.apps.entries()) {
        // Each app has its own budget at the issuer, so each gets its own ceiling here.
        const issuerBudget = RateLimit.make(settings.issuerBudgetPerMinute)
        const built = yield* Effect.either(
          Layer.build(sdkLayer(settings, app, env, deps.retry ?? DEFAULT_RETRY, mintedIds, issuerBudget, keys))
        )
        if (Either.isLeft(built)) {
          const name = index === 0 ? "BROKER_PRIVATE_KEY" : `BROKER_APPS[${index - 1}].privateKey`
          return { ready: false as const, problems: [`${name}: ${built.left.detail}`], audit }
        }
        apps.set(app.appId, {
          appId: app.appId,
          tokens: Context.get(built.right, InstallationTokens.InstallationTokens),
          client: Context.get(built.right, Client.IcrAppsClient),
          issuerBudget,
          listings: { pageSize: deps.listPageSize ?? 100, lastPages: 1 }
        })
      }
      return {
        ready: true as const,
        settings,
        apps,
        oidc:
          settings.audience === undefined || settings.oidcIssuers.length === 0
            ? undefined
            : Oidc.make({
                issuers: settings.oidcIssuers,
                audience: settings.audience,
                fetch: deps.oidcFetch,
                maxTokenAgeSeconds: settings.maxTokenAgeSeconds,
                staticJwks: settings.oidcJwks
              }),
        callers: RateLimit.make(settings.ratePerMinute),
        failures: RateLimit.make(FAILED_ATTEMPTS_PER_MINUTE),
        shared: { callers: env.CALLER_RATE_LIMITER, issuer: env.ISSUER_RATE_LIMITER },
        mintedIds,
        confirmed: new Map(),
        audit,
        policies: PolicyStore.make(
          EncryptedTokenCache.sealedKv(env.BROKER_CACHE, keys),
          { raw: settings.policiesRaw, policies: settings.policies },
          (policies) => validatePolicies(settings, policies)
        )
      }
    })
  )

const notReady = () =>
  new Unavailable({ detail: "The broker is not configured; GET /healthz says why", retryAfter: 30 })

const readyState = Effect.flatMap(BrokerState, (state) =>
  state.ready ? Effect.succeed(state) : Effect.fail(notReady())
)

/** The bearer credential of the request, if any. */
const bearerOf = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<string | undefined, InvalidRequest> => {
  const header = request.headers.authorization
  if (header === undefined || header.trim() === "") return Effect.succeed(undefined)
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return match === null
    ? Effect.fail(new InvalidRequest({ detail: "The Authorization header must use the Bearer scheme" }))
    : Effect.succeed(match[1]!)
}

/**
 * Who is calling: the verified identity token if one was sent, else the service binding's name.
 * A token is verified first (cheap: the keys are cached, and an unknown `kid` is asked about at
 * most once per cool-down), so failed attempts from an address never cause a valid credential from
 * it to be refused (SPEC §8: NAT, CI runners, Workers sharing egress). Failures count against the
 * client address, and past the limit a failure is answered 429 instead of `invalid_grant`.
 */
const authenticate = (
  state: Ready,
  request: HttpServerRequest.HttpServerRequest,
  token: string | undefined
): Effect.Effect<Caller, Oidc.OidcFailure | RateLimited | InvalidRequest> =>
  Effect.suspend((): Effect.Effect<Caller, Oidc.OidcFailure | RateLimited | InvalidRequest> => {
    if (token !== undefined) {
      if (state.oidc === undefined)
        return new InvalidGrant({ detail: "This broker accepts no identity tokens (no OIDC policy)", reason: "issuer" })
      // Grouped as the issuer groups them (SPEC §1): an IPv6 client rotating through its /64 is one address.
      const forwarded = request.headers["cf-connecting-ip"]
      const address = forwarded === undefined ? undefined : addressKey(forwarded)
      const verified = state.oidc.verify(token)
      if (address === undefined) return verified
      return Effect.catchIf(
        verified,
        (e): e is InvalidGrant => e instanceof InvalidGrant,
        (e) =>
          Effect.clockWith((clock): Effect.Effect<never, InvalidGrant | RateLimited> => {
            const seen = state.failures.take(address, clock.unsafeCurrentTimeMillis())
            return seen.allowed
              ? Effect.fail(e)
              : Effect.fail(
                  new RateLimited({
                    detail: "Too many failed attempts from this address",
                    retryAfter: seen.retryAfterSeconds
                  })
                )
          })
      )
    }
    return Effect.flatMap(Effect.serviceOption(ServiceCaller), (service) =>
      Option.isSome(service) && service.value.service !== undefined
        ? Effect.succeed<Caller>({ kind: "service", service: service.value.service })
        : new InvalidRequest({ detail: "Send an OIDC identity token (subject_token, or Authorization: Bearer)" })
    )
  })

/** Counts one request of the caller against its limit. */
const limit = (state: Ready, caller: Caller) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const decision = state.callers.take(callerKey(caller), now)
    const tooMany = (retryAfter: number) =>
      Effect.fail(new RateLimited({ detail: "Too many requests from this caller", retryAfter }))
    if (!decision.allowed) return tooMany(decision.retryAfterSeconds)
    // Then the budget every isolate shares, where Cloudflare offers one.
    return Effect.flatMap(RateLimit.takeShared(state.shared.callers, callerKey(caller)), (allowed) =>
      allowed ? Effect.void : tooMany(RateLimit.BINDING_PERIOD_SECONDS)
    )
  })

/** The issuer could not serve the broker: it says so, without the details (they are logged). */
const issuerFailed = (e: { readonly _tag: string }, what: string) =>
  Effect.zipRight(
    Effect.logError(`broker: ${what} failed at the issuer`, e._tag),
    Effect.fail(
      new Unavailable({
        detail:
          e._tag === "InvalidJwt" || e._tag === "MissingCredentials" || e._tag === "JwtSigningFailed"
            ? "The issuer refused the broker's app credentials"
            : "The issuer could not be reached; retry later",
        retryAfter: 5
      })
    )
  )

/**
 * What the issuer's answer to a mint means to the caller: an unknown or suspended installation
 * is the wrong target, a grant the installation lacks the wrong scope; transport failures, 5xx
 * and 429 after the SDK's retries, or the issuer refusing the broker's own credentials, mean
 * the broker cannot serve.
 */
const fromMint = (e: {
  readonly _tag: string
}): Effect.Effect<never, InvalidTarget | InvalidScope | Unavailable | RateLimited> => {
  switch (e._tag) {
    case "InstallationNotFound":
    case "InvalidRequest":
      return Effect.fail(
        new InvalidTarget({ detail: "The app has no such installation", reason: "unknown_installation" })
      )
    case "InstallationSuspended":
      return Effect.fail(new InvalidTarget({ detail: "The installation is suspended", reason: "suspended" }))
    case "RateLimited":
      // The broker's own budget at the issuer, or the issuer's after retries: the caller may come back.
      return Effect.fail(e as RateLimited)
    case "PermissionsExceedGrant":
    case "InvalidPermissions": {
      const names = (e as { readonly permissions?: ReadonlyArray<string> }).permissions
      return Effect.fail(
        new InvalidScope({
          reason: "beyond_grant",
          detail: `The installation does not grant ${names !== undefined && names.length > 0 ? names.join(", ") : "that scope"}`
        })
      )
    }
    default:
      return issuerFailed(e, "minting an installation token")
  }
}

const refusal = (r: Refusal, caller: Caller) => {
  switch (r._tag) {
    case "NoPolicy":
      return new UnauthorizedClient({
        reason: "no_policy",
        detail: `No trust policy allows ${caller.kind === "service" ? "this service" : "this identity"}`
      })
    case "NotReachable":
      return new InvalidTarget({
        detail: "No policy of this caller reaches that installation",
        reason: "not_reachable"
      })
    case "BeyondPolicy":
      return new InvalidScope({
        detail: `The scope asks for more than the policy allows: ${r.exceeding.join(", ")}`,
        reason: "beyond_policy"
      })
  }
}

const auditCaller = (caller: Caller): ExchangeEvent["caller"] =>
  caller.kind === "service"
    ? { kind: "service", service: caller.service }
    : { kind: "oidc", issuer: caller.issuer, sub: caller.sub }

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
const bareId = new RegExp(`^${UUID}$`, "i")
const urnId = new RegExp(`^urn:icr:installation:(${UUID})$`, "i")
const urlPath = new RegExp(`^/app/installations/(${UUID})/accessTokens$`, "i")

/**
 * The installation a `resource` names (lower-case), in any of the forms SPEC §8 accepts: the bare
 * id, `urn:icr:installation:<id>`, or the installation's `accessTokensUrl` (RFC 8693 wants a URI)
 * on the issuer this broker speaks to — a URL of another issuer names nothing here.
 */
export const installationOf = (resource: string, issuerUrl: string): string | undefined => {
  if (bareId.test(resource)) return resource.toLowerCase()
  const urn = urnId.exec(resource)
  if (urn !== null) return urn[1]!.toLowerCase()
  let url: URL
  let base: URL
  try {
    url = new URL(resource)
    base = new URL(issuerUrl)
  } catch {
    return undefined
  }
  if (url.origin !== base.origin || url.search !== "" || url.hash !== "" || url.username !== "") return undefined
  const prefix = base.pathname.replace(/\/+$/, "")
  if (!url.pathname.startsWith(prefix)) return undefined
  const match = urlPath.exec(url.pathname.slice(prefix.length))
  return match === null ? undefined : match[1]!.toLowerCase()
}

/**
 * The first 16 hex digits of SHA-256 of each token handed out, by the cached token it came from:
 * a warm exchange returns the same cached object again and again, and hashing it once is enough.
 */
const digests = new WeakMap<CachedToken, string>()
const digestOf = (issued: CachedToken): Effect.Effect<string> => {
  const known = digests.get(issued)
  if (known !== undefined) return Effect.succeed(known)
  return Effect.map(digestPrefix(Redacted.value(issued.token)), (digest) => {
    digests.set(issued, digest)
    return digest
  })
}

/** Whether a `Cache-Control` request header asks for `no-cache` (RFC 9111 §5.2.1.4). */
const noCache = (header: string | undefined): boolean =>
  header?.split(",").some((d) => d.trim().toLowerCase() === "no-cache") === true

/**
 * Whether a token served from a cache still stands at the issuer: confirmed within
 * `revalidateSeconds` (per isolate), or described there now — one cheap read, never a mint. The
 * issuer answering `invalid_token` (revoked, expired, its installation suspended or gone, its
 * grant narrowed) means dead; an issuer that cannot answer means the broker cannot vouch for it.
 */
const confirm = (
  state: Ready,
  sdk: AppSdk,
  issued: CachedToken,
  digest: string,
  now: number
): Effect.Effect<"dead" | { readonly described: boolean; readonly id?: string }, Unavailable | RateLimited> => {
  const at = state.confirmed.get(digest)
  if (at !== undefined && now - at < state.settings.revalidateSeconds * 1000)
    return Effect.succeed({ described: false })
  return Effect.zipRight(
    spend(sdk.issuerBudget, { binding: state.shared.issuer, key: `app:${sdk.appId}` }),
    sdk.client.describeAccessToken(issued.token)
  ).pipe(
    Effect.map((description) => {
      state.confirmed.delete(digest)
      state.confirmed.set(digest, now)
      if (state.confirmed.size > MINTED_IDS_KEPT) state.confirmed.delete(state.confirmed.keys().next().value!)
      return { described: true, id: description.id }
    }),
    Effect.catchAll((e): Effect.Effect<"dead", Unavailable | RateLimited> => {
      if (e._tag === "RateLimited") return Effect.fail(e as RateLimited)
      if (e._tag !== "InvalidToken") return issuerFailed(e, "confirming a cached token")
      state.confirmed.delete(digest)
      return Effect.succeed("dead" as const)
    })
  )
}

/** The mutable audit event of one exchange, completed as the exchange goes. */
type Event = { -readonly [K in keyof ExchangeEvent]: ExchangeEvent[K] }

/** The exchange proper, once the broker is ready; `event` records what happened for the audit line. */
const exchangeWith = (
  state: Ready,
  request: HttpServerRequest.HttpServerRequest,
  payload: TokenRequest,
  event: Event
) =>
  Effect.gen(function* () {
    if (payload.grant_type === undefined) return yield* new InvalidRequest({ detail: "grant_type is required" })
    if (payload.grant_type !== TOKEN_EXCHANGE_GRANT)
      return yield* new InvalidRequest({ detail: `grant_type must be ${TOKEN_EXCHANGE_GRANT}` })
    if (payload.actor_token !== undefined || payload.actor_token_type !== undefined)
      return yield* new InvalidRequest({ detail: "Delegation (actor_token) is not supported" })
    if (payload.requested_token_type !== undefined && payload.requested_token_type !== ACCESS_TOKEN_TYPE)
      return yield* new InvalidRequest({ detail: `requested_token_type must be ${ACCESS_TOKEN_TYPE}` })
    const bearer = yield* bearerOf(request)
    if (payload.subject_token !== undefined && bearer !== undefined && payload.subject_token !== bearer)
      return yield* new InvalidRequest({ detail: "subject_token and the Authorization header disagree" })
    const token = payload.subject_token ?? bearer
    if (token !== undefined && payload.subject_token !== undefined) {
      if (payload.subject_token_type === undefined)
        return yield* new InvalidRequest({ detail: "subject_token_type is required with subject_token" })
      if (!SUBJECT_TOKEN_TYPES.includes(payload.subject_token_type))
        return yield* new InvalidRequest({ detail: `subject_token_type must be ${SUBJECT_TOKEN_TYPES.join(" or ")}` })
    }
    if (payload.resource === undefined)
      return yield* new InvalidRequest({ detail: "resource (the installation id) is required" })

    const caller = yield* authenticate(state, request, token).pipe(
      Effect.tapError((e) =>
        Effect.sync(() => {
          if (e._tag === "Unavailable") event.reason = "identity_provider_unavailable"
          else if (e._tag === "RateLimited") event.reason = "failed_attempts"
        })
      )
    )
    event.caller = auditCaller(caller)
    yield* limit(state, caller)
    const installationId = installationOf(payload.resource, state.settings.issuerUrl)
    if (installationId === undefined)
      return yield* new InvalidTarget({
        detail: `resource must be an installation: its id, urn:icr:installation:<id>, or its accessTokensUrl at ${state.settings.issuerUrl}`,
        reason: "malformed_resource"
      })
    event.installationId = installationId
    let requested: Permissions | undefined
    if (payload.scope !== undefined) {
      const parsed = parseScope(payload.scope)
      if (Either.isLeft(parsed)) return yield* new InvalidScope({ detail: parsed.left, reason: "malformed_scope" })
      requested = parsed.right
      event.permissions = requested
    }
    const { policies } = yield* state.policies.current(yield* Clock.currentTimeMillis)
    const decision = decide(policies, caller, installationId, requested)
    if (Either.isLeft(decision)) return yield* refusal(decision.left, caller)
    const { policy, permissions } = decision.right
    event.policy = policy.name
    // The app whose identity mints: the policy's, else BROKER_APP_ID (decoding checked it is one of ours).
    const sdk = state.apps.get(policy.app ?? state.settings.appId)!
    event.permissions = permissions

    // Never undefined and never empty: either would mean "the installation's full grant" to the issuer.
    // Partitioned by caller: a token one caller received (and may revoke) is never handed to another.
    const wanted = { permissions, partition: callerKey(caller) }
    // `Cache-Control: no-cache`: the caller wants a token minted now, not one from the cache.
    const fresh = noCache(request.headers["cache-control"])
    let now = yield* Clock.currentTimeMillis
    // The token `get` would answer from this isolate's memory, taken without entering the SDK: no mint
    // can happen then, so there is no MintedHere to reset and read.
    let issued = fresh ? undefined : sdk.tokens.unsafePeek(installationId, wanted, now)
    let minted: string | undefined
    const mint = (refresh: boolean) =>
      Effect.gen(function* () {
        yield* FiberRef.set(MintedHere, undefined)
        const got = yield* sdk.tokens
          .get(installationId, refresh ? { ...wanted, refresh } : wanted)
          .pipe(Effect.catchAll(fromMint))
        return [got, yield* FiberRef.get(MintedHere)] as const
      })
    if (issued === undefined) {
      ;[issued, minted] = yield* mint(fresh)
      now = yield* Clock.currentTimeMillis
    }
    let digest = yield* digestOf(issued)
    let describedId: string | undefined
    if (minted === undefined) {
      // From a cache: served only while the issuer has confirmed its standing recently enough
      // (SPEC §8). A killed token is dropped — overwritten by a fresh mint — and a mint the issuer
      // refuses (a suspended installation) answers the issuer's reason.
      const standing = yield* confirm(state, sdk, issued, digest, now)
      if (standing === "dead") {
        event.revalidated = "dead"
        ;[issued, minted] = yield* mint(true)
        now = yield* Clock.currentTimeMillis
        digest = yield* digestOf(issued)
      } else {
        event.revalidated = standing.described ? "confirmed" : "recent"
        describedId = standing.id
      }
    }
    event.outcome = "granted"
    event.permissions = issued.permissions
    event.tokenDigest = digest
    event.tokenId = minted ?? describedId ?? state.mintedIds.get(digest) ?? null
    event.cached = minted === undefined
    event.expiresAt = DateTime.formatIso(issued.expiresAt)
    const response: TokenResponse = {
      access_token: Redacted.value(issued.token),
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: Math.max(0, Math.floor((DateTime.toEpochMillis(issued.expiresAt) - now) / 1000)),
      scope: formatScope(issued.permissions)
    }
    return response
  })

/** The word an audit line gives for a refusal (SPEC §8): the problem's own reason, else one by its kind. */
const reasonOf = (failure: unknown, ready: boolean): string => {
  const given = (failure as { readonly reason?: unknown } | undefined)?.reason
  if (typeof given === "string") return given
  switch ((failure as { readonly _tag?: unknown } | undefined)?._tag) {
    case "RateLimited":
      return "rate_limited"
    case "Unavailable":
      return ready ? "issuer_unavailable" : "not_configured"
    case "InvalidRequest":
      return "invalid_request"
    default:
      return "internal"
  }
}

/** `POST /token`: RFC 8693 token exchange, with one audit event whatever comes of it. */
const exchange = (payload: TokenRequest) =>
  Effect.contextWithEffect((context: Context.Context<HttpServerRequest.HttpServerRequest | BrokerState>) => {
    const request = Context.get(context, HttpServerRequest.HttpServerRequest)
    const state = Context.get(context, BrokerState)
    // Set by the HTTP edge around the router for every request.
    const requestId = Context.get(context, RequestId)
    const event: Event = { event: "broker.token_exchange", time: "", requestId, outcome: "refused" }
    const run = state.ready ? exchangeWith(state, request, payload, event) : Effect.fail(notReady())
    return Effect.onExit(run, (exit) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          event.time = new Date(clock.unsafeCurrentTimeMillis()).toISOString()
          if (Exit.isFailure(exit)) {
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            event.outcome = "refused"
            event.code = failure !== undefined ? codeOf(failure as BrokerProblem) : "internal"
            event.reason ??= reasonOf(failure, state.ready)
          }
          state.audit(event)
        })
      )
    )
  })

/** One walk of every page of an app's installations. */
interface Listed {
  readonly items: ReadonlyArray<Installation>
  /** How many pages (issuer requests) it took. */
  readonly pages: number
}

/** Walks every page of the app's installations now, each page counted against the broker-wide issuer budget. */
const walkInstallations = (state: Ready, sdk: AppSdk) =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const items: Array<Installation> = []
    let cursor: string | undefined
    let pages = 0
    while (pages < MAX_LIST_PAGES) {
      yield* spend(sdk.issuerBudget, { binding: state.shared.issuer, key: `app:${sdk.appId}` })
      const page = yield* sdk.client
        .listInstallations({ limit: sdk.listings.pageSize, ...(cursor === undefined ? {} : { cursor }) })
        .pipe(
          Effect.catchAll(
            (e): Effect.Effect<never, Unavailable | RateLimited> =>
              e._tag === "RateLimited" ? Effect.fail(e as RateLimited) : issuerFailed(e, "listing installations")
          )
        )
      pages++
      items.push(...page.items)
      if (page.nextCursor === undefined || page.items.length === 0) break
      cursor = page.nextCursor
    }
    sdk.listings.cached = { at: now, items }
    sdk.listings.lastPages = pages
    return { items, pages } satisfies Listed
  })

/**
 * Every installation of the app, all pages: from the short cache, from the walk another request
 * already started (single flight: concurrent listings on a cold cache cost the issuer one walk,
 * not one each), or walked now. A caller that starts a walk pays for it first — as many units as
 * the last walk took, `reserve` refusing it (429) before any page is asked for when that is beyond
 * its allowance — and then for any pages beyond that. Says how many pages this caller caused.
 */
const allInstallations = (
  state: Ready,
  sdk: AppSdk,
  reserve: (pages: number) => Effect.Effect<void, RateLimited>
): Effect.Effect<Listed, Unavailable | RateLimited> =>
  Effect.gen(function* () {
    const fresh = (now: number) => {
      const cached = sdk.listings.cached
      return cached !== undefined && now - cached.at < LIST_CACHE_SECONDS * 1000 ? cached.items : undefined
    }
    /** The listing at hand without walking: the cache's, or that of the walk under way. */
    const atHand = Effect.gen(function* () {
      const cached = fresh(yield* Clock.currentTimeMillis)
      if (cached !== undefined) return cached
      const under = sdk.listings.walking
      return under === undefined ? undefined : (yield* Deferred.await(under)).items
    })
    const before = yield* atHand
    if (before !== undefined) return { items: before, pages: 0 }
    yield* reserve(sdk.listings.lastPages)
    // Reserving may have waited on a shared limiter: another request may have started the walk meanwhile.
    const after = yield* atHand
    if (after !== undefined) return { items: after, pages: 0 }
    const walking = yield* Deferred.make<Listed, Unavailable | RateLimited>()
    sdk.listings.walking = walking
    // The walk runs on its own fiber: a caller that goes away does not cancel it for those waiting on it.
    yield* Effect.forkDaemon(
      Effect.flatMap(Effect.exit(walkInstallations(state, sdk)), (exit) => {
        if (sdk.listings.walking === walking) sdk.listings.walking = undefined
        return Deferred.done(walking, exit)
      })
    )
    return yield* Deferred.await(walking)
  })

/**
 * `GET /installations`: every installation the caller's listing policies reach. The caller pays
 * for what its listing cost the issuer — one unit per page walked (at least one per request),
 * reserved before the walk — so listing in a loop, or many listings at once, over thousands of
 * installations cannot use up the app's budget at the issuer.
 */
const installations = Effect.gen(function* () {
  const state = yield* readyState
  const request = yield* HttpServerRequest.HttpServerRequest
  const caller = yield* authenticate(state, request, yield* bearerOf(request))
  yield* limit(state, caller)
  const { policies } = yield* state.policies.current(yield* Clock.currentTimeMillis)
  const allowed = listing(policies, caller)
  if (allowed.length === 0)
    return yield* new UnauthorizedClient({ detail: "No trust policy lets this caller list", reason: "no_policy" })
  // Units charged to the caller so far (the first was taken by `limit`), and what its walks cost.
  let paid = 1
  let cost = 0
  /** Charges the caller up to `total` units; `refuse`: 429 when that is beyond its allowance. */
  const chargeUpTo = (total: number, refuse: boolean) =>
    Effect.gen(function* () {
      if (total <= paid) return
      const units = total - paid
      paid = total
      const decision = state.callers.take(callerKey(caller), yield* Clock.currentTimeMillis, units)
      const shared = yield* RateLimit.takeShared(state.shared.callers, callerKey(caller), units)
      if (!refuse) return
      if (!decision.allowed)
        return yield* new RateLimited({
          detail: "Too many requests from this caller: a listing costs one unit per page",
          retryAfter: decision.retryAfterSeconds
        })
      if (!shared)
        return yield* new RateLimited({
          detail: "Too many requests from this caller: a listing costs one unit per page",
          retryAfter: RateLimit.BINDING_PERIOD_SECONDS
        })
    })
  const items: Array<Installation> = []
  // Each app the caller's listing policies name, listed once.
  for (const appId of new Set(allowed.map((p) => p.app ?? state.settings.appId))) {
    const mine = allowed.filter((p) => (p.app ?? state.settings.appId) === appId)
    const listed = yield* allInstallations(state, state.apps.get(appId)!, (pages) => chargeUpTo(cost + pages, true))
    cost += listed.pages
    // Pages beyond what was reserved are charged now, for the next request.
    yield* chargeUpTo(cost, false)
    items.push(...listed.items.filter((i) => mine.some((p) => reaches(p, i.id))))
  }
  return { items }
})

const BrokerLive = HttpApiBuilder.group(BrokerApi, "broker", (handlers) =>
  Effect.succeed(
    handlers.handle("token", ({ payload }) => exchange(payload)).handle("installations", () => installations)
  )
)

/**
 * A policy document as the operator API takes it: decoded as BROKER_POLICIES is, and an identity
 * token policy only where the broker can check tokens (a trusted issuer, an audience).
 */
const validatePolicies = (settings: BrokerSettings, policies: unknown) => {
  if (!Array.isArray(policies)) return Either.left(["policies: must be a JSON array of policies"])
  const decoded = decodePolicyArray(
    policies,
    settings.oidcIssuers,
    "policies",
    settings.apps.map((a) => a.appId)
  )
  if (Either.isRight(decoded) && settings.audience === undefined && decoded.right.some((p) => "issuer" in p.identity))
    return Either.left(["policies: BROKER_AUDIENCE is not set, so identity-token policies cannot be checked"])
  return decoded
}

/** The key wrong operator tokens count against when the request carries no client address. */
const NO_ADDRESS_KEY = "operator:no-address"
/** Failed operator authentications audited per client address: at most one per this many ms. */
const OPERATOR_AUDIT_MILLIS = 1000

/**
 * The operator: `Authorization: Bearer <BROKER_ADMIN_TOKEN>`, compared in constant time, checked
 * before the request is decoded (the {@link OperatorAuth} middleware). Wrong tokens count as failed
 * attempts of the client address — of one fixed key when the request carries none — and are 429
 * past the limit; each is audited (`broker.operator_authenticate`, never the value presented, at
 * most one event per address per second). The API is off (403 admin_disabled) without a token of
 * at least 32 characters.
 */
const operatorCheck = (state: Ready, audited: Map<string, number>) =>
  Effect.gen(function* () {
    const expected = state.settings.adminToken
    if (expected === undefined)
      return yield* new AdminDisabled({
        detail: `The operator API is disabled: no BROKER_ADMIN_TOKEN of at least ${MIN_ADMIN_TOKEN_LENGTH} characters is configured`
      })
    const request = yield* HttpServerRequest.HttpServerRequest
    const forwarded = request.headers["cf-connecting-ip"]
    const address = forwarded === undefined ? undefined : addressKey(forwarded)
    const key = address ?? NO_ADDRESS_KEY
    const now = yield* Clock.currentTimeMillis
    const failed = <E extends InvalidToken | InvalidRequest | RateLimited>(error: E) =>
      Effect.gen(function* () {
        const last = audited.get(key)
        if (last === undefined || now - last >= OPERATOR_AUDIT_MILLIS) {
          audited.delete(key)
          audited.set(key, now)
          if (audited.size > RateLimit.MAX_KEYS) audited.delete(audited.keys().next().value!)
          const requestId = yield* Effect.serviceOption(RequestId)
          state.audit({
            event: "broker.operator_authenticate",
            time: new Date(now).toISOString(),
            requestId: Option.getOrElse(requestId, () => ""),
            outcome: "failure",
            code: codeOf(error),
            ...(address === undefined ? {} : { clientAddress: address })
          })
        }
        return yield* Effect.fail(error)
      })
    const given = yield* Effect.catchAll(bearerOf(request), failed)
    if (given === undefined)
      return yield* new MissingCredentials({ detail: "Send Authorization: Bearer <BROKER_ADMIN_TOKEN>" })
    if (yield* Effect.promise(() => secretsEqual(given, Redacted.value(expected)))) return
    const seen = state.failures.take(key, now)
    if (!seen.allowed)
      return yield* failed(
        new RateLimited({ detail: "Too many failed attempts from this address", retryAfter: seen.retryAfterSeconds })
      )
    return yield* failed(new InvalidToken({ detail: "The operator token is not valid" }))
  })

/** {@link OperatorAuth} over the broker's state (not ready: 503, as every endpoint). */
const OperatorAuthLive = Layer.effect(
  OperatorAuth,
  Effect.map(BrokerState, (state) => {
    const audited = new Map<string, number>()
    return Effect.flatMap(state.ready ? Effect.succeed(state) : Effect.fail(notReady()), (ready) =>
      operatorCheck(ready, audited)
    )
  })
)

/** The policy document of what was loaded, for the wire. */
const documentOf = (loaded: PolicyStore.Loaded) => ({
  version: loaded.document.version,
  updatedAt: loaded.document.updatedAt,
  source: loaded.document.source,
  policies: loaded.document.policies
})

/** `sha256:<hex>` of the policies as stored (compact JSON, as `GET /admin/policies` shows them). */
const documentDigest = (policies: unknown) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(policies)))).pipe(
    Effect.map((d) => `sha256:${Encoding.encodeHex(new Uint8Array(d))}`)
  )

/** The version an `If-Match` names: `"<version>"` (a strong entity tag, as `ETag` shows it). */
const basedOn = (header: string | undefined): Effect.Effect<number, PreconditionRequired | InvalidRequest> => {
  if (header === undefined || header.trim() === "")
    return Effect.fail(
      new PreconditionRequired({
        detail:
          'Send If-Match: "<version>" with the version this change is based on (GET /admin/policies shows it; BROKER_POLICIES is "0")'
      })
    )
  const match = /^\s*"(\d{1,9})"\s*$/.exec(header)
  return match === null
    ? Effect.fail(new InvalidRequest({ detail: 'If-Match: must be one version, as "<version>"' }))
    : Effect.succeed(Number(match[1]))
}

const AdminLive = HttpApiBuilder.group(BrokerApi, "admin", (handlers) =>
  Effect.succeed(
    handlers
      .handle("getPolicies", () =>
        Effect.gen(function* () {
          const state = yield* readyState
          return documentOf(yield* state.policies.current(yield* Clock.currentTimeMillis))
        })
      )
      .handle("putPolicies", ({ payload, headers }) =>
        Effect.gen(function* () {
          const state = yield* readyState
          const requestId = yield* RequestId
          const now = yield* Clock.currentTimeMillis
          const time = new Date(now).toISOString()
          const digest = yield* documentDigest(payload.policies)
          const refused = (e: BrokerProblem, version?: number) =>
            Effect.sync(() =>
              state.audit({
                event: "broker.policies_update",
                time,
                requestId,
                outcome: "refused",
                code: codeOf(e),
                digest,
                ...(version === undefined ? {} : { version })
              })
            )
          const version = yield* Effect.tapError(basedOn(headers["if-match"]), (e) => refused(e))
          return yield* state.policies.put(payload.policies, version, now).pipe(
            Effect.tap((loaded) =>
              Effect.sync(() => {
                const anySubject = loaded.policies.filter((p) => p.allowAnySubject).map((p) => p.name)
                state.audit({
                  event: "broker.policies_update",
                  time,
                  requestId,
                  outcome: "success",
                  version: loaded.document.version,
                  policies: loaded.policies.map((p) => p.name),
                  digest,
                  ...(anySubject.length > 0 ? { allowAnySubject: anySubject } : {})
                })
              })
            ),
            Effect.tapError((e) => refused(e, version)),
            Effect.map(documentOf)
          )
        })
      )
  )
).pipe(Layer.provide(OperatorAuthLive))

const SystemLive = HttpApiBuilder.group(BrokerApi, "system", (handlers) =>
  Effect.sync(() => {
    const document = openApiDocument()
    return handlers
      .handle("healthz", () =>
        Effect.flatMap(
          BrokerState,
          (state): Effect.Effect<{ readonly status: "ok" } | HttpServerResponse.HttpServerResponse> =>
            state.ready
              ? Effect.succeed({ status: "ok" as const })
              : Effect.orDie(
                  HttpServerResponse.json({ status: "unavailable", problems: state.problems }, { status: 503 })
                )
        )
      )
      .handle("openapi", () => Effect.succeed(document))
      .handle("metadata", () =>
        Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
          // The issuer identifier is the URL the metadata was fetched from, less the well-known path
          // (RFC 8414 §3.3): clients compare it with the URL they discovered.
          const base = new URL(request.originalUrl, "http://broker.invalid").origin
          return {
            issuer: base,
            token_endpoint: `${base}/token`,
            grant_types_supported: [TOKEN_EXCHANGE_GRANT],
            response_types_supported: [],
            // Callers prove who they are with the subject token itself: no client authentication.
            token_endpoint_auth_methods_supported: ["none"],
            subject_token_types_supported: SUBJECT_TOKEN_TYPES,
            issued_token_types_supported: [ACCESS_TOKEN_TYPE]
          }
        })
      )
  })
)

/** The broker's routers and state, built once per bindings object (on its first request). */
const makeBackend = (env: BrokerBindings, deps: BrokerDependencies, scope: Scope.Scope) =>
  Effect.gen(function* () {
    const state = yield* Layer.build(stateLayer(env, deps))
    const app = yield* Effect.provide(routerOf(Layer.mergeAll(BrokerLive, AdminLive, SystemLive)), state)
    const runtime = (yield* Effect.provide(Effect.runtime<BrokerState>(), state)) as Runtime.Runtime<never>
    const run = runRoute(runtime)
    return {
      begin: (_request: Request, caller: BindingCaller | undefined) => caller,
      route: (request: HttpServerRequest.HttpServerRequest, requestId: string, caller: BindingCaller | undefined) =>
        run(app, request, requestId, [[ServiceCaller.key, { service: caller?.service }]]),
      clock: yield* Effect.clock,
      logDefect: (name: string) =>
        Effect.runSync(Effect.provide(Effect.logError("broker: defect while handling a request", name), runtime))
    }
  }).pipe(Scope.extend(scope))

/**
 * An error of the token endpoint for a client that accepts `application/json` but not
 * `application/problem+json` — an OAuth library, which reads RFC 6749 §5.2 error responses and
 * refuses any other content type — is labelled `application/json`. The body is the same problem
 * document, which carries RFC 6749's `error` and `error_description`.
 */
const asOAuthError = (request: Request, response: Response): Response => {
  if (response.status < 400 || !response.headers.get("content-type")?.startsWith("application/problem+json"))
    return response
  const accept = request.headers.get("accept")?.toLowerCase() ?? ""
  if (!/(^|[\s,])application\/json\b/.test(accept) || accept.includes("application/problem+json")) return response
  const headers = new Headers(response.headers)
  headers.set("content-type", "application/json")
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
}

/**
 * A request to the operator API that does not carry the operator token, without its body: the
 * edge reads and parses bodies before routing, and an unauthenticated caller must learn nothing
 * from how its body is judged (malformed JSON, too large) — it is answered 401 (or 403, 429) by
 * the operator check alone.
 */
const unreadUnlessOperator = async (request: Request, adminToken: string | undefined): Promise<Request> => {
  if (request.body === null || new URL(request.url).pathname !== "/admin/policies") return request
  const given = /^Bearer[ ]+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "")?.[1]
  if (
    given !== undefined &&
    adminToken !== undefined &&
    adminToken.length >= MIN_ADMIN_TOKEN_LENGTH &&
    (await secretsEqual(given, adminToken))
  )
    return request
  const headers = new Headers(request.headers)
  headers.delete("content-length")
  headers.delete("content-type")
  headers.delete("transfer-encoding")
  return new Request(request.url, { method: request.method, headers })
}

/** Who called over a service binding, as `index.ts` read it from `ctx.props`. */
type BindingCaller = { readonly service?: string | undefined }

/** A `fetch`-style handler; `service` is the caller's name when the request came over a service binding. */
export interface BrokerHandler {
  readonly handler: (request: Request, caller?: BindingCaller) => Promise<Response>
  readonly dispose: () => Promise<void>
}

/** Builds the broker once (per isolate, per bindings object); the first request builds its state. */
export const makeHandler = (env: BrokerBindings, deps: BrokerDependencies = {}): BrokerHandler => {
  const scope = Effect.runSync(Scope.make())
  const handler = brokerEdge.serve(() => Effect.runPromise(makeBackend(env, deps, scope)))
  return {
    handler: (request, caller) =>
      unreadUnlessOperator(request, env.BROKER_ADMIN_TOKEN)
        .then((checked) => handler(checked, caller))
        .then((response) => asOAuthError(request, response)),
    dispose: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
