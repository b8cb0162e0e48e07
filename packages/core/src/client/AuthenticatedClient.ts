/**
 * Authenticated clients for any ICR endpoint (SPEC §10): one per installation and one for the app,
 * each an Effect `HttpClient` (so every `@effect/platform` combinator composes) that
 *
 * - resolves paths against the base URL and sends `x-icr-api-version`;
 * - carries the right credential — the installation token or the app token from the cache, the App
 *   JWT on `/app/*` — and never to another origin: an absolute URL off the base, or a redirect that
 *   leaves it, is sent with no `Authorization` at all (redirects are followed here, not by `fetch`);
 * - on a 401 `invalid_token` evicts the token, mints once more and retries once (a second 401 is
 *   the caller's answer);
 * - retries with Octokit's semantics: network errors and 5xx for idempotent methods only (any
 *   method when nothing was sent: refused, unresolvable), 429 and 503 after their `Retry-After`,
 *   all on Effect's `Clock`;
 * - holds at most `concurrency` requests in flight per token, the rest queued.
 *
 * `request` and `paginate` add JSON and typed problems on top; `eachInstallation` walks every
 * installation with its client.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import type { Installation } from "../api/Installations.js"
import type { Permissions } from "../api/Permissions.js"
import { API_VERSION } from "../api/Primitives.js"
import { AnyProblem, isProblem, type Problem } from "../api/Problems.js"
import { causeChain, classify, redactSecrets } from "../internal/transport.js"
import { AppJwt } from "../sdk/AppJwt.js"
import {
  type ErrorOf,
  fetchOf,
  type IcrAppsError,
  IcrAppsClient,
  IcrAppsHttpClient,
  parseRetryAfter,
  TransportError,
  UnexpectedResponse
} from "../sdk/Client.js"
import { InstallationTokens } from "../sdk/InstallationTokens.js"
import { nextPageUrl, pageOf } from "./Pagination.js"

/** How the authenticated clients retry and throttle. */
export interface AuthenticatedClientOptions {
  /** Sent as `x-icr-api-version` (default `2023-06-16`). */
  readonly apiVersion?: string | undefined
  /** Requests in flight at once per token (default 10); the rest wait their turn, first come first served. */
  readonly concurrency?: number | undefined
  /** Attempts in all, the first included (default 4). */
  readonly maxAttempts?: number | undefined
  /** The first backoff delay (default 250 ms), doubling each time with ±20 % jitter. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** The longest backoff delay (default 10 s). */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** The longest `Retry-After` waited for (default 60 s); a longer one is answered to the caller at once. */
  readonly maxRetryAfter?: Duration.DurationInput | undefined
  /** How long one attempt may take (default 10 s). */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  /** Redirects followed at most (default 5). */
  readonly maxRedirects?: number | undefined
  /** App tokens are replaced this long before they expire (default 300 s). */
  readonly refreshMarginSeconds?: number | undefined
}

/** What one call of {@link AuthenticatedClient.request} sends. */
export interface RequestOptions {
  /** The installation whose token to send (default: the app's). */
  readonly installationId?: string | undefined
  /** Narrow the installation token to these permissions. */
  readonly permissions?: Permissions | undefined
  /** Values for `{name}` placeholders of the route. */
  readonly params?: Readonly<Record<string, string | number>> | undefined
  /** Query parameters. */
  readonly query?: Readonly<Record<string, string | number | boolean | ReadonlyArray<string> | undefined>> | undefined
  /** A JSON body. */
  readonly body?: unknown
  /** More request headers. */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/** Methods that may be sent twice (RFC 9110 §9.2.2): retried after network errors and 5xx. */
const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])
/** Failures after which the request never left this machine, so any method may be sent again. */
const NOTHING_SENT: ReadonlySet<string> = new Set(["refused", "unresolvable"])
const ATTEMPT_TIMED_OUT = "the attempt timed out"

/** Whether an error of the SDK is worth trying again later (a rate limit, an outage, the network). */
export const isRetryable = (error: unknown): boolean => {
  if (error instanceof TransportError) return error.failure !== "tls"
  if (error instanceof UnexpectedResponse) return error.status >= 500 || error.status === 408
  if (isProblem(error)) return error._tag === "RateLimited" || error._tag === "Unavailable" || error._tag === "Internal"
  return false
}

/** Whose credential a client sends. */
type Principal =
  | { readonly _tag: "App" }
  | { readonly _tag: "Installation"; readonly id: string; readonly permissions?: Permissions | undefined }

/** The credential of one attempt. */
type Credential = { readonly header: string | undefined; readonly token: Redacted.Redacted<string> | undefined }
const NO_CREDENTIAL: Credential = { header: undefined, token: undefined }

/** Whether a path under the base URL is one of the App JWT's: `/app/*`, but the token routes. */
const isAppJwtPath = (path: string): boolean => path.startsWith("/app/") && path !== "/app/installations/token"

