/**
 * `requireToken` (SPEC §10): what a resource server runs on each request that should carry an ICR
 * access token. The token's standing comes from the issuer ({@link TokenStanding}); then the route's
 * needs are checked — the token kind (`app` / `installation`), the organization, and each permission
 * at a level in SPEC §3's order (`VIEW` < `REQUEST` < `WRITE`). Failures are the issuer's own problem
 * documents: 401 `invalid_token` (with `WWW-Authenticate`), 403 `insufficient_permissions` naming
 * the permission and the level the route requires.
 *
 * Three ways in: {@link requireToken} (an Effect), {@link makeRequireToken} (plain `fetch` handlers,
 * any runtime) and {@link TokenAuth} (an `HttpApi` middleware providing {@link CurrentToken}).
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import {
  levelRank,
  PermissionCatalog,
  type PermissionName,
  PermissionNames,
  type Permissions
} from "../api/Permissions.js"
import { API_VERSION } from "../api/Primitives.js"
import {
  Forbidden,
  InsufficientPermissions,
  InvalidToken,
  PROBLEM_CONTENT_TYPE,
  Problems,
  RateLimited,
  Unavailable
} from "../api/Problems.js"
import type { TokenDescription, TokenKind } from "../api/Tokens.js"
import { wwwAuthenticate } from "../edge/Edge.js"
import { type StandingError, TokenStanding, type TokenStandingOptions, make as makeStanding } from "./TokenStanding.js"

export { TokenStanding } from "./TokenStanding.js"

/** What a route requires of the token it is called with. */
export interface Requirement {
  /** The kinds accepted (default: both `app` and `installation`). */
  readonly kind?: TokenKind | ReadonlyArray<TokenKind> | undefined
  /**
   * The organization the token must be an installation token of (compared case-insensitively).
   * Setting it accepts installation tokens only: an app token belongs to no organization.
   */
  readonly organizationId?: string | undefined
  /** Each permission at this level or a higher one (SPEC §3's order). */
  readonly permissions?: Permissions | undefined
}

/** Why a token that is valid does not serve a route. */
export type RequirementError = InsufficientPermissions | Forbidden

/** Every failure of {@link requireToken}. */
export type RequireTokenError = StandingError | RequirementError

/**
 * What is wrong with a requirement, if anything: a permission name outside SPEC §3's allow-list, a
 * level that name cannot take, or a kind that is neither `app` nor `installation`. A requirement
 * from JavaScript or from configuration is not checked by the compiler, and a typo must refuse every
 * token (fail closed) rather than drop the permission it misspells.
 */
export const requirementProblem = (requirement: Requirement): string | undefined => {
  for (const [name, level] of Object.entries(requirement.permissions ?? {})) {
    if (level === undefined) continue
    if (!Object.hasOwn(PermissionCatalog, name))
      return `names a permission SPEC §3 does not list (${JSON.stringify(name)})`
    const levels: ReadonlyArray<string> = PermissionCatalog[name as PermissionName]
    if (!levels.includes(level as string))
      return `asks ${name} at ${JSON.stringify(level)}, which takes ${levels.join(" or ")}`
  }
  const kinds =
    requirement.kind === undefined ? [] : typeof requirement.kind === "string" ? [requirement.kind] : requirement.kind
  for (const kind of kinds as ReadonlyArray<unknown>)
    if (kind !== "app" && kind !== "installation")
      return `names a token kind that does not exist (${JSON.stringify(kind)})`
  return undefined
}

/** Throws at construction on a requirement {@link requirementProblem} refuses: a route is wired wrong. */
const assertRequirement = (requirement: Requirement): void => {
  const problem = requirementProblem(requirement)
  if (problem !== undefined) throw new TypeError(`requireToken: this route's requirement ${problem}`)
}

/**
 * Whether a valid token serves a route: its kind, its organization, then each permission. A token
 * of the wrong kind or organization holds none of the route's permissions, so it is refused naming
 * the first of them (`forbidden` only for a route that names no permission).
 */
