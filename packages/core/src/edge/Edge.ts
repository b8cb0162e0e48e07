/**
 * One HTTP edge for both workers: the rules of SPEC §1 that are the same work on every request,
 * as a plain `fetch`-style wrapper around a router — the version header (where there is one), the
 * request id, the `Authorization` and body caps, a problem document for every failure (404/405/413,
 * decode errors, defects, which never leak), `WWW-Authenticate` on 401, `Allow` on 405,
 * `Retry-After` on 429 and 503, the security headers, `Date` and the final newline.
 *
 * The issuer (`issuer/Http.ts`) and the broker (`@icr-apps/core/edge/Edge` in the worker) each give
 * an {@link EdgeConfig}: what differs between them (the broker sends no `x-icr-api-version` and
 * answers an over-long credential with 400 `invalid_request`, SPEC §8) is configuration, not a copy.
 * None of it runs as Effect middleware: it is done once per request in plain code around one fiber
 * (the router's), with the static headers built once.
 */
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { RouteNotFound } from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import {
  Internal,
  InvalidRequest,
  MethodNotAllowed,
  NotFound,
  PROBLEM_CONTENT_TYPE,
  type ProblemDocument,
  UnsupportedApiVersion
} from "../api/Problems.js"
import {
  type BodyFormats,
  type CheckedBody,
  isJsonContentType,
  MAX_BODY_BYTES,
  readBody,
  tooLarge,
  toServerRequest
} from "./Body.js"
import { requestIdOf } from "./RequestId.js"

/**
 * An answer as the edge builds it: the status, every header and the whole body (none for HEAD).
 * A server that writes its own bytes (`node:http`) writes it as it is; every other host returns the
 * web `Response` {@link toResponse} makes of it. A body that is not plain bytes or text (no endpoint
 * here answers one) comes as the `Response` the platform built.
 *
 * The body is text (sent as UTF-8; its `content-length` is in the headers) where the edge made it
 * from JSON — problem documents and the direct path's answers —, and bytes where the router made
 * them. Text is not turned into bytes here: a runtime copies a string into its own buffer once,
 * while every `Uint8Array` is a buffer of the JavaScript heap's outside it, allocated, tracked and
 * swept — on Deno that was a fifth of a token use's CPU (see STORAGE.md, "Benchmark").
 */
export interface PlainAnswer {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string | Uint8Array | undefined
}

/** What the edge answers: a {@link PlainAnswer}, or a `Response` built by the platform. */
export type Answer = PlainAnswer | Response

/** The web `Response` of an answer. */
export const toResponse = (answer: Answer): Response =>
  answer instanceof Response
    ? answer
    : new Response(answer.body as string | Uint8Array<ArrayBuffer> | undefined, {
        status: answer.status,
        headers: answer.headers
      })

/** The longest `Authorization` value accepted (SPEC §1). */
export const MAX_AUTHORIZATION_LENGTH = 8 * 1024

/** The realm of every `WWW-Authenticate` challenge (SPEC §1). */
export const REALM = "icr-apps"

/**
 * The headers of a response of a server with an API version and no headers of its own (the issuer):
 * the security headers, `no-store` (token answers must never be cached: SPEC §1, RFC 6749 §5.1), the
 * version, the request id and `Date`. A fresh object per response, written as a literal: V8 makes
 * it from a template, where copying a constant object's properties costs microseconds.
 */
const versionedHeaders = (apiVersion: string, requestId: string, date: string): Record<string, string> => ({
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=63072000; includeSubDomains",
  "cache-control": "no-store",
  "x-icr-api-version": apiVersion,
  "x-request-id": requestId,
  date
})

/** What every response carries, whatever its status and server: the security headers and `no-store`. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = (() => {
  const { "x-icr-api-version": _v, "x-request-id": _id, date: _d, ...security } = versionedHeaders("", "", "")
  return security
})()

/** The wire forms of the problems a server answers with: the document of a problem error, or `undefined` for anything else. */
export type ProblemEncoder = (failure: unknown) => ProblemDocument | undefined

/**
 * A {@link ProblemEncoder} over wire schemas keyed by error tag (core's `Problems`, the broker's):
 * each schema compiled on first use.
 */
export const problemEncoder = (schemas: Readonly<Record<string, Schema.Schema<any, any>>>): ProblemEncoder => {
  const encoders = new Map<string, (problem: unknown) => ProblemDocument>()
  return (failure) => {
    if (typeof failure !== "object" || failure === null) return undefined
    const tag = (failure as { readonly _tag?: unknown })._tag
    if (typeof tag !== "string" || !Object.hasOwn(schemas, tag)) return undefined
    let encode = encoders.get(tag)
    if (encode === undefined) {
      encode = Schema.encodeSync(schemas[tag] as Schema.Schema<unknown, ProblemDocument>)
      encoders.set(tag, encode)
    }
    return encode(failure)
  }
}