/** A request's route as a template for spans: ids replaced by `{id}` (never a token: those travel in headers). */
const routeOf = (method: string, path: string) =>
  `${method} ${path.replace(/\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?=\/|$)/gi, "/{id}")}`

/**
 * A path parameter that would change which path is asked for: `.` or `..` (as given or once
 * percent-decoded) is a dot segment to URL parsing however it is escaped (WHATWG URL reads `%2e%2e`
 * as `..`), so `GET /orgs/{org}/x` with `org: ".."` would ask for `/x`. Refused before anything is sent.
 */
export class InvalidRequestArgument extends Data.TaggedError("InvalidRequestArgument")<{
  /** The parameter's name. */
  readonly param: string
  readonly detail: string
}> {
  override get message(): string {
    return `Invalid path parameter "${this.param}": ${this.detail}`
  }
}

/** What {@link AuthenticatedClient.request} and `paginate` fail with. */
export type RequestError = IcrAppsError | InvalidRequestArgument

const isDotSegment = (value: string): boolean => {
  if (value === "." || value === "..") return true
  try {
    const decoded = decodeURIComponent(value)
    return decoded === "." || decoded === ".."
  } catch {
    return false
  }
}

/** The first path parameter that is a dot segment, as the error refusing it. */
const badParam = (params: RequestOptions["params"]): InvalidRequestArgument | undefined => {
  if (params === undefined) return undefined
  for (const name in params) {
    if (isDotSegment(String(params[name])))
      return new InvalidRequestArgument({ param: name, detail: "a path segment may not be . or .." })
  }
  return undefined
}

export { redactSecrets } from "../internal/transport.js"

/** A route template with its `{name}` placeholders filled (URI-encoded); unknown ones stay. */
const fill = (template: string, params: RequestOptions["params"]) =>
  params === undefined
    ? template
    : template.replace(/\{(\w+)\}/g, (whole, name: string) => {
        const value = params[name]
        return value === undefined ? whole : encodeURIComponent(String(value))
      })

/** Query parameters onto a URL (arrays as repeated names, `undefined` left out). */
const appendQuery = (url: URL, query: NonNullable<RequestOptions["query"]>) => {
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue
    if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, item)
    else url.searchParams.set(k, String(v))
  }
}

/** What the fast path got: the answer's JSON, an answer to carry on from, or nothing (send it again). */
export type FastOutcome =
  | { readonly _tag: "Done"; readonly body: unknown }
  | {
      readonly _tag: "From"
      readonly request: HttpClientRequest.HttpClientRequest
      readonly response: HttpClientResponse.HttpClientResponse
      /** The token the fast path sent: the one a 401 refused (not whatever is cached by then). */
      readonly sent: Redacted.Redacted<string>
    }
  | { readonly _tag: "Again" }

/**
 * At most `size` holders at once, the others queued in order. Plain code (not an Effect semaphore) so
 * the Promise fast path can take a permit synchronously and the Effect path shares the same count.
 */
class Gate {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor(private readonly size: number) {}
  tryAcquire(): boolean {
    if (this.active >= this.size) return false
    this.active++
    return true
  }
  /** Hands the permit to the next in line, or frees it. */
  release(): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.active--
  }
  /** Runs `effect` holding a permit, waiting in line for one (interruptible while it waits). */
  with<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    const acquire = Effect.async<void>((resume) => {
      if (this.tryAcquire()) return resume(Effect.void)
      let granted = false
      const grant = () => {
        granted = true
        resume(Effect.void)
      }
      this.waiting.push(grant)
      return Effect.sync(() => {
        const at = this.waiting.indexOf(grant)
        if (at >= 0) this.waiting.splice(at, 1)
        else if (granted) this.release() // handed a permit just as it was interrupted: pass it on
      })
    })
    return Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(acquire),
        Effect.ensuring(
          restore(effect),
          Effect.sync(() => this.release())
        )
      )
    )
  }
}

