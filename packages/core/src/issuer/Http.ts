/**
 * The common rules of SPEC §1, as HTTP middleware around the `HttpApi` router: version header,
 * request id, body limits, problem documents for 404/405/413 and decode errors, the security
 * headers, and a last line that turns any defect into an `internal` problem without leaking it.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApp from "@effect/platform/HttpApp"
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { RouteNotFound } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { allowedMethods } from "../api/Routes.js"
import { API_VERSION } from "../api/Primitives.js"
import { makeRequestLimits, RateLimiter, RequestLimits } from "./RateLimiter.js"
import {
  Internal,
  InvalidPermissions,
  InvalidRequest,
  InvalidToken,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  RateLimited,
  Unavailable,
  UnsupportedApiVersion
} from "../api/Problems.js"

/** The largest request body accepted (SPEC §1). */
export const MAX_BODY_BYTES = 16 * 1024
/** The longest `Authorization` value accepted (SPEC §1). */
export const MAX_AUTHORIZATION_LENGTH = 8 * 1024

/** Headers every response carries, whatever its status. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=63072000; includeSubDomains",
  "cache-control": "no-store"
}

export { allowedMethods }

/** The path of a request, whose `url` may be relative (it is on some runtimes). */
const pathnameOf = (request: { readonly url: string }): string => new URL(request.url, "http://localhost").pathname

const sanePattern = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * The id of the request being served (the `x-request-id` it is answered with), for audit events;
 * empty outside a request.
 */
export class RequestId extends Context.Reference<RequestId>()("@icr-apps/core/Http/RequestId", {
  defaultValue: (): string => ""
}) {}

/** The caller's `x-request-id` when it is sane, else a fresh UUID. */
const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const given = request.headers["x-request-id"]
  return given !== undefined && sanePattern.test(given) ? given : crypto.randomUUID()
}

const HEALTHZ_BODY = '{"status":"ok"}\n'
const HEALTHZ_LENGTH = String(new TextEncoder().encode(HEALTHZ_BODY).byteLength)

/**
 * `GET`/`HEAD /healthz` answered before the router, with exactly the router's answer (SPEC §1
 * headers and the final newline included) for a fraction of the cost: liveness probes are the most
 * frequent request and need no service. It stays in the `HttpApi` definition, so OpenAPI still
 * documents it. Any request §1 would refuse (another API version, an oversized `Authorization`),
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
  const version = headers.get("x-icr-api-version")
  if (version !== null && version !== API_VERSION) return undefined
  const authorization = headers.get("authorization")
  if (authorization !== null && authorization.length > MAX_AUTHORIZATION_LENGTH) return undefined
  const given = headers.get("x-request-id")
  return new Response(method === "HEAD" ? null : HEALTHZ_BODY, {
    status: 200,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": "application/json",
      "content-length": HEALTHZ_LENGTH,
      "x-icr-api-version": API_VERSION,
      "x-request-id": given !== null && sanePattern.test(given) ? given : crypto.randomUUID(),
      // The HTTP date is wall-clock time by definition, as the router's stamp is.
      date: new Date().toUTCString()
    }
  })
}

/** A decode failure's issue text, with any echoed value cut off (it may be a secret). */
/**
 * Masks anything in client-controlled text that looks like a credential (an access token, a JWT,
 * a PEM block), so an error that quotes what the client sent can never echo a secret.
 */
export const redactSecrets = (text: string): string =>
  text
    .replace(/-----BEGIN[\s\S]*?(-----END[^-]*-----|$)/g, "<key>")
    .replace(/crs_[0-9A-Za-z]+/g, "crs_…")
    .replace(/[\w-]{8,}\.[\w-]{8,}\.[\w-]*/g, "<jwt>")

const issueText = (issue: { readonly path: ReadonlyArray<PropertyKey>; readonly message: string }): string => {
  const where = issue.path.length === 0 ? "request" : issue.path.map((p) => String(p).slice(0, 64)).join(".")
  const message = issue.message
    .replace(/,?\s*actual[\s\S]*$/i, "")
    .replace(/\s+/g, " ")
    .trim()
  return redactSecrets(`${where}: ${message.length > 200 ? `${message.slice(0, 200)}…` : message}`)
}

const tooLarge = () => new PayloadTooLarge({ detail: `Request bodies are limited to ${MAX_BODY_BYTES} bytes` })

