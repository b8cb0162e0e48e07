/**
 * The SDK's client of the ICR Apps API (SPEC §7), derived from the one `HttpApi` definition.
 * It signs App JWTs through {@link AppJwt}, retries what is transient (exponential backoff with
 * jitter, `Retry-After`, per-attempt timeout), learns and keeps the server's clock offset when a
 * JWT is refused for time, and turns every failure into a typed, tagged error.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { pipe } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { IcrAppsApi } from "../api/Api.js"
import { AppJwt, type JwtSigningFailed } from "./AppJwt.js"
import { type Installation, type InstallationPage, PAGE_LIMIT } from "../api/Installations.js"
import type { Permissions } from "../api/Permissions.js"
import { API_VERSION, Uuid } from "../api/Primitives.js"
import { causeChain, classify, redactSecrets, type TransportFailure } from "../internal/transport.js"
import { InvalidPermissions, InvalidRequest, type Problem } from "../api/Problems.js"
import {
  type AccessToken,
  type InstallationAccessToken,
  RequestedPermissions,
  type TokenDescription
} from "../api/Tokens.js"

/** The production base URL (SPEC preamble). */
export const DEFAULT_BASE_URL = "https://api.carbonregistry.com"

export type { TransportFailure }

const failureText: Record<TransportFailure, string> = {
  refused: "connection refused",
  unresolvable: "host name not resolvable",
  timeout: "timed out",
  tls: "TLS failure",
  network: "network failure"
}

/**
 * The request never got an answer, after every retry: the connection was refused, the host did
 * not resolve, the attempt timed out, TLS failed, or the network did. Names the method, the full
 * URL and the underlying cause (an error code such as `ECONNREFUSED`, or the runtime's message).
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly method: string
  readonly url: string
  readonly failure: TransportFailure
  readonly cause: string
}> {
  override get message(): string {
    return `${this.method} ${this.url}: ${failureText[this.failure]} (${this.cause})`
  }
}

/**
 * The base URL is not an absolute `http://` or `https://` URL — typically a host and port without a
 * scheme (`127.0.0.1:8787`), which `fetch` would refuse only at the first call. Refused at construction.
 */
export class InvalidBaseUrl extends Data.TaggedError("InvalidBaseUrl")<{
  /** The base URL as given, without a query, a fragment or anything up to an `@` (a `user:password`). */
  readonly baseUrl: string
  readonly detail: string
}> {
  override get message(): string {
    return `Invalid base URL "${this.baseUrl}": ${this.detail}`
  }
}

/** Loopback hosts, written the way a base URL names them. */
const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/

/**
 * The base URL without trailing slashes, or why it cannot be one: it must be an absolute `http://` or
 * `https://` URL with a host (`https://api.carbonregistry.com`, or a local issuer's `http://127.0.0.1:8787`).
 */
export const checkBaseUrl = (baseUrl: string): Effect.Effect<string, InvalidBaseUrl> => {
  const trimmed = baseUrl.trim().replace(/\/+$/, "")
  // What an error may repeat of it: no query or fragment, and nothing up to the last "@" (a
  // user:password, even in a URL too malformed to parse, like "http//user:secret@host").
  const shown = trimmed
    .replace(/[?#].*$/s, "")
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/is, "$1…@")
    .slice(0, 100)
  const fail = (detail: string) => Effect.fail(new InvalidBaseUrl({ baseUrl: shown, detail }))
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    const host = trimmed.split("/")[0]!
    const scheme = LOOPBACK_HOST.test(host) ? "http" : "https"
    return fail(`it has no scheme; write it with one, e.g. ${scheme}://${shown}`)
  }
  let url: URL
  try {
    url = new URL(trimmed)
  } catch {
    return fail("it is not a valid URL")
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return fail(`the scheme must be http:// or https://, not ${url.protocol}//`)
  }
  if (url.search !== "" || url.hash !== "") return fail("it must not carry a query or a fragment")
  // fetch refuses such a URL on every request, repeating it (password included) in its error.
  if (url.username !== "" || url.password !== "")
    return fail("it must not carry a user name or password (user:password@); the SDK sends its own credentials")
  return Effect.succeed(trimmed)
}

