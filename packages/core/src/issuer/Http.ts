/**
 * The issuer's HTTP edge: the shared rules of SPEC §1 (`../edge/Edge.ts`) configured for the issuer
 * — its API version, 401 for an over-long credential, JSON bodies, its problems — with what only the
 * issuer does around them: `/healthz` answered before the router, and the per-address rate limit of
 * whatever authenticated nobody, counted once the request is answered.
 */
import type { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Runtime from "effect/Runtime"
import { API_VERSION } from "../api/Primitives.js"
import { InvalidPermissions, InvalidRequest, InvalidToken, Problems } from "../api/Problems.js"
import { allowedMethods } from "../api/Routes.js"
import { MAX_BODY_BYTES } from "../edge/Body.js"
import {
  type Answer,
  httpDate,
  issueText,
  MAX_AUTHORIZATION_LENGTH,
  makeEdge,
  pathnameOf,
  problemEncoder,
  redactSecrets,
  SECURITY_HEADERS
} from "../edge/Edge.js"
import { RequestId, requestIdOf } from "../edge/RequestId.js"
import type { DirectPath } from "./Direct.js"
import { makeRequestLimits, type RateLimiter, type RequestLimitsService } from "./RateLimiter.js"

export { allowedMethods, MAX_AUTHORIZATION_LENGTH, MAX_BODY_BYTES, RequestId, redactSecrets, SECURITY_HEADERS }

/**
 * A decode failure of the router as a problem: 422 `invalid_permissions` when every issue is in the
 * `permissions` member (an unknown name or level, an empty grant), else 400 `invalid_request`.
 */
const decodeFailure = (e: HttpApiDecodeError) => {
  const onlyPermissions = e.issues.length > 0 && e.issues.every((i) => i.path[0] === "permissions")
  const detail = e.issues.map(issueText).join("; ") || "The request is malformed"
  return onlyPermissions ? new InvalidPermissions({ detail }) : new InvalidRequest({ detail })
}

/** SPEC §1 as the issuer applies it. */
export const issuerEdge = makeEdge({
  name: "issuer",
  apiVersion: API_VERSION,
  overlongCredential: () =>
    new InvalidToken(
      { detail: `The Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} characters` },
      true
    ),
  bodies: "json",
  allowedMethods,
  decodeFailure,
  encode: problemEncoder(Problems)
})

const HEALTHZ_BODY = '{"status":"ok"}\n'
const HEALTHZ_LENGTH = String(new TextEncoder().encode(HEALTHZ_BODY).byteLength)

/** Whether a request is a liveness check: `GET` or `HEAD /healthz`, spelt exactly so. */
const isLiveness = (method: string, url: string): boolean =>
  (method === "GET" || method === "HEAD") && url.includes("/healthz") && pathnameOf(url) === "/healthz"

/**
 * `GET`/`HEAD /healthz` answered before the router, with exactly the router's answer (SPEC §1
 * headers and the final newline included) for a fraction of the cost: liveness probes are the most
 * frequent request and need no service. It stays in the `HttpApi` definition, so OpenAPI still
 * documents it. Any request §1 would refuse on its headers, or any other spelling of the path, is
 * left to the router: `undefined`.
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
  if (issuerEdge.refusedByHeaders(headers) !== undefined) return undefined
  // The HTTP date is wall-clock time by definition.
  const common = issuerEdge.commonHeaders(requestIdOf(headers.get("x-request-id")), httpDate(Date.now()))
  common["content-type"] = "application/json"
  common["content-length"] = HEALTHZ_LENGTH
  return new Response(method === "HEAD" ? null : HEALTHZ_BODY, { status: 200, headers: common })
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
  /** The direct path of the hot requests (`Direct.ts`), when the issuer takes it. */
  readonly direct?: DirectPath | undefined
  /** The issuer's runtime: its services, its `Clock`, its logger. */
  readonly runtime: Runtime.Runtime<never>
  /** The rate limiter, when the issuer has one. */
  readonly limiter: RateLimiter["Type"] | undefined
  /** The issuer's clock, read for `Date`. */
  readonly clock: Clock.Clock
}

/**
 * The issuer's `fetch` handler: the common rules of SPEC §1 around `router` (made by `build` on the
 * first request that reaches it, and kept).
 *
 * Rate limits (SPEC §1): the authentication middlewares count an authenticated request against its
 * principal (and fail it with 429 past that budget) before any work is done; whatever authenticated
 * nobody is counted against the client's address once answered, and answers 429 instead past that
 * budget. Liveness checks are never limited; a request with no client address (local dev, tests,
 * a runtime that trusts no header and was given no peer) never by address.
 */
export const withCommonRules = (
  build: () => Promise<Router>,
  addressOf: ClientAddressOf = cloudflareClientAddress
): ((request: Request, connection?: Connection) => Promise<Answer>) => {
  const handler = issuerEdge.serveAnswers(async () => {
    const router = await build()
    return {
      begin: (request: Request, connection: Connection | undefined) =>
        makeRequestLimits(router.limiter, addressOf(request, connection)),
      route: router.route,
      direct: router.direct,
      end: (request: Request, limits: RequestLimitsService) => {
        // Liveness checks are never limited; anything else sent to /healthz is (405 is not free to send).
        const settle = isLiveness(request.method.toUpperCase(), request.url) ? undefined : limits.settle()
        return settle === undefined ? undefined : Effect.runPromiseExit(Effect.provide(settle, router.runtime))
      },
      clock: router.clock,
      logDefect: (name: string) =>
        Effect.runSync(Effect.provide(Effect.logError("defect while handling a request", name), router.runtime))
    }
  })
  return (request, connection) => {
    const healthz = healthzBeforeRouter(request)
    return healthz === undefined ? handler(request, connection) : Promise.resolve(healthz)
  }
}
