/**
 * The common rules of SPEC §1, as a plain `fetch`-style wrapper around the issuer's router: the
 * version header, the request id, the `Authorization` and body limits, the rate limit of whatever
 * authenticated nobody, problem documents for every failure (404/405/413, decode errors, defects,
 * which never leak), the security headers and the final newline.
 *
 * None of it runs as Effect middleware: it is the same work on every request, so it is done once
 * per request in plain code around one fiber (the router's), with the static headers built once.
 */
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApp from "@effect/platform/HttpApp"
import * as Headers from "@effect/platform/Headers"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { type ResponseError, RouteNotFound } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import { allowedMethods } from "../api/Routes.js"
import { API_VERSION } from "../api/Primitives.js"
import { makeRequestLimits, type RateLimiter, type RequestLimitsService } from "./RateLimiter.js"
import {
  Internal,
  InvalidPermissions,
  InvalidRequest,
  InvalidToken,
  isProblem,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  type Problem,
  type ProblemDocument,
  PROBLEM_CONTENT_TYPE,
  Problems,
  RateLimited,
  Unavailable,
  UnsupportedApiVersion
} from "../api/Problems.js"

/** The largest request body accepted (SPEC §1). */
export const MAX_BODY_BYTES = 16 * 1024
/** The longest `Authorization` value accepted (SPEC §1). */
export const MAX_AUTHORIZATION_LENGTH = 8 * 1024

/**
 * What every response carries besides its own headers (SPEC §1): the security headers, the API
 * version, its request id and `Date`. A fresh object per response, written as a literal: V8 makes
 * it from a template, where copying a constant object's properties costs microseconds.
 */
const commonHeaders = (requestId: string, date: string): Record<string, string> => ({
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=63072000; includeSubDomains",
  "cache-control": "no-store",
  "x-icr-api-version": API_VERSION,
  "x-request-id": requestId,
  date
})

/** Headers every response carries, whatever its status. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = (() => {
  const { "x-icr-api-version": _v, "x-request-id": _id, date: _d, ...security } = commonHeaders("", "")
  return security
})()

export { allowedMethods }

/** The path of a URL, which may be relative (it is on some runtimes). */
const pathnameOf = (url: string): string => new URL(url, "http://localhost").pathname

const sanePattern = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * The id of the request being served (the `x-request-id` it is answered with), for audit events;
 * empty outside a request.
 */
export class RequestId extends Context.Reference<RequestId>()("@icr-apps/core/Http/RequestId", {
  defaultValue: (): string => ""
}) {}

/** What a credential looks like in a request id: an access token, or a JWT's encoded `{"` header. */
const credentialLike = /crs_|^eyJ/i

/**
 * The caller's `x-request-id` when it is sane, else a fresh UUID. One that looks like a credential
 * is replaced too: the id is echoed in the response and written to every audit line.
 */
const requestIdOf = (given: string | null): string =>
  given !== null && sanePattern.test(given) && !credentialLike.test(given) ? given : crypto.randomUUID()

/** The `Date` header, made once per second of the clock it is given. */
const httpDate = (() => {
  let second = Number.NaN
  let value = ""
  return (millis: number): string => {
    const now = Math.floor(millis / 1000)
    if (now !== second) {
      second = now
      value = new Date(now * 1000).toUTCString()
    }
    return value
  }
})()

const HEALTHZ_BODY = '{"status":"ok"}\n'
const HEALTHZ_LENGTH = String(new TextEncoder().encode(HEALTHZ_BODY).byteLength)

/**
 * `GET`/`HEAD /healthz` answered before the router, with exactly the router's answer (SPEC §1
 * headers and the final newline included) for a fraction of the cost: liveness probes are the most
 * frequent request and need no service. It stays in the `HttpApi` definition, so OpenAPI still
 * documents it. Any request §1 would refuse on its headers ({@link refusedByHeaders}),
 * or any other spelling of the path, is left to the router: `undefined`.
 */