/** The server answered something this SDK does not understand (an undeclared status or body). */
export class UnexpectedResponse extends Data.TaggedError("UnexpectedResponse")<{
  readonly status: number
  readonly method: string
  readonly url: string
  readonly detail: string
}> {
  override get message(): string {
    return `Unexpected response (HTTP ${this.status}) to ${this.method} ${this.url}: ${this.detail}`
  }
}

/** The failures of the SDK itself, beside the problems the server sends. */
export type SdkFailure = TransportError | UnexpectedResponse | JwtSigningFailed

/** Every failure of any client call: a SPEC §6 problem, or one of the SDK's own. */
export type IcrAppsError = Problem | SdkFailure

/** The derived client of the API definition (its type carries each endpoint's declared errors). */
const deriveApi = (httpClient: HttpClient.HttpClient) => HttpApiClient.makeWith(IcrAppsApi, { httpClient, baseUrl: "" })
type AppsApi = Effect.Effect.Success<ReturnType<typeof deriveApi>>["apps"]

/** What the platform's client fails with besides the API's problems; the SDK turns them into its own errors. */
type PlatformFailure = HttpClientError.HttpClientError | ParseResult.ParseError | HttpApiDecodeError

/**
 * The failures of one Apps API endpoint: exactly the SPEC §6 problems it declares (its own, its
 * credential's, and the common ones), plus the SDK's own.
 */
export type ErrorOf<K extends keyof AppsApi> =
  | Exclude<Effect.Effect.Error<ReturnType<AppsApi[K]>>, PlatformFailure>
  | SdkFailure

/** How transient failures are retried. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 4). */
  readonly maxAttempts?: number
  /** The first backoff delay (default 250 ms); it doubles each time, with jitter. */
  readonly baseDelay?: Duration.DurationInput
  /** The longest backoff delay (default 10 s). */
  readonly maxDelay?: Duration.DurationInput
  /** The longest `Retry-After` honoured (default 60 s); longer ones are cut to this. */
  readonly maxRetryAfter?: Duration.DurationInput
  /** How long one attempt may take (default 10 s). */
  readonly attemptTimeout?: Duration.DurationInput
}

/** Options of the client. */
export interface ClientOptions {
  /** Default `https://api.carbonregistry.com`. */
  readonly baseUrl?: string | undefined
  /** Sent as `x-icr-api-version` (default `2023-06-16`). */
  readonly apiVersion?: string | undefined
  readonly retry?: RetryOptions | undefined
}

/** Statuses retried (SPEC §7); every other 4xx is final. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504])
/** `invalid_jwt` reasons that mean the clocks disagree (SPEC §7). */
export const SKEW_REASONS: ReadonlySet<string> = new Set(["expired", "iat_in_future", "exp_too_far"])

/** Which credential the current request carries; set per call, read when the request is sent. */
type Credential =
  | { readonly _tag: "None" }
  | { readonly _tag: "AppJwt" }
  | { readonly _tag: "Token"; readonly token: Redacted.Redacted<string> }
const CurrentCredential = FiberRef.unsafeMake<Credential>({ _tag: "None" })

/** `Retry-After` in milliseconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export const parseRetryAfter = (value: string | undefined, nowMillis: number): Option.Option<number> => {
  if (value === undefined) return Option.none()
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Option.some(Number(trimmed) * 1000)
  const at = Date.parse(trimmed)
  return Number.isNaN(at) ? Option.none() : Option.some(Math.max(0, at - nowMillis))
}

class Retryable extends Data.TaggedError("Retryable")<{
  readonly response: HttpClientResponse.HttpClientResponse
  readonly retryAfterMillis: Option.Option<number>
}> {}

/** The retry schedule of SPEC §7: exponential with jitter, capped, bounded, `Retry-After` first. */
export const retrySchedule = (options: RetryOptions = {}) => {
  const maxRetryAfter = Duration.toMillis(options.maxRetryAfter ?? "60 seconds")
  return pipe(
    Schedule.exponential(options.baseDelay ?? "250 millis", 2),
    Schedule.union(Schedule.spaced(options.maxDelay ?? "10 seconds")),
    Schedule.jittered,
    Schedule.intersect(Schedule.identity<unknown>()),
    // Whole milliseconds: a jittered delay is a fraction of a millisecond off otherwise, and a test
    // clock advanced by such deltas drifts by rounding (5.68e-14 ms steps that never arrive).
    Schedule.modifyDelay(([, failure], delay) =>
      failure instanceof Retryable && Option.isSome(failure.retryAfterMillis)
        ? Duration.millis(Math.min(failure.retryAfterMillis.value, maxRetryAfter))
        : Duration.millis(Math.round(Duration.toMillis(delay)))
    ),
    Schedule.intersect(Schedule.recurs(Math.max(0, (options.maxAttempts ?? 4) - 1)))
  )
}

