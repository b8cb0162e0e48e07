/**
 * The issuer's three authentication middlewares (SPEC §2, §5): App JWTs ({@link AppAuth}), access
 * tokens ({@link TokenAuth}) and the operator token ({@link AdminAuth}). Each counts the request
 * against its principal (SPEC §1) once it knows who that is; failed operator authentications are
 * audited, at a bounded rate.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { AdminAuth, AppAuth, TokenAuth } from "../api/Api.js"
import { Uuid } from "../api/Primitives.js"
import { AdminDisabled, InvalidJwt, InvalidToken, MissingCredentials } from "../api/Problems.js"
import { AccessTokens } from "./AccessTokens.js"
import * as AuditLog from "./AuditLog.js"
import { IssuerConfig, MIN_ADMIN_TOKEN_LENGTH } from "./Config.js"
import * as JwtVerifier from "./JwtVerifier.js"
import { principalKey, RequestLimits } from "./RateLimiter.js"
import type { StoredToken } from "../api/Tokens.js"
import type { InstallationRecord } from "./Registry.js"
import { asProblems } from "./StorageProblems.js"
import { secretsEqual as equalSecrets } from "../edge/Secrets.js"

/** Whether the request sent a credential at all: an `Authorization` header with a value. */
const sentCredential = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const header = request.headers.authorization
  return header !== undefined && header.trim() !== ""
}

/**
 * The credential in a Bearer `Authorization` header value, or why there is none: shared by the
 * middlewares and the direct path (`Direct.ts`), so both read a credential alike.
 */
export const bearerCredential = (authorization: string | null | undefined): string | MissingCredentials => {
  if (authorization == null || authorization.trim() === "") {
    return new MissingCredentials({ detail: "Send a credential in Authorization: Bearer …" }, true)
  }
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization)
  return match === null
    ? new MissingCredentials({ detail: "The Authorization header must use the Bearer scheme" }, true)
    : match[1]!
}

/** The credential in a Bearer `Authorization` header, or why there is none. */
const bearerOf = (request: HttpServerRequest.HttpServerRequest): string | MissingCredentials =>
  bearerCredential(request.headers.authorization)

/** Whether a credential is shaped as an access token (`crs_…`) rather than an App JWT. */
export const looksLikeAccessToken = (credential: string): boolean => credential.startsWith("crs_")

/**
 * The principal an access token's requests count against (SPEC §1): the installation of an
 * installation token, the app of an app token.
 */
export const tokenPrincipal = (token: StoredToken): string =>
  token.kind === "installation" && token.installationId !== undefined
    ? principalKey.installation(token.installationId)
    : principalKey.app(token.appId)

/** Constant-time equality of two secrets (SHA-256 digests compared in full), as an Effect. */
export const secretsEqual = (a: string, b: string): Effect.Effect<boolean> => Effect.promise(() => equalSecrets(a, b))

/** Counts the request against an authenticated principal (SPEC §1); fails with 429 past its budget. */
const countAgainst = (principal: string) => Effect.flatMap(RequestLimits, (limits) => limits.principal(principal))

/** One request's record of the installation its route names, as {@link AppAuth} read it. */
export interface NamedInstallation {
  /** Keeps what was read for `installationId` (lower-case). */
  readonly keep: (installationId: string, record: Option.Option<InstallationRecord>) => void
  /** What was read for `installationId`, if it was: `undefined` means "not read here, read it yourself". */
  readonly take: (installationId: string) => Option.Option<InstallationRecord> | undefined
}

/** A fresh {@link NamedInstallation}, for one request. */
export const namedInstallation = (): NamedInstallation => {
  let id: string | undefined
  let record: Option.Option<InstallationRecord> | undefined
  return {
    keep: (installationId, found) => {
      id = installationId
      record = found
    },
    take: (installationId) => (installationId === id ? record : undefined)
  }
}

const keepsNothing: NamedInstallation = { keep: () => {}, take: () => undefined }

/**
 * The installation the request's route names — its `installationId` path parameter, as the router
 * decoded it — read by {@link AppAuth} with the app's keys in one round trip, for the handler of the
 * same request (a mint needs both, and so does `GET /app/installations/{id}`). The wiring makes a
 * fresh one per request; outside a request the default keeps nothing, so a handler reads for itself.
 */
export class RouteInstallation extends Context.Reference<RouteInstallation>()(
  "@icr-apps/core/issuer/RouteInstallation",
  { defaultValue: (): NamedInstallation => keepsNothing }
) {}

const decodeUuid = Schema.decodeUnknownOption(Uuid)

/** The installation id the route names (lower-case), when it names one and it is a UUID. */
const routeInstallationId = (context: Context.Context<never>): string | undefined => {
  const route = Context.getOption(context, HttpRouter.RouteContext)
  if (Option.isNone(route)) return undefined
  const raw = route.value.params.installationId
  return raw === undefined ? undefined : Option.getOrUndefined(decodeUuid(raw))
}