/** The authenticated clients of one app. */
export class AuthenticatedClient extends Context.Tag("@icr-apps/core/AuthenticatedClient")<
  AuthenticatedClient,
  {
    /** The client of one installation: its installation token (narrowed to `permissions` when given). */
    readonly installation: (
      installationId: string,
      options?: { readonly permissions?: Permissions | undefined }
    ) => HttpClient.HttpClient
    /** The app's client: its app token, and the App JWT on `/app/*`. */
    readonly app: HttpClient.HttpClient
    /**
     * `"METHOD /path"` with the app's or an installation's credential: the parsed JSON body (or
     * `undefined` for an empty one), or the problem as its typed error.
     */
    readonly request: (route: string, options?: RequestOptions) => Effect.Effect<unknown, RequestError>
    /** The Promise facade's fast path (see `make`); `undefined` when the call does not qualify. */
    readonly unsafeRequest: (route: string, options: RequestOptions) => Promise<FastOutcome> | undefined
    /**
     * Carries on from what {@link unsafeRequest} got: an answer (`From`) is handled from there (its
     * 401 refreshes the token that was sent); `Again` is sent through the Effect path, never the fast one.
     */
    readonly requestFrom: (
      route: string,
      options: RequestOptions,
      outcome: Exclude<FastOutcome, { readonly _tag: "Done" }>
    ) => Effect.Effect<unknown, RequestError>
    /**
     * Every item of a list endpoint, page by page (following `Link: rel="next"` or `nextCursor`),
     * with the same options as {@link request}.
     */
    readonly paginate: (route: string, options?: RequestOptions) => Stream.Stream<unknown, RequestError>
    /** Every installation, each with its client. */
    readonly eachInstallation: (options?: {
      readonly permissions?: Permissions | undefined
    }) => Stream.Stream<
      { readonly installation: Installation; readonly client: HttpClient.HttpClient },
      ErrorOf<"listInstallations">
    >
    /** `DELETE /app/installations/token` for `token`, and forgets it wherever this app cached it. */
    readonly revokeAccessToken: (
      token: Redacted.Redacted<string> | string
    ) => Effect.Effect<void, ErrorOf<"revokeAccessToken">>
  }
>() {}