export const healthzBeforeRouter = (request: Request): Response | undefined => {
  const method = request.method
  if (method !== "GET" && method !== "HEAD") return undefined
  const url = request.url
  if (!url.includes("/healthz")) return undefined
  let pathname: string
  try {
    pathname = new URL(url).pathname
  } catch {
    return undefined
  }
  if (pathname !== "/healthz") return undefined
  const headers = request.headers
  if (refusedByHeaders(headers) !== undefined) return undefined
  // The HTTP date is wall-clock time by definition.
  const common = commonHeaders(requestIdOf(headers.get("x-request-id")), httpDate(Date.now()))
  common["content-type"] = "application/json"
  common["content-length"] = HEALTHZ_LENGTH
  return new Response(method === "HEAD" ? null : HEALTHZ_BODY, { status: 200, headers: common })
}

/**
 * Masks anything in client-controlled text that looks like a credential (an access token, a JWT,
 * a PEM block), so an error that quotes what the client sent can never echo a secret.
 */
export const redactSecrets = (text: string): string =>
  text
    .replace(/-----BEGIN[\s\S]*?(-----END[^-]*-----|$)/g, "<key>")
    .replace(/crs_[0-9A-Za-z]+/g, "crs_…")
    .replace(/[\w-]{8,}\.[\w-]{8,}\.[\w-]*/g, "<jwt>")

/** A decode failure's issue text, with any echoed value cut off (it may be a secret). */
const issueText = (issue: { readonly path: ReadonlyArray<PropertyKey>; readonly message: string }): string => {
  const where = issue.path.length === 0 ? "request" : issue.path.map((p) => String(p).slice(0, 64)).join(".")
  const message = issue.message
    .replace(/,?\s*actual[\s\S]*$/i, "")
    .replace(/\s+/g, " ")
    .trim()
  return redactSecrets(`${where}: ${message.length > 200 ? `${message.slice(0, 200)}…` : message}`)
}

/** The checks of SPEC §1 on the headers, before anything is read: the API version and the `Authorization` cap. */
const refusedByHeaders = (headers: globalThis.Headers): Problem | undefined => {
  const version = headers.get("x-icr-api-version")
  if (version !== null && version !== API_VERSION) {
    return new UnsupportedApiVersion({ detail: `This server serves API version ${API_VERSION} only` }, true)
  }
  // Declared too large: refused whatever the method, before anything is read (SPEC §1).
  const declared = headers.get("content-length")
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) return tooLarge()
  const authorization = headers.get("authorization")
  if (authorization !== null && authorization.length > MAX_AUTHORIZATION_LENGTH) {
    return new InvalidToken(
      { detail: `The Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} characters` },
      true
    )
  }
  return undefined
}

const tooLarge = () => new PayloadTooLarge({ detail: `Request bodies are limited to ${MAX_BODY_BYTES} bytes` }, true)
const unreadable = () => new InvalidRequest({ detail: "The request body could not be read" }, true)
const jsonContentType = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i

/** Reads at most `limit` bytes of a body; `undefined` when it is longer. */
const readCapped = async (body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | undefined> => {
  const reader = body.getReader()
  const chunks: Array<Uint8Array> = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

/** A request body that passed the checks: its text, and the JSON object it holds (`{}` for none). */
interface CheckedBody {
  readonly text: string
  readonly parsed: unknown
}

/**
 * Checks the body of a request that may have one: at most 16 KiB as read (a declared larger length
 * was refused already, by {@link refusedByHeaders}), JSON, an object.
 */
const checkBody = async (request: Request): Promise<CheckedBody | Problem> => {
  let text = ""
  if (request.body !== null) {
    let bytes: Uint8Array | undefined
    try {
      bytes = await readCapped(request.body, MAX_BODY_BYTES)
    } catch {
      return unreadable()
    }
    if (bytes === undefined) return tooLarge()
    text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: false }).decode(bytes)
  }
  if (text.trim() === "") return { text: "{}", parsed: {} }
  if (!jsonContentType.test((request.headers.get("content-type") ?? "").toLowerCase())) {
    return new InvalidRequest({ detail: "Request bodies must be JSON (Content-Type: application/json)" }, true)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return new InvalidRequest({ detail: "The request body is not valid JSON" }, true)
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return new InvalidRequest({ detail: "The request body must be a JSON object" }, true)
  }
  return { text, parsed }
}