/** What tells one edge from another. */
export interface EdgeConfig {
  /** Who is served (`issuer`, `broker`): named in the log when it cannot be built. */
  readonly name: string
  /**
   * The API version (SPEC §1 `x-icr-api-version`): a request naming another is refused, every
   * response carries it. Absent: the header is neither checked nor sent (the broker, SPEC §8).
   */
  readonly apiVersion?: string | undefined
  /** Headers every response carries besides {@link SECURITY_HEADERS} (the broker's `pragma: no-cache`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** What an `Authorization` value over {@link MAX_AUTHORIZATION_LENGTH} is answered with (401 or, on the broker, 400). */
  readonly overlongCredential: () => unknown
  /** Which request bodies are taken. */
  readonly bodies: BodyFormats
  /** The methods served at a path (405's `Allow`; none: 404), from the API definition. */
  readonly allowedMethods: (pathname: string) => ReadonlyArray<string>
  /** What the router's failure to decode a request (path, query, headers, body) is answered with. */
  readonly decodeFailure: (e: HttpApiDecodeError) => unknown
  /** The wire form of every problem this server answers with (including {@link Internal} and the edge's own). */
  readonly encode: ProblemEncoder
}

/** A server behind an edge: its router and what runs around it, built once per isolate. */
export interface Backend<Extra, State> {
  /** What a request carries through (the issuer's rate limits), made before anything is checked. */
  readonly begin: (request: Request, extra: Extra | undefined) => State
  /**
   * Routes one request that passed the checks before routing: the endpoint's response, or why
   * there is none (a problem, a router failure, a defect).
   */
  readonly route: (
    request: HttpServerRequest.HttpServerRequest,
    requestId: string,
    state: State
  ) => Promise<Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>>
  /**
   * Answers, without the router, a request that passed the checks before routing, when the server
   * has a shorter path for it: `undefined` (or a promise of it) when it has none and the request is
   * routed. An answer given here stands exactly where the router's would.
   */
  readonly direct?:
    | ((
        request: Request,
        body: CheckedBody | undefined,
        requestId: string,
        state: State
      ) => Promise<Exit.Exit<HttpServerResponse.HttpServerResponse, unknown> | undefined> | undefined)
    | undefined
  /**
   * Runs once a request is answered, however; a failure replaces the answer (the issuer counts
   * what authenticated nobody against the client's address, and past that budget answers 429).
   */
  readonly end?: ((request: Request, state: State) => Promise<Exit.Exit<unknown, unknown>> | undefined) | undefined
  /** The clock `Date` is read from. */
  readonly clock: Clock.Clock
  /** Records a defect by its class only (its message might quote a request value). */
  readonly logDefect: (name: string) => void
}

/** The path of a URL, which may be relative (it is on some runtimes). */
export const pathnameOf = (url: string): string => new URL(url, "http://localhost").pathname