/** Builds the clients over the SDK's services. */
export const make = (options: AuthenticatedClientOptions = {}) =>
  Effect.gen(function* () {
    const sdk = yield* IcrAppsClient
    const tokens = yield* InstallationTokens
    const jwt = yield* AppJwt
    // This module's "icr.request" span is the request's span: the platform's own per-request span
    // (and its trace headers) would double the tracing cost of every call for nothing new.
    const given = yield* IcrAppsHttpClient
    const transport = HttpClient.withTracerDisabledWhen(given, () => true)
    const baseUrl = sdk.baseUrl.replace(/\/+$/, "")
    const base = new URL(`${baseUrl}/`)
    const apiVersion = options.apiVersion ?? API_VERSION
    const concurrency = Math.max(1, options.concurrency ?? 10)
    const maxAttempts = Math.max(1, options.maxAttempts ?? 4)
    const baseDelay = Duration.toMillis(options.baseDelay ?? "250 millis")
    const maxDelay = Duration.toMillis(options.maxDelay ?? "10 seconds")
    const maxRetryAfter = Duration.toMillis(options.maxRetryAfter ?? "60 seconds")
    const attemptTimeout = options.attemptTimeout ?? "10 seconds"
    const attemptTimeoutMillis = Duration.toMillis(attemptTimeout)
    const maxRedirects = options.maxRedirects ?? 5
    const margin = (options.refreshMarginSeconds ?? 300) * 1000
    const manualRedirects: RequestInit = { redirect: "manual" }

    // --- the app token: cached here, one mint at a time ---------------------------------------
    let appToken: { readonly token: Redacted.Redacted<string>; readonly expiresAt: number } | undefined
    let appMint: Deferred.Deferred<Redacted.Redacted<string>, IcrAppsError> | undefined
    /** The app token; given the one a 401 refused, a different one (the cached one if it already is, else a fresh mint). */
    const appTokenGet = (refused?: Redacted.Redacted<string>): Effect.Effect<Redacted.Redacted<string>, IcrAppsError> =>
      Effect.clockWith((clock) => {
        const held = appToken
        if (
          held !== undefined &&
          held.expiresAt - margin > clock.unsafeCurrentTimeMillis() &&
          (refused === undefined || Redacted.value(held.token) !== Redacted.value(refused))
        ) {
          return Effect.succeed(held.token)
        }
        if (appMint !== undefined) return Deferred.await(appMint)
        const deferred = Deferred.unsafeMake<Redacted.Redacted<string>, IcrAppsError>(Effect.runSync(Effect.fiberId))
        appMint = deferred
        return sdk.createAppAccessToken().pipe(
          Effect.map((minted) => {
            appToken = { token: minted.token, expiresAt: minted.expiresAt.epochMillis }
            return minted.token
          }),
          Effect.withSpan("icr.token.mint", { captureStackTrace: false, attributes: { "icr.token.kind": "app" } }),
          Effect.exit,
          Effect.flatMap((exit) => {
            appMint = undefined
            return Effect.zipRight(Deferred.done(deferred, exit), exit)
          })
        )
      })

    /** The installation token; given the one a 401 refused, evicts it and gets another (minting once). */
    const installationTokenGet = (
      principal: Extract<Principal, { _tag: "Installation" }>,
      refused?: Redacted.Redacted<string>
    ): Effect.Effect<Redacted.Redacted<string>, IcrAppsError> => {
      const opts = { permissions: principal.permissions }
      if (refused === undefined) {
        return Effect.clockWith((clock) => {
          const hit = tokens.unsafePeek(principal.id, opts, clock.unsafeCurrentTimeMillis())
          if (hit !== undefined) return Effect.succeed(hit.token)
          return Effect.map(
            tokens.get(principal.id, opts).pipe(
              Effect.withSpan("icr.token", {
                captureStackTrace: false,
                attributes: { "icr.installation_id": principal.id, "icr.cache": "miss" }
              })
            ),
            (t) => t.token
          )
        })
      }
      return Effect.gen(function* () {
        yield* tokens.evict(refused)
        // Another request may have replaced it already: then use that one, minting nothing.
        const current = yield* tokens.get(principal.id, opts)
        if (Redacted.value(current.token) !== Redacted.value(refused)) return current.token
        return (yield* tokens.get(principal.id, { ...opts, refresh: true })).token
      }).pipe(
        Effect.withSpan("icr.token.refresh", {
          captureStackTrace: false,
          attributes: { "icr.installation_id": principal.id }
        })
      )
    }

    // --- one gate per token principal (shared by the Effect path and the Promise fast path) ------
    const gates = new Map<string, Gate>()
    const gateOf = (principal: Principal) => {
      const key =
        principal._tag === "App"
          ? "app"
          : `${principal.id.toLowerCase()}\n${JSON.stringify(principal.permissions ?? null)}`
      let gate = gates.get(key)
      if (gate === undefined) {
        gate = new Gate(concurrency)
        gates.set(key, gate)
      }
      return gate
    }

    /** Whether a request to `url` (on the base origin) carries the App JWT: `/app/*` (normalised) but the token routes. */
    const takesAppJwt = (url: URL): boolean => {
      const path = url.pathname.startsWith(base.pathname)
        ? `/${url.pathname.slice(base.pathname.length)}`
        : url.pathname
      return isAppJwtPath(path)
    }

    /** The credential a request to `url` carries: none off the base origin; the App JWT on `/app/*` but the token routes. */
    const credentialFor = (
      principal: Principal,
      url: URL,
      refused?: Redacted.Redacted<string>
    ): Effect.Effect<Credential, IcrAppsError> => {
      if (url.origin !== base.origin) return Effect.succeed(NO_CREDENTIAL)
      if (takesAppJwt(url)) {
        return Effect.map(jwt.get, (t) => ({ header: `Bearer ${Redacted.value(t)}`, token: undefined }))
      }
      const token = principal._tag === "App" ? appTokenGet(refused) : installationTokenGet(principal, refused)
      return Effect.map(token, (t) => ({ header: `Bearer ${Redacted.value(t)}`, token: t }))
    }

    /** The full URL of a request: a path (or a relative one) under the base URL; an absolute URL as it is. */
    const resolve = (request: HttpClientRequest.HttpClientRequest): URL => {
      const raw = request.url
      const url = /^[a-z][a-z0-9+.-]*:/i.test(raw)
        ? new URL(raw)
        : new URL(`${baseUrl}${raw.startsWith("/") ? raw : `/${raw}`}`)
      for (const [k, v] of request.urlParams) url.searchParams.append(k, v)
      if (request.hash._tag === "Some") url.hash = request.hash.value
      return url
    }

    const direct = fetchOf(given)
    /** One request as it goes out: straight to `fetch` when the SDK's transport is one (no redirect following). */
    const sendWire = (
      request: HttpClientRequest.HttpClientRequest,
      href: string,
      own: Record<string, string>,
      timerMillis: number | undefined
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> => {
      const body = request.body
      if (direct !== undefined && (body._tag === "Empty" || body._tag === "Uint8Array" || body._tag === "Raw")) {
        const headers: Record<string, string> = {}
        for (const name in request.headers) if (name !== "authorization") headers[name] = request.headers[name]!
        Object.assign(headers, own)
        const init: RequestInit = {
          method: request.method,
          headers,
          redirect: "manual",
          ...(body._tag === "Empty" ? {} : { body: body.body as BodyInit })
        }
        return Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>((resume) => {
          const controller = new AbortController()
          init.signal = controller.signal
          // On the live clock, the attempt's deadline is a plain timer (Effect.timeoutFail costs a
          // fiber race per request); on any other clock (a TestClock) sendOnce times it instead.
          const timer =
            timerMillis === undefined
              ? undefined
              : setTimeout(() => {
                  controller.abort()
                  resume(
                    Effect.fail(
                      new HttpClientError.RequestError({ request, reason: "Transport", description: ATTEMPT_TIMED_OUT })
                    )
                  )
                }, timerMillis)
          direct(href, init).then(
            (response) => {
              if (timer !== undefined) clearTimeout(timer)
              const wrapped = HttpClientResponse.fromWeb(request, response)
              webOf.set(wrapped, response)
              resume(Effect.succeed(wrapped))
            },
            (cause) => {
              if (timer !== undefined) clearTimeout(timer)
              resume(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause })))
            }
          )
          return Effect.sync(() => {
            if (timer !== undefined) clearTimeout(timer)
            controller.abort()
          })
        })
      }
      const sent = HttpClientRequest.make(request.method)(href, {
        headers: Headers.setAll(Headers.remove(request.headers, "authorization"), own),
        body: request.body
      })
      return Effect.provideService(transport.execute(sent), FetchHttpClient.RequestInit, manualRedirects)
    }

    /** One attempt: sends (following redirects, dropping the credential once one leaves the origin). */
    const sendOnce = (
      request: HttpClientRequest.HttpClientRequest,
      url: URL,
      credential: Credential,
      timerMillis: number | undefined
    ): Effect.Effect<
      { readonly response: HttpClientResponse.HttpClientResponse; readonly credentialSent: boolean },
      HttpClientError.HttpClientError
    > => {
      const attempt = Effect.gen(function* () {
        let current = request
        let at = url
        let header = credential.header
        for (let hop = 0; ; hop++) {
          // Rebuilt each hop: only this client decides the Authorization header (a caller's own is dropped too).
          const headers: Record<string, string> = { "x-icr-api-version": apiVersion }
          if (header !== undefined) headers.authorization = header
          const response = yield* sendWire(current, at.href, headers, timerMillis)
          const location = response.headers.location
          // Whether the answer is to the credential: a 401 from where it was not sent says nothing of it.
          if (!REDIRECTS.has(response.status) || location === undefined || hop >= maxRedirects)
            return { response, credentialSent: header !== undefined }
          const next = new URL(location, at)
          // Leaving the base origin ends the credential for the rest of the chain (even back again).
          if (next.origin !== base.origin) header = undefined
          if (
            response.status === 303 ||
            ((response.status === 301 || response.status === 302) && current.method === "POST")
          ) {
            current = HttpClientRequest.setMethod(HttpClientRequest.setBody(current, HttpBody.empty), "GET")
          }
          at = next
        }
      })
      return timerMillis !== undefined && direct !== undefined
        ? attempt
        : Effect.timeoutFail(attempt, {
            duration: attemptTimeout,
            onTimeout: () =>
              new HttpClientError.RequestError({ request, reason: "Transport", description: ATTEMPT_TIMED_OUT })
          })
    }

    const backoff = (attempt: number) =>
      Effect.map(Random.nextRange(0.8, 1.2), (jitter) =>
        Math.round(Math.min(maxDelay, baseDelay * 2 ** (attempt - 1)) * jitter)
      )
    const pause = (millis: number, why: string, attempt: number) =>
      Effect.sleep(Duration.millis(millis)).pipe(
        Effect.withSpan("icr.retry", {
          captureStackTrace: false,
          attributes: { "icr.retry.reason": why, "icr.retry.attempt": attempt, "icr.retry.delay_ms": millis }
        })
      )

    /** Sends with retries, the 401 refresh and the concurrency cap. */
    const execute = (
      principal: Principal,
      request: HttpClientRequest.HttpClientRequest,
      prefetched?: {
        readonly response: HttpClientResponse.HttpClientResponse
        readonly sent: Redacted.Redacted<string>
      }
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError | IcrAppsError> => {
      const url = resolve(request)
      const method = request.method
      const gate = gateOf(principal)
      const idempotent = IDEMPOTENT.has(method)
      const span = {
        captureStackTrace: false,
        kind: "client" as const,
        attributes: {
          "http.request.method": method,
          "icr.route": routeOf(method, url.origin === base.origin ? url.pathname : "(other origin)"),
          ...(principal._tag === "Installation" ? { "icr.installation_id": principal.id } : {})
        }
      }
      return Effect.gen(function* () {
        const timerMillis = (yield* Effect.clock) === liveClock() ? attemptTimeoutMillis : undefined
        let refused: Redacted.Redacted<string> | undefined
        let refreshed = false
        // The answer the fast path already got stands for the first attempt, once.
        let pending = prefetched
        for (let attempt = 1; ; attempt++) {
          // The prefetched answer was to the token the fast path sent: a 401 refuses that one, not
          // whatever is cached by now (another call may have refreshed it already).
          const credential: Credential =
            pending !== undefined
              ? { header: undefined, token: pending.sent }
              : yield* credentialFor(principal, url, refused)
          const outcome = yield* Effect.either(
            pending !== undefined
              ? Effect.succeed({ response: pending.response, credentialSent: true })
              : gate.with(sendOnce(request, url, credential, timerMillis))
          )
          pending = undefined
          if (Either.isLeft(outcome)) {
            const error = outcome.left
            const failure =
              error._tag === "RequestError" && error.reason === "Transport"
                ? error.description === ATTEMPT_TIMED_OUT
                  ? "timeout"
                  : classify(causeChain(error.cause))
                : undefined
            // A POST is sent again only when it never left (refused, unresolvable): else it may have been done.
            if (failure !== undefined && attempt < maxAttempts && (idempotent || NOTHING_SENT.has(failure))) {
              yield* pause(yield* backoff(attempt), failure, attempt)
              continue
            }
            return yield* Effect.fail(error)
          }
          const { response, credentialSent } = outcome.right
          const status = response.status
          if (status === 401 && credential.token !== undefined && credentialSent && !refreshed) {
            const text = yield* textOf(response)
            if (codeIn(text) === "invalid_token") {
              refreshed = true
              refused = credential.token
              attempt-- // the refresh is not a retry of a transient failure
              continue
            }
            return reread(response, text)
          }
          refused = undefined
          const retryable =
            status === 429 ||
            (idempotent && (status === 408 || status === 500 || status === 502 || status === 503 || status === 504))
          if (!retryable || attempt >= maxAttempts) return response
          const now = yield* Clock.currentTimeMillis
          const after = parseRetryAfter(response.headers["retry-after"], now)
          if (Option.isSome(after) && after.value > maxRetryAfter) return response
          const delay = Option.isSome(after) ? after.value : yield* backoff(attempt)
          yield* pause(delay, String(status), attempt)
        }
      }).pipe(
        Effect.tap((response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)),
        Effect.withSpan("icr.request", span)
      )
    }

    const clientOf = (principal: Principal): HttpClient.HttpClient =>
      HttpClient.makeWith(
        (request: Effect.Effect<HttpClientRequest.HttpClientRequest, never, never>) =>
          Effect.flatMap(request, (r) => execute(principal, r)),
        Effect.succeed
      ) as unknown as HttpClient.HttpClient

    const app = clientOf({ _tag: "App" })
    const installation = (installationId: string, opts: { readonly permissions?: Permissions | undefined } = {}) =>
      clientOf({ _tag: "Installation", id: installationId, permissions: opts.permissions })

    const clientFor = (opts: RequestOptions) =>
      opts.installationId === undefined ? app : installation(opts.installationId, { permissions: opts.permissions })

    /** The request a route and its options describe. */
    const build = (route: string, opts: RequestOptions) => {
      const match = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(route)
      const [method, template] = match === null ? ["GET", route.trim()] : [match[1]!.toUpperCase(), match[2]!]
      const url = resolve(HttpClientRequest.get(fill(template, opts.params)))
      if (opts.query !== undefined) appendQuery(url, opts.query)
      let request = HttpClientRequest.make(method as "GET")(url.href, {
        headers: { accept: "application/json", ...opts.headers }
      })
      if (opts.body !== undefined) request = HttpClientRequest.bodyUnsafeJson(request, opts.body)
      return request
    }

    /** The JSON of a 2xx answer, or its problem (or an {@link UnexpectedResponse}) as the failure. */
    const readJson = (request: HttpClientRequest.HttpClientRequest, response: HttpClientResponse.HttpClientResponse) =>
      Effect.gen(function* () {
        const text = yield* textOf(response)
        let body: unknown
        try {
          body = text.trim() === "" ? undefined : JSON.parse(text)
        } catch {
          body = undefined
          if (response.status < 300) {
            return yield* Effect.fail(
              new UnexpectedResponse({
                status: response.status,
                method: request.method,
                url: request.url,
                detail: "the body is not JSON"
              })
            )
          }
        }
        if (response.status >= 200 && response.status < 300) return body
        const problem = Schema.decodeUnknownOption(AnyProblem)(body)
        if (Option.isSome(problem)) return yield* Effect.fail(problem.value as Problem)
        return yield* Effect.fail(
          new UnexpectedResponse({
            status: response.status,
            method: request.method,
            url: request.url,
            detail: "the answer is not a problem document this SDK knows"
          })
        )
      })

    const transportError = (e: HttpClientError.HttpClientError | IcrAppsError): IcrAppsError => {
      if (e instanceof HttpClientError.RequestError) {
        const chain = causeChain(e.cause)
        return new TransportError({
          method: e.request.method,
          url: e.request.url,
          failure: e.description === ATTEMPT_TIMED_OUT ? "timeout" : classify(chain),
          // A custom fetch's error may quote the request, its Authorization header included.
          cause: redactSecrets(e.description ?? chain[0] ?? e.reason).slice(0, 200)
        })
      }
      if (e instanceof HttpClientError.ResponseError) {
        return new UnexpectedResponse({
          status: e.response.status,
          method: e.request.method,
          url: e.request.url,
          detail: e.description ?? e.reason
        })
      }
      return e
    }

    const send = (client: HttpClient.HttpClient, request: HttpClientRequest.HttpClientRequest) =>
      client.execute(request).pipe(
        Effect.flatMap((response) => Effect.map(readJson(request, response), (body) => ({ body, response }))),
        Effect.mapError(transportError)
      ) as Effect.Effect<
        { readonly body: unknown; readonly response: HttpClientResponse.HttpClientResponse },
        IcrAppsError
      >

    const slowRequest = (route: string, opts: RequestOptions): Effect.Effect<unknown, RequestError> => {
      const bad = badParam(opts.params)
      if (bad !== undefined) return Effect.fail(bad)
      return Effect.map(send(clientFor(opts), build(route, opts)), ({ body }) => body)
    }
    /**
     * With nothing to observe it (the default tracer) and real time (the live clock), a call that
     * qualifies takes the fast path (see {@link unsafeRequest}); else, and for anything but a 2xx,
     * the Effect path with its spans, `Clock` and typed errors.
     */
    const request: AuthenticatedClient["Type"]["request"] = (route, opts = {}) =>
      Effect.flatMap(Effect.tracer, (tracer) =>
        Effect.clockWith((clock) => {
          const fast = tracer === defaultTracer() && clock === liveClock() ? unsafeRequest(route, opts) : undefined
          if (fast === undefined) return slowRequest(route, opts)
          return Effect.flatMap(
            Effect.promise(() => fast),
            (outcome): Effect.Effect<unknown, RequestError> =>
              outcome._tag === "Done" ? Effect.succeed(outcome.body) : requestFrom(route, opts, outcome)
          )
        })
      )

    const principalOf = (opts: RequestOptions): Principal =>
      opts.installationId === undefined
        ? { _tag: "App" }
        : { _tag: "Installation", id: opts.installationId, permissions: opts.permissions }

    /**
     * The Promise facade's fast path for the common call — a `GET` or `HEAD` with its token already
     * cached and a free permit, over `fetch` — sent at once, with no fiber: a 2xx is answered here;
     * any other answer is handed on (`requestFrom`) to be handled from that answer (a 401 refresh, a
     * `Retry-After`) without sending it again; a redirect or a network error is sent again through the
     * Effect path (safe: the method is idempotent). `undefined` when the call does not qualify.
     */
    const unsafeRequest = (route: string, opts: RequestOptions): Promise<FastOutcome> | undefined => {
      if (direct === undefined || opts.body !== undefined) return undefined
      // Only the plainest spelling: "GET /path" under the base URL, off /app/ (the App JWT's routes).
      const match = /^(GET|HEAD) (\/\S*)$/.exec(route)
      if (match === null) return undefined
      const method = match[1]!
      if (badParam(opts.params) !== undefined) return undefined // the Effect path refuses it, typed
      const path = fill(match[2]!, opts.params)
      if (path.includes("{")) return undefined
      let href = baseUrl + path
      // Decided on the path as it will be sent, as the Effect path decides it. A path with no dot,
      // escape, backslash, query or fragment is sent as written (URL parsing would change nothing),
      // so the common call skips the parse; any other is parsed (`/x/../app/…` is `/app/…`).
      if (opts.query !== undefined || /[.%\\?#]/.test(path)) {
        let url: URL
        try {
          url = new URL(href)
        } catch {
          return undefined
        }
        if (url.origin !== base.origin || takesAppJwt(url)) return undefined
        if (opts.query !== undefined) appendQuery(url, opts.query)
        href = url.href
      } else if (isAppJwtPath(path)) return undefined
      const principal = principalOf(opts)
      const now = Date.now()
      let token: Redacted.Redacted<string> | undefined
      if (principal._tag === "App") {
        token = appToken !== undefined && appToken.expiresAt - margin > now ? appToken.token : undefined
      } else {
        token = tokens.unsafePeek(principal.id, { permissions: principal.permissions }, now)?.token
      }
      if (token === undefined) return undefined
      const gate = gateOf(principal)
      if (!gate.tryAcquire()) return undefined
      const headers: Record<string, string> = { accept: "application/json" }
      for (const name in opts.headers) headers[name.toLowerCase()] = opts.headers[name]!
      headers.authorization = `Bearer ${Redacted.value(token)}`
      headers["x-icr-api-version"] = apiVersion
      let released = false
      const release = () => {
        if (!released) {
          released = true
          gate.release()
        }
      }
      return direct(href, {
        method,
        headers,
        redirect: "manual",
        signal: AbortSignal.timeout(attemptTimeoutMillis)
      }).then(
        async (response): Promise<FastOutcome> => {
          release()
          if (response.status >= 300 && response.status < 400) return { _tag: "Again" }
          if (response.status < 200 || response.status >= 300) {
            const request = build(route, opts)
            return { _tag: "From", response: HttpClientResponse.fromWeb(request, response), request, sent: token }
          }
          const text = await response.text().catch(() => undefined)
          if (text === undefined) return { _tag: "Again" } // a GET: safe to send again
          if (text.trim() === "") return { _tag: "Done", body: undefined }
          try {
            return { _tag: "Done", body: JSON.parse(text) as unknown }
          } catch {
            const copy = new Response(text, { status: response.status, headers: response.headers })
            const request = build(route, opts)
            return { _tag: "From", response: HttpClientResponse.fromWeb(request, copy), request, sent: token }
          }
        },
        (): FastOutcome => {
          release()
          return { _tag: "Again" }
        }
      )
    }

    /**
     * Carries on from what the fast path got: an answer, handled from there; `Again` (a redirect, a
     * network error, an unreadable body) through the Effect path, so the fast path is not tried twice.
     */
    const requestFrom: AuthenticatedClient["Type"]["requestFrom"] = (route, opts, outcome) => {
      if (outcome._tag === "Again") return slowRequest(route, opts)
      const { request, response, sent } = outcome
      return execute(principalOf(opts), request, { response, sent }).pipe(
        Effect.flatMap((answer) => readJson(request, answer)),
        Effect.mapError(transportError)
      ) as Effect.Effect<unknown, IcrAppsError>
    }

    const paginate: AuthenticatedClient["Type"]["paginate"] = (route, opts = {}) => {
      const bad = badParam(opts.params)
      if (bad !== undefined) return Stream.fail(bad)
      const client = clientFor(opts)
      const first = build(route, opts)
      // Per run of the stream: the pages asked for, so a server naming a page again ends the walk
      // instead of looping it forever.
      return Stream.suspend(() => {
        const asked = new Set<string>([first.url])
        return Stream.paginateChunkEffect(first as HttpClientRequest.HttpClientRequest, (current) =>
          Effect.map(send(client, current), ({ body, response }) => {
            const page = pageOf(body)
            const next = nextPageUrl(current.url, response.headers.link, page)
            const fresh = next !== undefined && !asked.has(next)
            if (fresh) asked.add(next)
            return [
              Chunk.fromIterable(page.items),
              fresh ? Option.some(HttpClientRequest.setUrl(current, next)) : Option.none()
            ] as const
          })
        )
      })
    }

    const codeOf = (token: Redacted.Redacted<string> | string) =>
      Redacted.isRedacted(token) ? Redacted.value(token) : token

    return AuthenticatedClient.of({
      installation,
      app,
      request,
      unsafeRequest,
      requestFrom,
      paginate,
      eachInstallation: (opts = {}) =>
        Stream.map(sdk.installations(), (i) => ({ installation: i, client: installation(i.id, opts) })),
      revokeAccessToken: (token) =>
        Effect.gen(function* () {
          yield* sdk.revokeAccessToken(token)
          yield* tokens.evict(token)
          if (appToken !== undefined && Redacted.value(appToken.token) === codeOf(token)) appToken = undefined
        })
    })
  })