const ATTEMPT_TIMED_OUT = "the attempt timed out"
/** The description of a failure on an `https://` URL whose host and port answered plain HTTP. */
const PLAIN_HTTP = "the server answers plain HTTP, not TLS"

const isTransport = (e: unknown): e is HttpClientError.RequestError =>
  e instanceof HttpClientError.RequestError && e.reason === "Transport"

/** An `https://` request's URL, if it is one. */
const httpsUrl = (request: HttpClientRequest.HttpClientRequest): URL | undefined =>
  Option.getOrUndefined(Option.filter(HttpClientRequest.toUrl(request), (u) => u.protocol === "https:"))

/** The same host and port as a `http://` origin: what to try when an `https://` URL reaches a plain-http server. */
const plainOrigin = (url: URL): string => `http://${url.hostname}:${url.port || "443"}`

/**
 * Whether the host and port of an `https://` request answer plain HTTP: one `GET /` with no
 * credential, at most 2 s. A plain-http server (a local issuer) does not answer a TLS hello the same
 * way on every runtime — Node fails at once, workerd never answers, so each attempt would wait out
 * its timeout and end as "timed out"; asked once in plain HTTP, it answers, and the SDK can say why.
 * A TLS server's own answer to plain HTTP on its port (nginx: 400; a redirect) does not count.
 */
const answersPlainHttp = (client: HttpClient.HttpClient, url: URL): Effect.Effect<boolean> =>
  client.execute(HttpClientRequest.get(`${plainOrigin(url)}/`)).pipe(
    Effect.map(
      (response) =>
        response.status !== 400 && response.status !== 497 && (response.status < 300 || response.status > 399)
    ),
    Effect.timeout("2 seconds"),
    Effect.orElseSucceed(() => false)
  )

/** Loopback hosts, where an `https://` URL on a plain-http development server is the usual mistake. */
const isLoopback = (url: URL): boolean =>
  url.hostname === "localhost" || url.hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(url.hostname)

/** How long an `https://` loopback attempt waits for an answer before asking the port in plain HTTP. */
const LOOPBACK_TLS_PATIENCE = "1 second"

/** Whether a transport failure is worth another attempt: not a TLS failure (a certificate, plain HTTP), which would fail again. */
const retriable = (e: HttpClientError.RequestError): boolean =>
  e.description !== PLAIN_HTTP && (e.description === ATTEMPT_TIMED_OUT || classify(causeChain(e.cause)) !== "tls")