/** {@link AppAuth} over a verifier: verifies the App JWT and provides `CurrentApp`. */
export const makeAppAuth = (verifier: JwtVerifier.JwtVerifier["Type"]): AppAuth["Type"] => ({
  appJwt: () =>
    Effect.contextWithEffect((context: Context.Context<never>): ReturnType<AppAuth["Type"]["appJwt"]> => {
      const request = Context.unsafeGet(context, HttpServerRequest.HttpServerRequest)
      const credential = bearerOf(request)
      if (typeof credential !== "string") return Effect.fail(credential)
      if (looksLikeAccessToken(credential)) {
        return Effect.fail(
          new InvalidJwt({ reason: "malformed", detail: "This endpoint expects an App JWT, not an access token" })
        )
      }
      // A route that names an installation has it read with the app's keys: one round trip.
      const installationId = routeInstallationId(context)
      return Effect.flatMap(asProblems(verifier.verify(credential, installationId)), (verified) => {
        if (installationId !== undefined && verified.installation !== undefined) {
          Context.get(context, RouteInstallation).keep(installationId, verified.installation)
        }
        // From here on the app is the principal its requests count against (SPEC §1).
        return Effect.as(countAgainst(principalKey.app(verified.appId)), verified)
      })
    })
})

/** {@link TokenAuth} over the access tokens: looks the access token up and provides `CurrentToken`. */
export const makeTokenAuth = (tokens: AccessTokens["Type"]): TokenAuth["Type"] => ({
  accessToken: () =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): ReturnType<TokenAuth["Type"]["accessToken"]> => {
      const credential = bearerOf(request)
      if (typeof credential !== "string") return Effect.fail(credential)
      if (!looksLikeAccessToken(credential)) {
        return Effect.fail(
          new InvalidToken({
            detail:
              credential.split(".").length === 3
                ? "This endpoint expects an access token (crs_…), not an App JWT"
                : "That is not an access token"
          })
        )
      }
      return Effect.flatMap(asProblems(tokens.authenticate(credential)), (authenticated) => {
        // The installation is the principal of an installation token, the app that of an app token (SPEC §1).
        return Effect.as(countAgainst(tokenPrincipal(authenticated.token)), authenticated)
      })
    })
})

/** How a failed operator authentication is recorded: its SPEC §6 code, from the request's client address. */
export type AuditFailure = (code: string, clientAddress: string | undefined) => Effect.Effect<void>

/**
 * {@link AdminAuth} over the configuration: compares the Bearer credential with ADMIN_TOKEN in
 * constant time. A credential that fails (a wrong token, another scheme) is audited through
 * `auditFailure` (never the value presented); a request with no credential at all is no attempt.
 */
export const makeAdminAuth = (config: IssuerConfig["Type"], auditFailure: AuditFailure): AdminAuth["Type"] => ({
  adminToken: () => {
    if (Option.isNone(config.adminToken)) {
      return Effect.fail(
        new AdminDisabled({
          detail: `The operator API is disabled: no ADMIN_TOKEN of at least ${MIN_ADMIN_TOKEN_LENGTH} characters is configured`
        })
      )
    }
    const expected = config.adminToken.value
    const failed = <E>(code: string, error: E) =>
      Effect.zipRight(
        Effect.flatMap(RequestLimits, (limits) => auditFailure(code, limits.address)),
        Effect.fail(error)
      )
    return Effect.flatMap(
      HttpServerRequest.HttpServerRequest,
      (request): ReturnType<AdminAuth["Type"]["adminToken"]> => {
        const credential = bearerOf(request)
        if (typeof credential !== "string") {
          return sentCredential(request) ? failed("missing_credentials", credential) : Effect.fail(credential)
        }
        return Effect.flatMap(secretsEqual(credential, Redacted.value(expected)), (equal) =>
          equal
            ? // The operator is not rate limited: a kill switch must never wait for a budget to refill.
              Effect.flatMap(RequestLimits, (limits) => limits.exempt)
            : failed("invalid_token", new InvalidToken({ detail: "The operator token is not valid" }))
        )
      }
    )
  }
})

/** The {@link AuditFailure} of failed operator authentications over an audit log (at most one event per address per second). */
export const operatorFailures = (log: AuditLog.AuditLog["Type"]): AuditFailure => {
  const record = AuditLog.failedAuthentications(log)
  return (code, clientAddress) => record({ action: "operator.authenticate" }, code, clientAddress)
}

/** {@link AppAuth}: verifies the App JWT and provides `CurrentApp`. */
export const AppAuthLive: Layer.Layer<AppAuth, never, JwtVerifier.JwtVerifier> = Layer.effect(
  AppAuth,
  Effect.map(JwtVerifier.JwtVerifier, makeAppAuth)
)

/** {@link TokenAuth}: looks the access token up and provides `CurrentToken`. */
export const TokenAuthLive: Layer.Layer<TokenAuth, never, AccessTokens> = Layer.effect(
  TokenAuth,
  Effect.map(AccessTokens, makeTokenAuth)
)

/** {@link AdminAuth}: compares the Bearer credential with ADMIN_TOKEN in constant time, auditing failures. */
export const AdminAuthLive: Layer.Layer<AdminAuth, never, IssuerConfig | AuditLog.AuditLog> = Layer.effect(
  AdminAuth,
  Effect.zipWith(IssuerConfig, AuditLog.AuditLog, (config, log) => makeAdminAuth(config, operatorFailures(log)))
)