/**
 * The request as the router sees it. With a body, the body is the text already read and the JSON
 * already parsed: the router's decoder takes `json` from here rather than reading (and parsing) a
 * second copy, and never meets unreadable input.
 */
const toServerRequest = (request: Request, body: CheckedBody | undefined): HttpServerRequest.HttpServerRequest => {
  const serverRequest = HttpServerRequest.fromWeb(request)
  if (body === undefined) return serverRequest
  const headers = Headers.set(
    Headers.remove(serverRequest.headers, "content-length"),
    "content-type",
    "application/json"
  )
  return Object.create(serverRequest, {
    headers: { value: headers },
    json: { value: Effect.succeed(body.parsed) },
    text: { value: Effect.succeed(body.text) },
    arrayBuffer: { value: Effect.sync(() => new TextEncoder().encode(body.text).buffer) }
  }) as HttpServerRequest.HttpServerRequest
}

/** Maps the router's own failures to SPEC §6 problems; `undefined` for anything that is not a problem. */
const translate = (e: unknown): Problem | undefined => {
  if (isProblem(e)) return e
  if (e instanceof HttpApiDecodeError) {
    const onlyPermissions = e.issues.length > 0 && e.issues.every((i) => i.path[0] === "permissions")
    const detail = e.issues.map(issueText).join("; ") || "The request is malformed"
    return onlyPermissions ? new InvalidPermissions({ detail }) : new InvalidRequest({ detail })
  }
  if (e instanceof RouteNotFound) {
    const pathname = pathnameOf(e.request.url)
    const allow = allowedMethods(pathname)
    if (allow.length === 0) {
      // The path is not repeated: it is the caller's, and may hold anything, secrets included.
      return new NotFound({ detail: `No route for ${e.request.method} at this path` })
    }
    // The shape and method match a route, yet the router could not take it: a path it cannot decode.
    if (allow.includes(e.request.method)) {
      return new InvalidRequest({ detail: "The request path is malformed (invalid percent-encoding)" })
    }
    return new MethodNotAllowed({ detail: `${e.request.method} is not allowed here`, allow })
  }
  return undefined
}

/** What the server that received a request knows of its connection (nothing, on Workers). */
export interface Connection {
  /** The TCP peer's address. */
  readonly remoteAddress?: string | undefined
}

/**
 * The address a request's address budget (SPEC §1) counts against: `undefined` when there is none
 * to trust (then the request is limited only by principal).
 */
export type ClientAddressOf = (request: Request, connection: Connection | undefined) => string | undefined

/**
 * On Cloudflare: `cf-connecting-ip`, which Cloudflare sets on every request from the internet
 * (a client cannot forge it there). Off Cloudflare, a server says which header it trusts, if any
 * (SPEC §9 `TRUST_PROXY`), else the TCP peer counts: see {@link clientAddressFrom}.
 */
export const cloudflareClientAddress: ClientAddressOf = (request) =>
  request.headers.get("cf-connecting-ip") ?? undefined

/**
 * Off Cloudflare (SPEC §9): the TCP peer, unless `trustProxy` names the header a trusted proxy sets
 * — then that header's last (nearest) address for `x-forwarded-for`-style lists, its value otherwise.
 * By default no client-sent header counts for anything.
 */
export const clientAddressFrom =
  (trustProxy: string | undefined): ClientAddressOf =>
  (request, connection) => {
    if (trustProxy !== undefined && trustProxy !== "") {
      const value = request.headers.get(trustProxy)
      if (value !== null) {
        const nearest = value.split(",").at(-1)?.trim()
        if (nearest !== undefined && nearest !== "") return nearest
      }
    }
    return connection?.remoteAddress
  }

/** What a request is answered with, before the common headers: the router's response, or a problem. */
type Answer = HttpServerResponse.HttpServerResponse | Problem