export const check = (
  token: TokenDescription,
  requirement: Requirement
): Exit.Exit<TokenDescription, RequirementError> => {
  const invalid = requirementProblem(requirement)
  // A misconfigured route serves no token: refused, never waved through.
  if (invalid !== undefined)
    return Exit.fail(new Forbidden({ detail: "this route is misconfigured; no token can serve it" }))
  const required = PermissionNames.filter((name) => requirement.permissions?.[name] !== undefined)
  const short = (name: PermissionName, why: string) =>
    Exit.fail(
      new InsufficientPermissions({
        detail: `this route requires ${name}: ${requirement.permissions![name]!}${why}`,
        permission: name,
        level: requirement.permissions![name]!
      })
    )
  const refuse = (why: string) =>
    required.length > 0 ? short(required[0]!, ` (${why})`) : Exit.fail(new Forbidden({ detail: why }))

  const kinds =
    requirement.kind === undefined
      ? undefined
      : typeof requirement.kind === "string"
        ? [requirement.kind]
        : requirement.kind
  if (requirement.organizationId !== undefined && token.kind !== "installation") {
    return refuse("this route takes an installation token of the organization")
  }
  if (kinds !== undefined && !kinds.includes(token.kind)) {
    return refuse(`this route takes ${kinds.map((k) => `an ${k} token`).join(" or ")}`)
  }
  if (
    requirement.organizationId !== undefined &&
    token.organizationId?.toLowerCase() !== requirement.organizationId.toLowerCase()
  ) {
    return refuse("the token is not for this organization")
  }
  for (const name of required) {
    const want = requirement.permissions![name]!
    const have = token.permissions[name]
    if (have === undefined || levelRank(have) < levelRank(want)) return short(name, "")
  }
  return Exit.succeed(token)
}

/** The bearer credential of a request's `Authorization` header, if any. */
export const bearerOf = (headers: Headers): Redacted.Redacted<string> | undefined => {
  const value = headers.get("authorization")
  if (value === null) return undefined
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(value)
  return match === null ? undefined : Redacted.make(match[1]!)
}

/** The request's token, resolved through the issuer and checked against the route's requirement. */
export const requireToken = (
  request: { readonly headers: Headers },
  requirement: Requirement = {}
): Effect.Effect<TokenDescription, RequireTokenError, TokenStanding> =>
  Effect.flatMap(TokenStanding, (standing) => {
    const token = bearerOf(request.headers)
    if (token === undefined) return Effect.fail(new InvalidToken({ detail: "this route requires an ICR access token" }))
    return Effect.flatMap(standing.resolve(token), (description) => check(description, requirement))
  }).pipe(Effect.withSpan("icr.resource.requireToken", { captureStackTrace: false }))

const encoders = new Map<string, (e: unknown) => unknown>()
const encode = (error: RequireTokenError): Record<string, unknown> => {
  let f = encoders.get(error._tag)
  if (f === undefined) {
    f = Schema.encodeSync(Problems[error._tag] as unknown as Schema.Schema<unknown, unknown>)
    encoders.set(error._tag, f)
  }
  return f(error) as Record<string, unknown>
}

/**
 * The headers a refusal carries: `WWW-Authenticate` on 401 (with `error="invalid_token"` only when a
 * credential was sent, SPEC §1) and on 403 (`insufficient_scope`, RFC 6750 §3.1), `Retry-After` on
 * 429 and 503, `no-store`, and the API version.
 */
export const problemHeaders = (error: RequireTokenError, credentialSent: boolean): Record<string, string> => {
  const headers: Record<string, string> = {
    "content-type": PROBLEM_CONTENT_TYPE,
    "cache-control": "no-store",
    "x-icr-api-version": API_VERSION
  }
  if (error._tag === "InvalidToken") headers["www-authenticate"] = wwwAuthenticate(credentialSent)
  if (error._tag === "InsufficientPermissions") {
    headers["www-authenticate"] = `Bearer realm="icr-apps", error="insufficient_scope"`
  }
  if ((error._tag === "RateLimited" || error._tag === "Unavailable") && error.retryAfter !== undefined) {
    headers["retry-after"] = String(error.retryAfter)
  }
  return headers
}

/** A refusal as the issuer would answer it: an RFC 9457 problem document. */
export const problemResponse = (error: RequireTokenError, request?: { readonly headers: Headers }): Response =>
  new Response(`${JSON.stringify(encode(error))}\n`, {
    status: error.status,
    headers: problemHeaders(error, request === undefined ? true : request.headers.get("authorization") !== null)
  })

/** A `fetch` handler of a protected route: the request, the checked token, and whatever else the runtime passes. */
export type TokenHandler<Rest extends ReadonlyArray<unknown>> = (
  request: Request,
  token: TokenDescription,
  ...rest: Rest
) => Response | Promise<Response>