/** Wraps a client so transient failures are retried per {@link retrySchedule}, each attempt timed out. */
export const withRetries =
  (options: RetryOptions = {}) =>
  (client: HttpClient.HttpClient): HttpClient.HttpClient =>
    HttpClient.transform(client, (effect, request) => {
      const https = httpsUrl(request)
      const plainHttp = () =>
        new HttpClientError.RequestError({ request, reason: "Transport", description: PLAIN_HTTP })
      // On loopback, a TLS hello a plain-http server never answers is told within a second, not
      // after every attempt's timeout: the port is asked in plain HTTP meanwhile.
      const raced =
        https !== undefined && isLoopback(https)
          ? Effect.raceFirst(
              effect,
              Effect.sleep(LOOPBACK_TLS_PATIENCE).pipe(
                Effect.zipRight(answersPlainHttp(client, https)),
                Effect.flatMap((plain) => (plain ? Effect.fail(plainHttp()) : Effect.never))
              )
            )
          : effect
      const attempt = raced.pipe(
        Effect.timeoutFail({
          duration: options.attemptTimeout ?? "10 seconds",
          onTimeout: () =>
            new HttpClientError.RequestError({ request, reason: "Transport", description: ATTEMPT_TIMED_OUT })
        }),
        Effect.flatMap((response) =>
          RETRYABLE_STATUSES.has(response.status)
            ? Effect.flatMap(Clock.currentTimeMillis, (now) =>
                Effect.fail(
                  new Retryable({ response, retryAfterMillis: parseRetryAfter(response.headers["retry-after"], now) })
                )
              )
            : Effect.succeed(response)
        ),
        // An https:// attempt that failed short of an answer (not refused, not unresolvable: those
        // fail the same over http) may have reached a plain-http server: asked, it says so at once.
        Effect.catchIf(
          (e): e is HttpClientError.RequestError =>
            isTransport(e) &&
            https !== undefined &&
            e.description !== PLAIN_HTTP &&
            !["refused", "unresolvable"].includes(classify(causeChain(e.cause))),
          (e) => Effect.flatMap(answersPlainHttp(client, https!), (plain) => Effect.fail(plain ? plainHttp() : e))
        )
      )
      return attempt.pipe(
        Effect.retry({
          schedule: retrySchedule(options),
          while: (e) => e instanceof Retryable || (isTransport(e) && retriable(e))
        }),
        // Out of attempts on a retryable status: hand the last answer on, to be decoded as its problem.
        Effect.catchIf(
          (e): e is Retryable => e instanceof Retryable,
          (e) => Effect.succeed(e.response)
        )
      )
    }) as HttpClient.HttpClient

/** What an app calls. */
export class IcrAppsClient extends Context.Tag("@icr-apps/core/IcrAppsClient")<
  IcrAppsClient,
  {
    readonly baseUrl: string
    readonly appId: string
    /**
     * `POST /app/accessTokens`: an app token with the app's declared permissions, or, given
     * `permissions`, with those (within the declared ones, else `PermissionsExceedGrant`).
     */
    readonly createAppAccessToken: (options?: {
      readonly permissions?: Permissions | undefined
    }) => Effect.Effect<AccessToken, ErrorOf<"createAppAccessToken">>
    /** `POST /app/installations/{id}/accessTokens`, optionally narrowed. */
    readonly createInstallationAccessToken: (
      installationId: string,
      options?: { readonly permissions?: Permissions | undefined }
    ) => Effect.Effect<InstallationAccessToken, ErrorOf<"createInstallationAccessToken">>
    /** `GET /app/installations/token`: what the token is, never its secret. */
    readonly describeAccessToken: (
      token: Redacted.Redacted<string> | string
    ) => Effect.Effect<TokenDescription, ErrorOf<"describeAccessToken">>
    /** `DELETE /app/installations/token`. */
    readonly revokeAccessToken: (
      token: Redacted.Redacted<string> | string
    ) => Effect.Effect<void, ErrorOf<"revokeAccessToken">>
    /**
     * `GET /app/installations?limit=&page=` or `?limit=&cursor=` (a page's `nextCursor`; never
     * with `page`). Cursor pages never skip an installation when others come and go meanwhile.
     */
    readonly listInstallations: (options?: {
      readonly limit?: number | undefined
      readonly page?: number | undefined
      readonly cursor?: string | undefined
    }) => Effect.Effect<InstallationPage, ErrorOf<"listInstallations">>
    /** `GET /app/installations/{id}`. */
    readonly getInstallation: (installationId: string) => Effect.Effect<Installation, ErrorOf<"getInstallation">>
    /**
     * Every installation, page by page, following `nextCursor` until a page has none: each
     * installation active for the whole walk is seen exactly once.
     */
    readonly installations: (options?: {
      readonly pageSize?: number | undefined
    }) => Stream.Stream<Installation, ErrorOf<"listInstallations">>
  }