/** The live clock (the default services' one), looked up once. */
let live: Clock.Clock | undefined
const liveClock = (): Clock.Clock => {
  live ??= Effect.runSync(Effect.clock)
  return live
}

/** The default tracer (nothing outside records its spans), looked up once. */
let defaultTracerValue: Tracer.Tracer | undefined
const defaultTracer = (): Tracer.Tracer => {
  defaultTracerValue ??= Effect.runSync(Effect.tracer)
  return defaultTracerValue
}

/** The web `Response` under each response the direct path made, so its body is read without another fiber. */
const webOf = new WeakMap<HttpClientResponse.HttpClientResponse, Response>()

/** A response's body as text, read once however many times it is asked for ("" when unreadable). */
const texts = new WeakMap<HttpClientResponse.HttpClientResponse, Promise<string>>()
const textOf = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<string> => {
  const web = webOf.get(response)
  if (web === undefined) return Effect.orElseSucceed(response.text, () => "")
  return Effect.promise(() => {
    let text = texts.get(response)
    if (text === undefined) {
      text = web.text().catch(() => "")
      texts.set(response, text)
    }
    return text
  })
}

/** A response whose body {@link textOf} has read, as one whose body its caller can still read. */
const reread = (
  response: HttpClientResponse.HttpClientResponse,
  text: string
): HttpClientResponse.HttpClientResponse => {
  const web = webOf.get(response)
  if (web === undefined) return response // the platform's response caches its own text
  const fresh = HttpClientResponse.fromWeb(
    response.request,
    new Response(text, { status: web.status, statusText: web.statusText, headers: web.headers })
  )
  return fresh
}

/** The `code` member of a problem document's text, if it is one. */
const codeIn = (text: string): string | undefined => {
  try {
    const code = (JSON.parse(text) as { code?: unknown } | null)?.code
    return typeof code === "string" ? code : undefined
  } catch {
    return undefined
  }
}

/** The clients as a layer over the SDK's services. */
export const layer = (
  options: AuthenticatedClientOptions = {}
): Layer.Layer<AuthenticatedClient, never, IcrAppsClient | InstallationTokens | AppJwt | IcrAppsHttpClient> =>
  Layer.effect(AuthenticatedClient, make(options))