/** The `Date` header, made once per second of the clock it is given. */
export const httpDate = (() => {
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

/**
 * `WWW-Authenticate` on a 401 (SPEC §1, RFC 6750 §3.1): the realm, and `error="invalid_token"` only
 * when the request sent credentials (an `Authorization` header) — one that sent none is told only
 * how to authenticate.
 */
export const wwwAuthenticate = (credentialsSent: boolean): string =>
  credentialsSent ? `Bearer realm="${REALM}", error="invalid_token"` : `Bearer realm="${REALM}"`

/** Whether a request sent credentials: an `Authorization` header with a value. */
export const sentCredentials = (headers: globalThis.Headers): boolean => {
  const authorization = headers.get("authorization")
  return authorization !== null && authorization.trim() !== ""
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

/** A decode failure's issue as text, with any echoed value cut off (it may be a secret). */
export const issueText = (issue: { readonly path: ReadonlyArray<PropertyKey>; readonly message: string }): string => {
  const where = issue.path.length === 0 ? "request" : issue.path.map((p) => String(p).slice(0, 64)).join(".")
  const message = issue.message
    .replace(/,?\s*actual[\s\S]*$/i, "")
    .replace(/\s+/g, " ")
    .trim()
  return redactSecrets(`${where}: ${message.length > 200 ? `${message.slice(0, 200)}…` : message}`)
}

const encoder = new TextEncoder()
const NEWLINE = 0x0a
/** A character other than printable ASCII and the newline (what a JSON answer is nearly always made of). */
const BEYOND_PRINTABLE_ASCII = /[^\n\x20-\x7e]/

/** The length of `text` in UTF-8, in bytes: its length when every character is one byte, else counted. */
export const utf8Length = (text: string): number =>
  BEYOND_PRINTABLE_ASCII.test(text) ? encoder.encode(text).byteLength : text.length

/**
 * A JSON answer as text, for the edge to send as it is (its final newline included): what the direct
 * path answers with instead of `HttpServerResponse.unsafeJson`'s bytes (see {@link PlainAnswer}).
 */
export const jsonText = (
  body: unknown,
  options: { readonly status: number; readonly contentType: string }
): HttpServerResponse.HttpServerResponse => HttpServerResponse.raw(`${JSON.stringify(body)}\n`, options)

/** An edge: the checks and answers of SPEC §1 under one {@link EdgeConfig}, and the handler that applies them. */
export interface Edge {
  /**
   * What every response carries besides its own headers: {@link SECURITY_HEADERS}, the configured
   * ones, the API version (if any), the request id and `Date`. A fresh object per response.
   */
  readonly commonHeaders: (requestId: string, date: string) => Record<string, string>
  /**
   * The checks on the headers, before anything is read: the API version, a declared body over
   * {@link MAX_BODY_BYTES} (whatever the method), the `Authorization` cap. `undefined` when they pass.
   */
  readonly refusedByHeaders: (headers: globalThis.Headers) => unknown
  /**
   * The `fetch` handler: the rules around the backend `build` makes on the first request that
   * reaches it (a build that fails is tried again by the next request, never kept).
   */
  readonly serve: <Extra, State>(
    build: () => Promise<Backend<Extra, State>>
  ) => (request: Request, extra?: Extra) => Promise<Response>
  /** As {@link serve}, each answer before it is made a `Response` (see {@link Answer}). */
  readonly serveAnswers: <Extra, State>(
    build: () => Promise<Backend<Extra, State>>
  ) => (request: Request, extra?: Extra) => Promise<Answer>
}

/** The edge of one server. */
export const makeEdge = (config: EdgeConfig): Edge => {
  const { apiVersion, encode } = config
  const fixed: Readonly<Record<string, string>> = { ...SECURITY_HEADERS, ...config.headers }

  const commonHeaders =
    apiVersion !== undefined && config.headers === undefined
      ? (requestId: string, date: string): Record<string, string> => versionedHeaders(apiVersion, requestId, date)
      : (requestId: string, date: string): Record<string, string> => {
          const headers: Record<string, string> = { ...fixed }
          if (apiVersion !== undefined) headers["x-icr-api-version"] = apiVersion
          headers["x-request-id"] = requestId
          headers.date = date
          return headers
        }

  const refusedByHeaders = (headers: globalThis.Headers): unknown => {
    if (apiVersion !== undefined) {
      const version = headers.get("x-icr-api-version")
      if (version !== null && version !== apiVersion) {
        return new UnsupportedApiVersion({ detail: `This server serves API version ${apiVersion} only` }, true)
      }
    }
    const declared = headers.get("content-length")
    if (declared !== null && Number(declared) > MAX_BODY_BYTES) return tooLarge()
    const authorization = headers.get("authorization")
    if (authorization !== null && authorization.length > MAX_AUTHORIZATION_LENGTH) return config.overlongCredential()
    return undefined
  }

  /** The router's own failures as problems; anything the server answers already passes through. */
  const translate = (e: unknown): unknown => {
    if (e instanceof HttpApiDecodeError) return config.decodeFailure(e)
    if (e instanceof RouteNotFound) {
      const allow = config.allowedMethods(pathnameOf(e.request.url))
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
    return e
  }

  /** The document a failure is answered with; a defect (or any failure that is no problem) is logged by its class only. */
  const documentOf = (cause: Cause.Cause<unknown>, logDefect: (name: string) => void): ProblemDocument => {
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") {
      const document = encode(translate(failure.value))
      if (document !== undefined) return document
    }
    const defect = failure._tag === "Some" ? failure.value : Cause.squash(cause)
    logDefect(defect instanceof Error ? defect.name : typeof defect)
    return internal()
  }

  const internal = () => encode(new Internal({ detail: "Internal error" }))!

  /** The headers SPEC §1 puts on some statuses: `WWW-Authenticate` on 401, `Allow` on 405. */
  const byStatus = (headers: Record<string, string>, status: number, url: string, credentials: boolean): void => {
    if (status === 401) headers["www-authenticate"] = wwwAuthenticate(credentials)
    if (status === 405) headers.allow = config.allowedMethods(pathnameOf(url)).join(", ")
  }

  /**
   * The answer to send for a response or a problem, in one pass: the common headers over the
   * answer's own, the headers of its status, and every JSON body, problem documents included,
   * ending with a newline.
   */
  const toAnswer = (
    answer: HttpServerResponse.HttpServerResponse | ProblemDocument,
    request: Request,
    requestId: string,
    now: number
  ): Answer => {
    const method = request.method.toUpperCase()
    const headers = commonHeaders(requestId, httpDate(now))
    const credentials = sentCredentials(request.headers)
    if (HttpServerResponse.isServerResponse(answer)) {
      let body: string | Uint8Array | undefined
      const own = answer.headers
      for (const name in own) if (!(name in headers)) headers[name] = own[name]!
      byStatus(headers, answer.status, request.url, credentials)
      const answerBody = answer.body
      if (answerBody._tag === "Uint8Array") {
        body = answerBody.body
        if (body.length > 0 && body[body.length - 1] !== NEWLINE && isJsonContentType(answerBody.contentType)) {
          const ended = new Uint8Array(body.length + 1)
          ended.set(body)
          ended[body.length] = NEWLINE
          body = ended
          headers["content-length"] = String(ended.length)
        }
      } else if (answerBody._tag === "Raw" && typeof answerBody.body === "string") {
        // Text ({@link jsonText}): sent as it is, a JSON text ending with a newline like every other.
        const text = answerBody.body
        const json = answerBody.contentType !== undefined && isJsonContentType(answerBody.contentType)
        body = json && !text.endsWith("\n") ? `${text}\n` : text
        headers["content-length"] = String(utf8Length(body))
      } else if (answerBody._tag !== "Empty") {
        // Not a plain body (no endpoint here answers one): the platform converts it.
        return HttpServerResponse.toWeb(HttpServerResponse.setHeaders(answer, headers), {
          withoutBody: method === "HEAD"
        })
      }
      return { status: answer.status, headers, body: method === "HEAD" ? undefined : body }
    }
    const document = answer
    const body = `${JSON.stringify(document)}\n`
    headers["content-type"] = PROBLEM_CONTENT_TYPE
    headers["content-length"] = String(utf8Length(body))
    // 429 and 503 tell the client when to come back (SPEC §6), in the header as well as the body.
    if (document.status === 429 || document.status === 503) {
      headers["retry-after"] = String(typeof document.retryAfter === "number" ? document.retryAfter : 1)
    }
    byStatus(headers, document.status, request.url, credentials)
    return { status: document.status, headers, body: method === "HEAD" ? undefined : body }
  }

  /** Serves a backend: every request's {@link Answer}. */
  const serveAnswers = <Extra, State>(build: () => Promise<Backend<Extra, State>>) => {
    let backend: Backend<Extra, State> | undefined
    let building: Promise<Backend<Extra, State>> | undefined
    return async (request: Request, extra?: Extra): Promise<Answer> => {
      const requestId = requestIdOf(request.headers.get("x-request-id"))
      if (backend === undefined) {
        // A build that fails is tried again by the next request, never cached as a broken isolate.
        building ??= build().catch((e: unknown) => {
          building = undefined
          throw e
        })
        try {
          backend = await building
        } catch (e) {
          // Only the failure's class reaches the log: its message might quote configuration.
          console.error(`the ${config.name} could not be built:`, e instanceof Error ? e.name : typeof e)
          return toAnswer(internal(), request, requestId, Date.now())
        }
      }
      const { logDefect } = backend
      const state = backend.begin(request, extra)
      let answer: HttpServerResponse.HttpServerResponse | ProblemDocument
      const refused = refusedByHeaders(request.headers)
      if (refused !== undefined) answer = encode(refused) ?? internal()
      else {
        const method = request.method.toUpperCase() as HttpMethod.HttpMethod
        const body = HttpMethod.hasBody(method) ? await readBody(request, config.bodies) : undefined
        if (body !== undefined && !("parsed" in body)) answer = encode(body) ?? internal()
        else {
          const direct = backend.direct?.(request, body, requestId, state)
          const routed =
            (direct === undefined ? undefined : await direct) ??
            (await backend.route(toServerRequest(request, body), requestId, state))
          answer = Exit.isSuccess(routed) ? routed.value : documentOf(routed.cause, logDefect)
        }
      }
      const ending = backend.end?.(request, state)
      if (ending !== undefined) {
        const ended = await ending
        if (Exit.isFailure(ended)) answer = documentOf(ended.cause, logDefect)
      }
      return toAnswer(answer, request, requestId, backend.clock.unsafeCurrentTimeMillis())
    }
  }

  /** Serves a backend: every request's web `Response`. */
  const serve = <Extra, State>(build: () => Promise<Backend<Extra, State>>) => {
    const answers = serveAnswers(build)
    return async (request: Request, extra?: Extra): Promise<Response> => toResponse(await answers(request, extra))
  }

  return { commonHeaders, refusedByHeaders, serve, serveAnswers }
}