>() {
  /** The client as a layer (the module's `layer`, on the tag). */
  static readonly layer = (
    options: ClientOptions = {}
  ): Layer.Layer<IcrAppsClient, InvalidBaseUrl, AppJwt | IcrAppsHttpClient> => layer(options)
}

/** The full URL of a request, query included (never a secret: credentials travel in headers). */
const urlOf = (request: HttpClientRequest.HttpClientRequest): string =>
  Option.match(HttpClientRequest.toUrl(request), { onNone: () => request.url, onSome: (u) => u.href })

/** Maps the platform's client failures to the SDK's tagged errors; problems pass through. */
const toSdkError = <E>(e: E): Exclude<E, PlatformFailure> | TransportError | UnexpectedResponse => {
  if (e instanceof HttpClientError.RequestError && e.description === PLAIN_HTTP) {
    const url = urlOf(e.request)
    return new TransportError({
      method: e.request.method,
      url,
      failure: "tls",
      cause: `${PLAIN_HTTP}: is the server plain http? try ${plainOrigin(new URL(url))}`
    })
  }
  if (e instanceof HttpClientError.RequestError) {
    const chain = causeChain(e.cause)
    const cause = e.description ?? chain.find((c) => /^[A-Z_]{4,}$|^[A-Z][a-zA-Z]+$/.test(c)) ?? chain[0] ?? e.reason
    return new TransportError({
      method: e.request.method,
      url: urlOf(e.request),
      failure: e.description === ATTEMPT_TIMED_OUT ? "timeout" : classify(chain),
      // A custom fetch may quote the request (its Authorization header) in its error text.
      cause: redactSecrets(cause).slice(0, 200)
    })
  }
  if (e instanceof HttpClientError.ResponseError) {
    return new UnexpectedResponse({
      status: e.response.status,
      method: e.request.method,
      url: urlOf(e.request),
      detail: e.description ?? e.reason
    })
  }
  if (ParseResult.isParseError(e) || e instanceof HttpApiDecodeError) {
    return new UnexpectedResponse({
      status: 0,
      method: "",
      url: "",
      detail: "the response body did not match the API's schema"
    })
  }
  return e as Exclude<E, PlatformFailure>
}

/**
 * Arguments are checked before anything is sent, failing as the server would (`invalid_request`,
 * `invalid_permissions`), so a typo costs no round trip and is never confused with a bad response.
 */
const validId = (installationId: string) =>
  Effect.mapError(
    Schema.decodeUnknown(Uuid)(installationId),
    () => new InvalidRequest({ detail: "installationId must be a UUID" })
  )
/**
 * A requested narrowing, checked before it is sent as the server would check it: known names and
 * levels, and at least one (an empty grant is `InvalidPermissions`, never "everything": SPEC §4).
 */
const validPermissions = (permissions: Permissions | undefined) =>
  permissions === undefined
    ? Effect.succeed(undefined)
    : Effect.mapError(
        Schema.decodeUnknown(RequestedPermissions)(permissions),
        (e) => new InvalidPermissions({ detail: `permissions: ${e.message.split("\n").at(-1)?.trim() ?? "invalid"}` })
      )
const validPage = (page: {
  readonly limit?: number | undefined
  readonly page?: number | undefined
  readonly cursor?: string | undefined
}) => {
  const ok = (n: number | undefined, min: number, max: number) =>
    n === undefined || (Number.isInteger(n) && n >= min && n <= max)
  if (page.page !== undefined && page.cursor !== undefined) {
    return Effect.fail(new InvalidRequest({ detail: "page and cursor cannot be used together" }))
  }
  return ok(page.limit, PAGE_LIMIT.min, PAGE_LIMIT.max) && ok(page.page, 0, Number.MAX_SAFE_INTEGER)
    ? Effect.succeed({
        ...(page.limit !== undefined ? { limit: page.limit } : {}),
        ...(page.page !== undefined ? { page: page.page } : {}),
        ...(page.cursor !== undefined ? { cursor: page.cursor } : {})
      })
    : Effect.fail(new InvalidRequest({ detail: "limit must be an integer 1..100 and page an integer >= 0" }))
}

