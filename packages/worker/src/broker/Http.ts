/**
 * The broker's HTTP rules around its router, in one place to audit: security and no-store
 * headers on every answer, a request id, size limits (16 KiB bodies, 8 KiB Authorization), form
 * or JSON bodies for the token endpoint, and a problem document for every failure — the router's
 * own (404, 405 with `Allow`, undecodable input) and defects (500 `internal`, nothing leaked).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApp from "@effect/platform/HttpApp"
import * as Headers from "@effect/platform/Headers"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { RouteNotFound } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import {
  Internal,
  InvalidRequest,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  RateLimited,
  Unavailable
} from "./Problems.js"

/** The request id of the current request (the caller's `x-request-id` when sane, else a fresh UUID). */
export class RequestId extends Context.Tag("@icr-apps/worker/broker/RequestId")<RequestId, string>() {}

/** The largest request body accepted. */
export const MAX_BODY_BYTES = 16 * 1024
/** The longest `Authorization` value accepted. */
export const MAX_AUTHORIZATION_LENGTH = 8 * 1024

/** Headers on every response (token answers must not be stored: RFC 6749 §5.1). */
const RESPONSE_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  pragma: "no-cache",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=63072000; includeSubDomains"
}

const ROUTES: ReadonlyArray<{ readonly path: string; readonly methods: ReadonlyArray<string> }> = [
  { path: "/token", methods: ["POST"] },
  { path: "/installations", methods: ["GET", "HEAD"] },
  { path: "/healthz", methods: ["GET", "HEAD"] },
  { path: "/openapi.json", methods: ["GET", "HEAD"] }
]

const pathnameOf = (url: string) => new URL(url, "http://localhost").pathname

const tooLarge = () => new PayloadTooLarge({ detail: `Request bodies are limited to ${MAX_BODY_BYTES} bytes` })

/** Reads the body (at most {@link MAX_BODY_BYTES}) of a request that has one. */
const bodyText = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    const declared = request.headers["content-length"]
    if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) return yield* tooLarge()
    const source = request.source
    if (!(source instanceof Request) || source.body === null) {
      return yield* Effect.mapError(request.text, () => new InvalidRequest({ detail: "The body could not be read" }))
    }
    const bytes = yield* Effect.tryPromise({
      try: async () => {
        const reader = source.body!.getReader()
        const chunks: Array<Uint8Array> = []
        let size = 0
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          size += value.byteLength
          if (size > MAX_BODY_BYTES) {
            await reader.cancel().catch(() => {})
            return undefined
          }
          chunks.push(value)
        }
        const out = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          out.set(chunk, offset)
          offset += chunk.byteLength
        }
        return out
      },
      catch: () => new InvalidRequest({ detail: "The body could not be read" })
    })
    if (bytes === undefined) return yield* tooLarge()
    return new TextDecoder().decode(bytes)
  })

/**
 * A token request's body, form (RFC 8693) or JSON, as one JSON object of strings for the
 * router's decoder. A parameter sent twice is refused (RFC 6749 §3.2).
 */
const normalizeBody = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    if (!HttpMethod.hasBody(request.method)) return request
    const text = yield* bodyText(request)
    const contentType = (request.headers["content-type"] ?? "").toLowerCase()
    let body: Record<string, unknown> = {}
    if (text.trim() !== "") {
      if (contentType.startsWith("application/x-www-form-urlencoded")) {
        const params = new URLSearchParams(text)
        for (const [name, value] of params) {
          if (name in body) return yield* new InvalidRequest({ detail: `${name.slice(0, 64)} is given more than once` })
          body[name] = value
        }
      } else if (/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/.test(contentType)) {
        const parsed = yield* Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: () => new InvalidRequest({ detail: "The body is not valid JSON" })
        })
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
          return yield* new InvalidRequest({ detail: "The body must be a JSON object" })
        body = parsed as Record<string, unknown>
      } else {
        return yield* new InvalidRequest({
          detail: "Send the body as application/x-www-form-urlencoded or application/json"
        })
      }
    }
    return withBody(request, body)
  })

/**
 * The same request, its body now the object already read and checked: the router's decoder takes
 * `json` from here instead of reading and parsing a copy (a new `Request` per exchange cost ~7 % of
 * a warm exchange's CPU).
 */
const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  body: Record<string, unknown>
): HttpServerRequest.HttpServerRequest => {
  const headers = Headers.set(Headers.remove(request.headers, "content-length"), "content-type", "application/json")
  const text = Effect.sync(() => JSON.stringify(body))
  return Object.create(request, {
    headers: { value: headers },
    json: { value: Effect.succeed(body) },
    text: { value: text },
    arrayBuffer: { value: Effect.map(text, (t) => new TextEncoder().encode(t).buffer) }
  }) as HttpServerRequest.HttpServerRequest
}

/** The router's own failures as problems; anything else unchanged. */
const translate = (e: unknown): unknown => {
  if (e instanceof HttpApiDecodeError) {
    const issue = e.issues[0]
    const where = issue === undefined || issue.path.length === 0 ? "request" : issue.path.map(String).join(".")
    return new InvalidRequest({ detail: `${where.slice(0, 64)}: must be a string` })
  }
  if (e instanceof RouteNotFound) {
    const pathname = pathnameOf(e.request.url)
    const route = ROUTES.find((r) => r.path === pathname)
    if (route === undefined) return new NotFound({ detail: "No such route" })
    return new MethodNotAllowed({ detail: `${e.request.method} is not allowed here`, allow: [...route.methods] })
  }
  return e
}

const requestIdOf = (request: HttpServerRequest.HttpServerRequest) => {
  const given = request.headers["x-request-id"]
  return given !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : crypto.randomUUID()
}

/** SPEC-style HTTP rules: headers, request id, size limits, problem documents for every failure. */
export const httpRules = HttpApiBuilder.middleware(
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const requestId = requestIdOf(request)
      yield* HttpApp.appendPreResponseHandler((req, response) =>
        Effect.succeed(
          HttpServerResponse.setHeaders(response, {
            ...RESPONSE_HEADERS,
            "x-request-id": requestId,
            ...(response.status === 405
              ? { allow: (ROUTES.find((r) => r.path === pathnameOf(req.url))?.methods ?? []).join(", ") }
              : {})
          })
        )
      )
      const authorization = request.headers.authorization
      if (authorization !== undefined && authorization.length > MAX_AUTHORIZATION_LENGTH)
        return yield* new InvalidRequest({ detail: "The Authorization header is too long" })
      const normalized = yield* normalizeBody(request)
      return yield* app.pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, normalized),
        Effect.provideService(RequestId, requestId)
      ) as Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>
    }).pipe(
      Effect.catchAll((e: unknown) => {
        const problem = translate(e)
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
          Effect.logError(
            "broker: defect while handling a request",
            defect instanceof Error ? defect.name : typeof defect
          ),
          Effect.fail(new Internal({ detail: "Internal error" }))
        )
      )
    ) as unknown as HttpApp.Default,
  { withContext: true }
)