/** Reads at most `limit` bytes of a body; `undefined` when it is longer. */
const readCapped = (body: ReadableStream<Uint8Array>, limit: number) =>
  Effect.tryPromise({
    try: async (signal) => {
      const reader = body.getReader()
      const onAbort = () => void reader.cancel().catch(() => {})
      signal.addEventListener("abort", onAbort)
      const chunks: Array<Uint8Array> = []
      let size = 0
      try {
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
      } finally {
        signal.removeEventListener("abort", onAbort)
      }
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.byteLength
      }
      return bytes
    },
    catch: () => new InvalidRequest({ detail: "The request body could not be read" })
  })

/**
 * Checks the body of a request that may have one: at most 16 KiB, JSON, an object. The router
 * then sees a request whose body is that JSON (or `{}` when there was none), so the platform's
 * decoder never meets unreadable input.
 */
const normalizeBody = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    if (!HttpMethod.hasBody(request.method)) return request
    const declared = request.headers["content-length"]
    if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) {
      return yield* tooLarge()
    }
    const source = request.source
    let text = ""
    if (source instanceof Request) {
      if (source.body !== null) {
        const bytes = yield* readCapped(source.body, MAX_BODY_BYTES)
        if (bytes === undefined) {
          return yield* tooLarge()
        }
        text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: false }).decode(bytes)
      }
    } else {
      text = yield* Effect.mapError(
        request.text,
        () => new InvalidRequest({ detail: "The request body could not be read" })
      )
      if (new TextEncoder().encode(text).byteLength > MAX_BODY_BYTES) {
        return yield* tooLarge()
      }
    }
    let parsed: unknown = {}
    if (text.trim() === "") text = "{}"
    else {
      const contentType = (request.headers["content-type"] ?? "").toLowerCase()
      if (!/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/.test(contentType)) {
        return yield* new InvalidRequest({ detail: "Request bodies must be JSON (Content-Type: application/json)" })
      }
      parsed = yield* Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => new InvalidRequest({ detail: "The request body is not valid JSON" })
      })
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        return yield* new InvalidRequest({ detail: "The request body must be a JSON object" })
      }
    }
    return withBody(request, text, parsed)
  })

/**
 * The same request, but its body is the text already read and the JSON already parsed: the router's
 * decoder takes `json` from here rather than reading (and parsing) a second copy of the body.
 */
const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  text: string,
  parsed: unknown
): HttpServerRequest.HttpServerRequest => {
  const headers = Headers.set(Headers.remove(request.headers, "content-length"), "content-type", "application/json")
  return Object.create(request, {
    headers: { value: headers },
    json: { value: Effect.succeed(parsed) },
    text: { value: Effect.succeed(text) },
    arrayBuffer: { value: Effect.sync(() => new TextEncoder().encode(text).buffer) }
  }) as HttpServerRequest.HttpServerRequest
}

/** Stamps the SPEC §1 headers on whatever response the request ends with, errors included. */
const stampHeaders =
  (requestId: string): HttpApp.PreResponseHandler =>
  (request, response) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const headers: Record<string, string> = {
        ...SECURITY_HEADERS,
        "x-icr-api-version": API_VERSION,
        "x-request-id": requestId,
        date: new Date(now).toUTCString()
      }
      if (response.status === 401) headers["www-authenticate"] = 'Bearer error="invalid_token"'
      if (response.status === 405) {
        headers.allow = allowedMethods(pathnameOf(request)).join(", ")
      }
      return HttpServerResponse.setHeaders(response, headers)
    })

const NEWLINE = 0x0a
const jsonContentType = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i

/**
 * Ends every JSON body, problem documents included, with a newline (as `curl` users expect of a
 * terminal). The body is replaced as a whole, so its `Content-Length` is computed from the new bytes.
 */
export const endWithNewline: HttpApp.PreResponseHandler = (_request, response) => {
  const body = response.body
  if (
    body._tag !== "Uint8Array" ||
    body.body.length === 0 ||
    body.body[body.body.length - 1] === NEWLINE ||
    !jsonContentType.test(body.contentType)
  ) {
    return Effect.succeed(response)
  }
  const bytes = new Uint8Array(body.body.length + 1)
  bytes.set(body.body)
  bytes[body.body.length] = NEWLINE
  return Effect.succeed(HttpServerResponse.setBody(response, HttpBody.uint8Array(bytes, body.contentType)))
}