/**
 * The `HttpClient` the SDK sends with. A tag of its own, so that an app's middleware on the
 * app-wide `HttpClient.HttpClient` (a base URL, its own auth headers) never reaches the SDK's calls.
 */
export class IcrAppsHttpClient extends Context.Tag("@icr-apps/core/IcrAppsHttpClient")<
  IcrAppsHttpClient,
  HttpClient.HttpClient
>() {
  /** The SDK's `HttpClient` over `fetch` (the module's `layerFetch`, on the tag). */
  static readonly layerFetch = (fetch?: typeof globalThis.fetch): Layer.Layer<IcrAppsHttpClient> => layerFetch(fetch)
  /** The SDK's `HttpClient` from one the app built (the module's `layerHttpClient`, on the tag). */
  static readonly layerHttpClient = (client: HttpClient.HttpClient): Layer.Layer<IcrAppsHttpClient> =>
    layerHttpClient(client)
}

const fetchKey = Symbol.for("@icr-apps/core/IcrAppsHttpClient/fetch")

/**
 * The `fetch` under a client that {@link layerFetch} made, if it is one: the authenticated clients
 * send through it directly, skipping the platform's per-request work (the client stays what runs
 * for any other transport).
 */
export const fetchOf = (client: HttpClient.HttpClient): typeof globalThis.fetch | undefined =>
  (client as { [fetchKey]?: typeof globalThis.fetch })[fetchKey]

/** The SDK's `HttpClient` over `fetch`: the global one, or the one given (a test double, a proxy agent). */
export const layerFetch = (fetch?: typeof globalThis.fetch): Layer.Layer<IcrAppsHttpClient> =>
  Layer.effect(
    IcrAppsHttpClient,
    Effect.map(HttpClient.HttpClient, (client) => {
      // Remembers the `fetch` under the client, so the authenticated clients can call it directly.
      const marked = Object.create(client) as HttpClient.HttpClient & { [fetchKey]?: typeof globalThis.fetch }
      marked[fetchKey] = fetch ?? ((input, init) => globalThis.fetch(input, init))
      return marked
    })
  ).pipe(
    Layer.provide(
      fetch === undefined
        ? FetchHttpClient.layer
        : FetchHttpClient.layer.pipe(Layer.provide(Layer.succeed(FetchHttpClient.Fetch, fetch)))
    )
  )

/** The SDK's `HttpClient` from one the app built (with whatever middleware it chooses for the SDK). */
export const layerHttpClient = (client: HttpClient.HttpClient): Layer.Layer<IcrAppsHttpClient> =>
  Layer.succeed(IcrAppsHttpClient, client)

/** A response body as JSON, read through the response's cached bytes so the API decoder can read them again. */
const jsonOf = (response: HttpClientResponse.HttpClientResponse) =>
  Effect.orElseSucceed(
    Effect.map(response.arrayBuffer, (bytes): unknown => JSON.parse(new TextDecoder().decode(bytes))),
    () => undefined
  )