/** {@link requireToken} for code that does not use Effect (a Worker's `fetch`, Deno.serve, Bun.serve, Node). */
export interface RequireTokenGuard {
  /** The checked token, or the problem response to answer with. */
  readonly check: (
    request: Request,
    requirement?: Requirement
  ) => Promise<
    { readonly ok: true; readonly token: TokenDescription } | { readonly ok: false; readonly response: Response }
  >
  /** Wraps a handler: it runs only with a token that meets `requirement`; any other request gets the problem. */
  readonly route: <Rest extends ReadonlyArray<unknown>>(
    requirement: Requirement,
    handler: TokenHandler<Rest>
  ) => (request: Request, ...rest: Rest) => Promise<Response>
}

/** Makes the plain-`fetch` guard over one issuer (one standing cache per guard). */
export const makeRequireToken = (options: TokenStandingOptions): RequireTokenGuard => {
  const standing = Effect.runSync(makeStanding(options))
  const check: RequireTokenGuard["check"] = async (request, requirement = {}) => {
    const exit = await Effect.runPromiseExit(
      Effect.provideService(requireToken(request, requirement), TokenStanding, standing)
    )
    if (Exit.isSuccess(exit)) return { ok: true, token: exit.value }
    const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    return {
      ok: false,
      response: problemResponse(
        failure ?? new Unavailable({ detail: "the token could not be checked", retryAfter: 1 }),
        request
      )
    }
  }
  return {
    check,
    route: (requirement, handler) => {
      assertRequirement(requirement)
      return async (request, ...rest) => {
        const result = await check(request, requirement)
        return result.ok ? handler(request, result.token, ...rest) : result.response
      }
    }
  }
}

/** The checked token of the current request, as {@link TokenAuth} provides it. */
export class CurrentToken extends Context.Tag("@icr-apps/core/CurrentToken")<CurrentToken, TokenDescription>() {}

/**
 * An `HttpApi` middleware: resolves the request's bearer token through {@link TokenStanding} (401
 * `invalid_token`, 429, 503 otherwise) and provides it as {@link CurrentToken}; handlers then ask
 * for what their route needs with {@link requires}.
 */
export class TokenAuth extends HttpApiMiddleware.Tag<TokenAuth>()("@icr-apps/core/TokenAuth", {
  failure: Schema.Union(Problems.InvalidToken, Problems.RateLimited, Problems.Unavailable),
  provides: CurrentToken,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Sets the `WWW-Authenticate` / `Retry-After` headers of a refusal on the response the API encodes. */
const withProblemHeaders = <A, E extends RequireTokenError, R>(effect: Effect.Effect<A, E, R>, credentialSent = true) =>
  Effect.tapError(effect, (error) => {
    const { "www-authenticate": challenge, "retry-after": retryAfter } = problemHeaders(error, credentialSent)
    return HttpApp.appendPreResponseHandler((_request, response) =>
      Effect.succeed(
        HttpServerResponse.setHeaders(response, {
          ...(challenge !== undefined ? { "www-authenticate": challenge } : {}),
          ...(retryAfter !== undefined ? { "retry-after": retryAfter } : {})
        })
      )
    )
  })

/** {@link TokenAuth} over the {@link TokenStanding} in context. */
export const layerTokenAuth: Layer.Layer<TokenAuth, never, TokenStanding> = Layer.effect(
  TokenAuth,
  Effect.map(TokenStanding, (standing) =>
    TokenAuth.of({
      bearer: (token) =>
        withProblemHeaders(
          Redacted.value(token) === ""
            ? Effect.fail(new InvalidToken({ detail: "this route requires an ICR access token" }))
            : standing.resolve(token),
          Redacted.value(token) !== ""
        )
    })
  )
)

/** Inside a handler behind {@link TokenAuth}: the current token, if it meets `requirement` (else 403). */
export const requires = (requirement: Requirement): Effect.Effect<TokenDescription, RequirementError, CurrentToken> =>
  withProblemHeaders(Effect.flatMap(CurrentToken, (token) => check(token, requirement)))

/** The standing service and the middleware, for one issuer. */
export const layer = (options: TokenStandingOptions): Layer.Layer<TokenAuth | TokenStanding> =>
  layerTokenAuth.pipe(Layer.provideMerge(Layer.effect(TokenStanding, makeStanding(options))))

/** Re-exported for `catchTag` users. */
export { Forbidden, InsufficientPermissions, InvalidToken, RateLimited, Unavailable }