/**
 * The inner middleware: runs inside the API's error encoding, so every failure it raises becomes
 * a problem document through the same schemas the endpoints use.
 */
export const commonRules = HttpApiBuilder.middleware(
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const requestId = requestIdOf(request)
      yield* HttpApp.appendPreResponseHandler(stampHeaders(requestId))
      yield* HttpApp.appendPreResponseHandler(endWithNewline)
      // Rate limits (SPEC §1): the authentication middlewares count an authenticated request
      // against its principal (and fail it with 429 past that budget) before any work is done;
      // whatever authenticated nobody is counted against the client's address once answered, and
      // answers 429 instead past that budget. Liveness checks are never limited; a request with
      // no `cf-connecting-ip` (local dev, tests, a runtime behind no proxy) never by address.
      const limiter = yield* Effect.serviceOption(RateLimiter)
      const limits = makeRequestLimits(Option.getOrUndefined(limiter), request.headers["cf-connecting-ip"])
      if (pathnameOf(request) === "/healthz") yield* limits.exempt
      const outcome = yield* Effect.either(
        serve(app, request).pipe(
          Effect.provideService(RequestLimits, limits),
          Effect.provideService(RequestId, requestId)
        )
      )
      yield* limits.settle
      return yield* outcome
    }).pipe(
      Effect.catchAll((e: unknown) => {
        const problem = translate(e)
        // 429 and 503 tell the client when to come back (SPEC §6), in the header as well as the body.
        const retryAfter =
          problem instanceof RateLimited || problem instanceof Unavailable ? (problem.retryAfter ?? 1) : undefined
        return retryAfter === undefined
          ? Effect.fail(problem)
          : Effect.zipRight(
              HttpApp.appendPreResponseHandler((_request, response) =>
                Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(retryAfter)))
              ),
              Effect.fail(problem)
            )
      }),
      Effect.catchAllDefect((defect) =>
        Effect.zipRight(
          // Only the defect's class reaches the log: its message might quote a request value.
          Effect.logError("defect while handling a request", defect instanceof Error ? defect.name : typeof defect),
          Effect.fail(new Internal({ detail: "Internal error" }))
        )
      )
    ) as unknown as HttpApp.Default,
  // Keeps the issuer's context (an optional RateLimiter among it) visible to every request.
  { withContext: true }
)

/** The checks of SPEC §1 that come before routing, then the router itself. */
const serve = (app: HttpApp.Default, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    const version = request.headers["x-icr-api-version"]
    if (version !== undefined && version !== API_VERSION) {
      return yield* new UnsupportedApiVersion({
        detail: `This server serves API version ${API_VERSION} only`
      })
    }
    const authorization = request.headers.authorization
    if (authorization !== undefined && authorization.length > MAX_AUTHORIZATION_LENGTH) {
      return yield* new InvalidToken({
        detail: `The Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} characters`
      })
    }
    const normalized = yield* normalizeBody(request)
    // The app's error channel is typed `never`, but the router fails with RouteNotFound and
    // HttpApiDecodeError underneath; they are translated below into SPEC §6 problems.
    return yield* Effect.provideService(app, HttpServerRequest.HttpServerRequest, normalized) as Effect.Effect<
      HttpServerResponse.HttpServerResponse,
      unknown
    >
  })

/** Maps the router's own failures to SPEC §6 problems; anything else passes through unchanged. */
const translate = (e: unknown): unknown => {
  if (e instanceof HttpApiDecodeError) {
    const onlyPermissions = e.issues.length > 0 && e.issues.every((i) => i.path[0] === "permissions")
    const detail = e.issues.map(issueText).join("; ") || "The request is malformed"
    return onlyPermissions ? new InvalidPermissions({ detail }) : new InvalidRequest({ detail })
  }
  if (e instanceof RouteNotFound) {
    const pathname = pathnameOf(e.request)
    const allow = allowedMethods(pathname)
    if (allow.length === 0) {
      return new NotFound({ detail: `No route for ${e.request.method} ${redactSecrets(pathname).slice(0, 200)}` })
    }
    // The shape and method match a route, yet the router could not take it: a path it cannot decode.
    if (allow.includes(e.request.method)) {
      return new InvalidRequest({ detail: "The request path is malformed (invalid percent-encoding)" })
    }
    return new MethodNotAllowed({ detail: `${e.request.method} is not allowed here`, allow })
  }
  return e
}