/** Builds the client over the SDK's {@link IcrAppsHttpClient} and an {@link AppJwt}. */
export const make = (options: ClientOptions = {}) =>
  Effect.gen(function* () {
    const jwt = yield* AppJwt
    const baseUrl = yield* checkBaseUrl(options.baseUrl ?? DEFAULT_BASE_URL)
    const apiVersion = options.apiVersion ?? API_VERSION
    const retrying = withRetries(options.retry)(yield* IcrAppsHttpClient)

    const authorize = (request: HttpClientRequest.HttpClientRequest, credential: Credential) =>
      credential._tag === "AppJwt"
        ? Effect.map(jwt.get, (token) => HttpClientRequest.bearerToken(request, Redacted.value(token)))
        : Effect.succeed(
            credential._tag === "Token"
              ? HttpClientRequest.bearerToken(request, Redacted.value(credential.token))
              : request
          )

    /** Sends with the current credential; once, on a time-related JWT refusal, learns the server clock and resends. */
    const send = (request: HttpClientRequest.HttpClientRequest) =>
      Effect.gen(function* () {
        const credential = yield* FiberRef.get(CurrentCredential)
        const versioned = HttpClientRequest.setHeader(request, "x-icr-api-version", apiVersion)
        const response = yield* retrying.execute(yield* authorize(versioned, credential))
        if (credential._tag !== "AppJwt" || response.status !== 401) return response
        // Read through the cached bytes: the API decoder reads the same body after this.
        const body = yield* jsonOf(response)
        const reason = (body as { code?: unknown; reason?: unknown } | undefined)?.reason
        const serverDate = Date.parse(response.headers.date ?? "")
        if (
          (body as { code?: unknown })?.code !== "invalid_jwt" ||
          !SKEW_REASONS.has(String(reason)) ||
          Number.isNaN(serverDate)
        ) {
          return response
        }
        const local = yield* Clock.currentTimeMillis
        yield* jwt.setClockOffset(serverDate - local)
        yield* Effect.logDebug("icr-apps: learned the server clock offset", { offsetMillis: serverDate - local })
        return yield* retrying.execute(yield* authorize(versioned, credential))
      })

    const httpClient = HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest, never, never>) => Effect.flatMap(request, send),
      Effect.succeed
    ) as unknown as HttpClient.HttpClient

    const api = yield* HttpApiClient.makeWith(IcrAppsApi, { httpClient, baseUrl })
    const withCredential =
      (credential: Credential) =>
      <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(Effect.locally(CurrentCredential, credential), Effect.mapError(toSdkError))
    const asJwt = withCredential({ _tag: "AppJwt" })
    const asToken = (token: Redacted.Redacted<string> | string) =>
      withCredential({ _tag: "Token", token: Redacted.isRedacted(token) ? token : Redacted.make(token) })

    const listInstallations: IcrAppsClient["Type"]["listInstallations"] = (page = {}) =>
      Effect.flatMap(validPage(page), (urlParams) => asJwt(api.apps.listInstallations({ urlParams, headers: {} })))

    return IcrAppsClient.of({
      baseUrl,
      appId: jwt.appId,
      createAppAccessToken: (opts = {}) =>
        Effect.flatMap(validPermissions(opts.permissions), (permissions) =>
          asJwt(
            api.apps.createAppAccessToken({
              payload: permissions === undefined ? {} : { permissions },
              headers: {}
            })
          )
        ),
      createInstallationAccessToken: (installationId, opts = {}) =>
        Effect.flatMap(Effect.zip(validId(installationId), validPermissions(opts.permissions)), ([id, permissions]) =>
          asJwt(
            api.apps.createInstallationAccessToken({
              path: { installationId: id },
              payload: permissions === undefined ? {} : { permissions },
              headers: {}
            })
          )
        ),
      describeAccessToken: (token) => asToken(token)(api.apps.describeAccessToken({ headers: {} })),
      revokeAccessToken: (token) => asToken(token)(api.apps.revokeAccessToken({ headers: {} })),
      listInstallations,
      getInstallation: (installationId) =>
        Effect.flatMap(validId(installationId), (id) =>
          asJwt(api.apps.getInstallation({ path: { installationId: id }, headers: {} }))
        ),
      installations: (opts = {}) => {
        const limit = Math.min(PAGE_LIMIT.max, Math.max(PAGE_LIMIT.min, opts.pageSize ?? PAGE_LIMIT.max))
        // The first page names neither page nor cursor; every later one follows the last nextCursor.
        return Stream.paginateChunkEffect(undefined as string | undefined, (cursor) =>
          Effect.map(listInstallations(cursor === undefined ? { limit } : { limit, cursor }), (result) => [
            Chunk.fromIterable(result.items),
            result.nextCursor === undefined || result.items.length === 0
              ? Option.none<string | undefined>()
              : Option.some<string | undefined>(result.nextCursor)
          ])
        )
      }
    })
  })

/** The client as a layer (needs the SDK's {@link IcrAppsHttpClient} and an {@link AppJwt}). */
export const layer = (
  options: ClientOptions = {}
): Layer.Layer<IcrAppsClient, InvalidBaseUrl, AppJwt | IcrAppsHttpClient> => Layer.effect(IcrAppsClient, make(options))