/**
 * The issuer as the common rules wrap it: its router and the runtime it runs on. Built once per
 * isolate (on the first request that needs it).
 */
export interface Router {
  /**
   * Routes one request that passed the checks before routing, with its request id and rate limits
   * in its context: the endpoint's response, or why there is none (a problem, a router failure, a defect).
   */
  readonly route: (
    request: HttpServerRequest.HttpServerRequest,
    requestId: string,
    limits: RequestLimitsService
  ) => Promise<Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>>
  /** The issuer's runtime: its services, its `Clock`, its logger. */
  readonly runtime: Runtime.Runtime<never>
  /** The rate limiter, when the issuer has one. */
  readonly limiter: RateLimiter["Type"] | undefined
  /** The issuer's clock, read for `Date`. */
  readonly clock: Clock.Clock
}

/** The problem a failure is answered with; a defect (or any failure that is no problem) is logged by its class only. */
const problemOf = (router: Router, cause: Cause.Cause<unknown>): Problem => {
  const failure = Cause.failureOption(cause)
  const problem = failure._tag === "Some" ? translate(failure.value) : undefined
  if (problem !== undefined) return problem
  const defect = failure._tag === "Some" ? failure.value : Cause.squash(cause)
  // Only the defect's class reaches the log: its message might quote a request value.
  Effect.runSync(
    Effect.provide(
      Effect.logError("defect while handling a request", defect instanceof Error ? defect.name : typeof defect),
      router.runtime
    )
  )
  return new Internal({ detail: "Internal error" })
}

const encoders = new Map<string, (problem: Problem) => ProblemDocument>()

/** A problem's wire form (SPEC §6), encoded through its own schema in `Problems` (compiled on first use). */
const documentOf = (problem: Problem): ProblemDocument => {
  let encode = encoders.get(problem._tag)
  if (encode === undefined) {
    encode = Schema.encodeSync(Problems[problem._tag] as unknown as Schema.Schema<Problem, ProblemDocument>)
    encoders.set(problem._tag, encode)
  }
  return encode(problem)
}

const encoder = new TextEncoder()
const NEWLINE = 0x0a

/**
 * The web response for an answer, in one pass: the SPEC §1 headers (security headers, version,
 * request id, `Date`; `WWW-Authenticate` on 401, `Allow` on 405, `Retry-After` on 429 and 503)
 * over the answer's own, and every JSON body, problem documents included, ending with a newline.
 */
const toWeb = (answer: Answer, method: string, url: string, requestId: string, now: number): Response => {
  const headers = commonHeaders(requestId, httpDate(now))
  let body: Uint8Array | undefined
  if (HttpServerResponse.isServerResponse(answer)) {
    const own = answer.headers
    for (const name in own) if (!(name in headers)) headers[name] = own[name]!
    byStatus(headers, answer.status, url)
    const answerBody = answer.body
    if (answerBody._tag === "Uint8Array") {
      body = answerBody.body
      if (body.length > 0 && body[body.length - 1] !== NEWLINE && jsonContentType.test(answerBody.contentType)) {
        const ended = new Uint8Array(body.length + 1)
        ended.set(body)
        ended[body.length] = NEWLINE
        body = ended
        headers["content-length"] = String(ended.length)
      }
    } else if (answerBody._tag !== "Empty") {
      // Not a plain body (none of the issuer's endpoints answers one): the platform converts it.
      return HttpServerResponse.toWeb(HttpServerResponse.setHeaders(answer, headers), {
        withoutBody: method === "HEAD"
      })
    }
    return new Response(method === "HEAD" ? undefined : (body as Uint8Array<ArrayBuffer> | undefined), {
      status: answer.status,
      headers
    })
  }
  const problem = answer
  body = encoder.encode(`${JSON.stringify(documentOf(problem))}\n`)
  headers["content-type"] = PROBLEM_CONTENT_TYPE
  headers["content-length"] = String(body.length)
  // 429 and 503 tell the client when to come back (SPEC §6), in the header as well as the body.
  if (problem instanceof RateLimited || problem instanceof Unavailable) {
    headers["retry-after"] = String(problem.retryAfter ?? 1)
  }
  byStatus(headers, problem.status, url)
  return new Response(method === "HEAD" ? undefined : (body as Uint8Array<ArrayBuffer>), {
    status: problem.status,
    headers
  })
}

/** The headers SPEC §1 puts on some statuses: `WWW-Authenticate` on 401 (RFC 6750), `Allow` on 405. */
const byStatus = (headers: Record<string, string>, status: number, url: string): void => {
  if (status === 401) headers["www-authenticate"] = 'Bearer error="invalid_token"'
  if (status === 405) headers.allow = allowedMethods(pathnameOf(url)).join(", ")
}

/**
 * The issuer's `fetch` handler: the common rules of SPEC §1 around `router` (made by `build` on the
 * first request that reaches it, and kept).
 *
 * Rate limits (SPEC §1): the authentication middlewares count an authenticated request against its
 * principal (and fail it with 429 past that budget) before any work is done; whatever authenticated
 * nobody is counted against the client's address once answered, and answers 429 instead past that
 * budget. Liveness checks are never limited; a request with no `cf-connecting-ip` (local dev, tests,
 * a runtime behind no proxy) never by address.
 */
export const withCommonRules = (
  build: () => Promise<Router>,
  addressOf: ClientAddressOf = cloudflareClientAddress
): ((request: Request, connection?: Connection) => Promise<Response>) => {
  let router: Router | undefined
  let building: Promise<Router> | undefined
  return async (request, connection) => {
    const healthz = healthzBeforeRouter(request)
    if (healthz !== undefined) return healthz
    const method = request.method.toUpperCase()
    const url = request.url
    const headers = request.headers
    const requestId = requestIdOf(headers.get("x-request-id"))
    if (router === undefined) {
      // A build that fails is tried again by the next request, never cached as a broken isolate.
      building ??= build().catch((e: unknown) => {
        building = undefined
        throw e
      })
      try {
        router = await building
      } catch (e) {
        // Only the failure's class reaches the log: its message might quote configuration.
        console.error("the issuer could not be built:", e instanceof Error ? e.name : typeof e)
        return toWeb(new Internal({ detail: "Internal error" }), method, url, requestId, Date.now())
      }
    }
    const limits = makeRequestLimits(router.limiter, addressOf(request, connection))
    let answer: Answer | undefined = refusedByHeaders(headers)
    if (answer === undefined) {
      const body = HttpMethod.hasBody(method as HttpMethod.HttpMethod) ? await checkBody(request) : undefined
      if (isProblem(body)) answer = body
      else {
        const routed = await router.route(toServerRequest(request, body), requestId, limits)
        answer = Exit.isSuccess(routed) ? routed.value : problemOf(router, routed.cause)
      }
    }
    // Liveness checks are never limited; anything else sent to /healthz is (405 is not free to send).
    const liveness =
      (method === "GET" || method === "HEAD") && url.includes("/healthz") && pathnameOf(url) === "/healthz"
    const settle = liveness ? undefined : limits.settle()
    if (settle !== undefined) {
      const settled = await Effect.runPromiseExit(Effect.provide(settle, router.runtime))
      if (Exit.isFailure(settled)) answer = problemOf(router, settled.cause)
    }
    return toWeb(answer, method, url, requestId, router.clock.unsafeCurrentTimeMillis())
  }
}

/**
 * Applies the pre-response handlers a handler registered (`HttpApp.appendPreResponseHandler`, for
 * a `Link` header) to its response, as the platform's own server does.
 */
export const withPreResponseHandlers = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, E | ResponseError, R> =>
  Effect.flatMap(app, (response) =>
    Effect.withFiberRuntime<HttpServerResponse.HttpServerResponse, ResponseError>((fiber) => {
      const handler = fiber.getFiberRef(HttpApp.currentPreResponseHandlers)
      if (handler._tag === "None") return Effect.succeed(response)
      return handler.value(Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest), response)
    })
  )
