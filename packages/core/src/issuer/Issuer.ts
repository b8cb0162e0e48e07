/**
 * The issuer: the handlers of every endpoint of {@link IcrAppsApi}, its three authentication
 * middlewares, and a web-standard `fetch` handler that runs unchanged on Workers, Deno, Bun and Node.
 * Storage comes in as a layer ({@link Registry}); nothing here knows about D1.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import { RouteNotFound } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as AccessTokensModule from "./AccessTokens.js"
import { AccessTokens, type MintedToken, type TokenLifetimes } from "./AccessTokens.js"
import { AdminAuth, AppAuth, CurrentApp, CurrentToken, IcrAppsApi, openApiDocument, TokenAuth } from "../api/Api.js"
import { App, AppKey, AppPage } from "../api/Apps.js"
import { AdminInstallationPage, Installation, InstallationPage } from "../api/Installations.js"
import { encodeCursor, type OffsetRequest, offsetRequest, type PageRequest, pageRequest } from "../api/Paging.js"
import { canonical, exceeding, type Permissions } from "../api/Permissions.js"
import {
  AdminDisabled,
  AppNotFound,
  codeOf,
  InstallationNotFound,
  InvalidJwt,
  InvalidPermissions,
  InvalidToken,
  isProblem,
  MissingCredentials
} from "../api/Problems.js"
import { AccessToken, InstallationAccessToken, TokenDescription } from "../api/Tokens.js"
import * as AuditLog from "./AuditLog.js"
import * as Entropy from "./Entropy.js"
import {
  type ClientAddressOf,
  type Connection,
  type Router,
  RequestId,
  withCommonRules,
  withPreResponseHandlers
} from "./Http.js"
import { principalKey, RateLimiter, RequestLimits } from "./RateLimiter.js"
import * as JwtVerifier from "./JwtVerifier.js"
import { answering, asProblems } from "./StorageProblems.js"
import { checkPublicKey } from "./PublicKeys.js"
import { toBase64 } from "../internal/der.js"
import {
  type AppRecord,
  type InstallationRecord,
  installationOfApp,
  type PageStart,
  type RecordPage,
  Registry
} from "./Registry.js"

/**
 * The shortest ADMIN_TOKEN that enables the operator API (SPEC §5). A shorter one counts as not
 * configured: `/admin` answers 403 `admin_disabled` and the issuer logs why, never the token.
 */
export const MIN_ADMIN_TOKEN_LENGTH = 32

/** How an issuer is configured. */
export interface IssuerOptions {
  /**
   * The operator token; when absent, or shorter than {@link MIN_ADMIN_TOKEN_LENGTH} characters,
   * every `/admin` route answers 403 `admin_disabled`.
   */
  readonly adminToken?: Redacted.Redacted<string> | undefined
  /** Token lifetimes (1 h app, 2 h installation by default). */
  readonly lifetimes?: TokenLifetimes | undefined
  /** The public origin used in `accessTokensUrl`, when the request's own origin is not it (a proxy). */
  readonly publicBaseUrl?: string | undefined
  /**
   * Which address a request's address budget counts against (SPEC §1, §9); by default
   * Cloudflare's `cf-connecting-ip` ({@link cloudflareClientAddress}). A server off Cloudflare
   * passes {@link clientAddressFrom}(`TRUST_PROXY`), so no client-sent header counts unless trusted.
   */
  readonly clientAddress?: ClientAddressOf | undefined
}

/** The issuer's configuration. */
export class IssuerConfig extends Context.Tag("@icr-apps/core/Issuer/IssuerConfig")<
  IssuerConfig,
  {
    readonly adminToken: Option.Option<Redacted.Redacted<string>>
    readonly publicBaseUrl: Option.Option<string>
  }
>() {}

const toTimestamp = (ms: number) => DateTime.unsafeMake(ms)

/** The credential in a Bearer `Authorization` header, or why there is none. */
const bearerOf = (request: HttpServerRequest.HttpServerRequest): string | MissingCredentials => {
  const header = request.headers.authorization
  if (header === undefined || header.trim() === "") {
    return new MissingCredentials({ detail: "Send a credential in Authorization: Bearer …" }, true)
  }
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return match === null
    ? new MissingCredentials({ detail: "The Authorization header must use the Bearer scheme" }, true)
    : match[1]!
}

const looksLikeAccessToken = (credential: string) => credential.startsWith("crs_")

/** Constant-time equality of two secrets: compares SHA-256 digests, so neither length nor content leaks. */
export const secretsEqual = (a: string, b: string): Effect.Effect<boolean> =>
  Effect.promise(async () => {
    const encoder = new TextEncoder()
    const [da, db] = await Promise.all([
      crypto.subtle.digest("SHA-256", encoder.encode(a)),
      crypto.subtle.digest("SHA-256", encoder.encode(b))
    ])
    const x = new Uint8Array(da)
    const y = new Uint8Array(db)
    let diff = 0
    for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!
    return diff === 0
  })

/** Counts the request against an authenticated principal (SPEC §1); fails with 429 past its budget. */
const countAgainst = (principal: string) => Effect.flatMap(RequestLimits, (limits) => limits.principal(principal))

/** The path of an installation-token mint, capturing the installation id (the router matches case-insensitively). */
const MINT_PATH =
  /^\/app\/installations\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/accessTokens\/?$/i

/** The installation {@link makeAppAuth} read with the JWT's keys, for the mint handler of the same request. */
const PrefetchedInstallation = FiberRef.unsafeMake<Option.Option<InstallationRecord> | undefined>(undefined)

/** {@link AppAuth} over a verifier: verifies the App JWT and provides {@link CurrentApp}. */
export const makeAppAuth = (verifier: JwtVerifier.JwtVerifier["Type"]): AppAuth["Type"] => ({
  appJwt: () =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): ReturnType<AppAuth["Type"]["appJwt"]> => {
      const credential = bearerOf(request)
      if (typeof credential !== "string") return Effect.fail(credential)
      if (looksLikeAccessToken(credential)) {
        return Effect.fail(
          new InvalidJwt({ reason: "malformed", detail: "This endpoint expects an App JWT, not an access token" })
        )
      }
      // A mint names its installation in the path: read it with the app's keys, one round trip.
      const mintOf = MINT_PATH.exec(new URL(request.url, "http://localhost").pathname)?.[1]?.toLowerCase()
      return Effect.flatMap(asProblems(verifier.verify(credential, mintOf)), (verified) =>
        Effect.as(
          Effect.zipRight(
            FiberRef.set(PrefetchedInstallation, verified.installation),
            // From here on the app is the principal its requests count against (SPEC §1).
            countAgainst(principalKey.app(verified.appId))
          ),
          verified
        )
      )
    })
})

/** {@link TokenAuth} over the access tokens: looks the access token up and provides {@link CurrentToken}. */
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
        const { token } = authenticated
        // The installation is the principal of an installation token, the app that of an app token (SPEC §1).
        const principal =
          token.kind === "installation" && token.installationId !== undefined
            ? principalKey.installation(token.installationId)
            : principalKey.app(token.appId)
        return Effect.as(countAgainst(principal), authenticated)
      })
    })
})

/** {@link AdminAuth} over the configuration: compares the Bearer credential with ADMIN_TOKEN in constant time. */
export const makeAdminAuth = (config: IssuerConfig["Type"]): AdminAuth["Type"] => ({
  adminToken: () => {
    if (Option.isNone(config.adminToken)) {
      return Effect.fail(
        new AdminDisabled({
          detail: `The operator API is disabled: no ADMIN_TOKEN of at least ${MIN_ADMIN_TOKEN_LENGTH} characters is configured`
        })
      )
    }
    const expected = config.adminToken.value
    return Effect.flatMap(
      HttpServerRequest.HttpServerRequest,
      (request): ReturnType<AdminAuth["Type"]["adminToken"]> => {
        const credential = bearerOf(request)
        if (typeof credential !== "string") return Effect.fail(credential)
        return Effect.flatMap(secretsEqual(credential, Redacted.value(expected)), (equal) =>
          equal
            ? // The operator is not rate limited: a kill switch must never wait for a budget to refill.
              Effect.flatMap(RequestLimits, (limits) => limits.exempt)
            : Effect.fail(new InvalidToken({ detail: "The operator token is not valid" }))
        )
      }
    )
  }
})

/** {@link AppAuth}: verifies the App JWT and provides {@link CurrentApp}. */
export const AppAuthLive: Layer.Layer<AppAuth, never, JwtVerifier.JwtVerifier> = Layer.effect(
  AppAuth,
  Effect.map(JwtVerifier.JwtVerifier, makeAppAuth)
)

/** {@link TokenAuth}: looks the access token up and provides {@link CurrentToken}. */
export const TokenAuthLive: Layer.Layer<TokenAuth, never, AccessTokens> = Layer.effect(
  TokenAuth,
  Effect.map(AccessTokens, makeTokenAuth)
)

/** {@link AdminAuth}: compares the Bearer credential with ADMIN_TOKEN in constant time. */
export const AdminAuthLive: Layer.Layer<AdminAuth, never, IssuerConfig> = Layer.effect(
  AdminAuth,
  Effect.map(IssuerConfig, makeAdminAuth)
)

/** The origin `accessTokensUrl` is built on: the configured one, else the request's. */
const originOf = Effect.gen(function* () {
  const config = yield* IssuerConfig
  if (Option.isSome(config.publicBaseUrl)) return config.publicBaseUrl.value.replace(/\/+$/, "")
  const request = yield* HttpServerRequest.HttpServerRequest
  const source = request.source
  const url = source instanceof Request ? source.url : request.originalUrl
  try {
    return new URL(url).origin
  } catch {
    const host = request.headers.host ?? "localhost"
    return `http://${host}`
  }
})

/**
 * Skips a `Schema.Class` constructor's validation for values the handler built from its own records:
 * validating recompiles a parser on every call (a quarter of describe's and mint's CPU), and the
 * response encoder checks the same shape on the way out anyway.
 */
const trusted = true

const toInstallation = (record: InstallationRecord, origin: string) =>
  new Installation(
    {
      id: record.id,
      createdAt: toTimestamp(record.createdAt),
      updatedAt: toTimestamp(record.updatedAt),
      permissions: canonical(record.permissions),
      appNameId: record.appName,
      appId: record.appId,
      organizationId: record.organizationId,
      accessTokensUrl: `${origin}/app/installations/${record.id}/accessTokens`,
      suspendedAt: record.suspendedAt === null ? null : toTimestamp(record.suspendedAt)
    },
    trusted
  )

const toApp = (record: AppRecord) =>
  new App(
    {
      id: record.id,
      appNameId: record.name,
      permissions: canonical(record.permissions),
      createdAt: toTimestamp(record.createdAt),
      updatedAt: toTimestamp(record.updatedAt),
      keys: record.keys.map(
        (k) => new AppKey({ id: k.id, fingerprint: k.fingerprint, createdAt: toTimestamp(k.createdAt) }, trusted)
      )
    },
    trusted
  )

const tokenFields = ({ secret, record }: MintedToken) => ({
  id: record.id,
  createdAt: toTimestamp(record.createdAt),
  updatedAt: toTimestamp(record.createdAt),
  token: secret,
  expiresAt: toTimestamp(record.expiresAt),
  isActive: true,
  permissions: record.permissions,
  appId: record.appId
})

/** Where a page requested by number starts; a number too large to be an offset starts past every listing. */
const offsetStart = (request: OffsetRequest) => ({
  limit: request.limit,
  offset: Math.min(request.page * request.limit, Number.MAX_SAFE_INTEGER)
})

/** Where a requested page starts: at an offset, or just after a cursor's position. */
const startOf = (request: PageRequest): PageStart =>
  request._tag === "Cursor" ? { limit: request.limit, after: request.after } : offsetStart(request)

/**
 * The `Link` header of a page (RFC 8288). By cursor: `next` when a further item exists (a keyset
 * has no way back, so no `prev`). By page: `next` when more exist, `prev` when `page > 0`.
 * `listing` is the path and any fixed query parameters, ending in `?` or `&`.
 */
const linkHeader = (
  listing: string,
  request: PageRequest,
  total: number,
  nextCursor: string | undefined
): string | undefined => {
  const { limit } = request
  if (request._tag === "Cursor") {
    return nextCursor === undefined ? undefined : `<${listing}limit=${limit}&cursor=${nextCursor}>; rel="next"`
  }
  const { page } = request
  const href = (p: number) => `<${listing}limit=${limit}&page=${p}>`
  const links: Array<string> = []
  if ((page + 1) * limit < total) links.push(`${href(page + 1)}; rel="next"`)
  if (page > 0) links.push(`${href(Math.min(page - 1, Math.max(0, Math.ceil(total / limit) - 1)))}; rel="prev"`)
  return links.length === 0 ? undefined : links.join(", ")
}

/** Sets the `Link` header of the response, when there is one. */
const setLink = (link: string | undefined) =>
  link === undefined
    ? Effect.void
    : HttpApp.appendPreResponseHandler((_request, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "link", link))
      )

/** The cursor after a page: the last item's position, when another item follows it. */
const nextCursorOf = (result: RecordPage<InstallationRecord>): string | undefined => {
  const last = result.items.at(-1)
  return result.more && last !== undefined ? encodeCursor(last) : undefined
}

/** What an audit event says besides its time, request id and outcome. */
type AuditFields = Omit<AuditLog.AuditEvent, "time" | "requestId" | "outcome" | "code">

/** The SPEC §6 code a failed request answers with (`internal` for a defect); none when it was only interrupted. */
const failureCode = <E>(cause: Cause.Cause<E>): string | undefined => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return isProblem(failure.value) ? codeOf(failure.value).code : "internal"
  return Cause.isInterruptedOnly(cause) ? undefined : "internal"
}

/** The audit trail as the handlers use it: one event per call, stamped with the time and the request id. */
const makeAudit = (log: AuditLog.AuditLog["Type"]) => {
  const emit = (fields: AuditFields, outcome: "success" | "failure", code?: string) =>
    Effect.clockWith((clock) =>
      Effect.flatMap(RequestId, (requestId) =>
        log.emit({
          time: new Date(clock.unsafeCurrentTimeMillis()).toISOString(),
          requestId,
          ...fields,
          outcome,
          ...(code !== undefined ? { code } : {})
        })
      )
    )
  return {
    /** Records a success that needs no effect of its own (a kill switch a change caused). */
    success: (fields: AuditFields) => emit(fields, "success"),
    /**
     * Runs `effect` and records its outcome under `fields`, plus what `onSuccess` reads off a
     * success (an id the effect made); a failure is recorded with its SPEC §6 code.
     */
    audited: <A, E, R>(
      fields: AuditFields,
      effect: Effect.Effect<A, E, R>,
      onSuccess: (a: A) => Partial<AuditFields> = () => ({})
    ): Effect.Effect<A, E, R> =>
      Effect.onExit(effect, (exit) => {
        if (Exit.isSuccess(exit)) return emit({ ...fields, ...onSuccess(exit.value) }, "success")
        const code = failureCode(exit.cause)
        return code === undefined ? Effect.void : emit(fields, "failure", code)
      })
  }
}

/** Handlers of the Apps API (SPEC §4). */
export const AppsLive = HttpApiBuilder.group(IcrAppsApi, "apps", (handlers) =>
  Effect.gen(function* () {
    const tokens = answering(yield* AccessTokens)
    const registry = answering(yield* Registry)
    const { audited } = makeAudit(yield* AuditLog.AuditLog)
    const tokenId = (minted: MintedToken) => ({ tokenId: minted.record.id })
    // Token responses must never be cached (SPEC §1): every response carries `Cache-Control:
    // no-store` (the common rules' security headers), these included.
    return handlers
      .handle("createAppAccessToken", () =>
        Effect.flatMap(CurrentApp, ({ appId, permissions, tokenEpoch }) =>
          Effect.map(
            audited(
              { action: "app_token.mint", actor: "app", appId },
              tokens.mintAppToken(appId, permissions, tokenEpoch),
              tokenId
            ),
            (minted) => new AccessToken(tokenFields(minted), trusted)
          )
        )
      )
      .handle("createInstallationAccessToken", ({ path, payload }) =>
        Effect.flatMap(CurrentApp, ({ appId, tokenEpoch }) =>
          Effect.map(
            audited(
              { action: "installation_token.mint", actor: "app", appId, installationId: path.installationId },
              Effect.flatMap(FiberRef.get(PrefetchedInstallation), (prefetched) =>
                tokens.mintInstallationToken(
                  appId,
                  path.installationId,
                  payload.permissions,
                  tokenEpoch,
                  // Only what was read for this very installation (the path the router decoded).
                  prefetched !== undefined &&
                    Option.isSome(prefetched) &&
                    prefetched.value.id !== path.installationId.toLowerCase()
                    ? undefined
                    : prefetched
                )
              ),
              tokenId
            ),
            (minted) =>
              new InstallationAccessToken(
                {
                  ...tokenFields(minted),
                  installationId: minted.record.installationId!,
                  organizationId: minted.record.organizationId!
                },
                trusted
              )
          )
        )
      )
      .handle("describeAccessToken", () =>
        Effect.map(
          CurrentToken,
          ({ token }) =>
            new TokenDescription(
              {
                id: token.id,
                kind: token.kind,
                appId: token.appId,
                ...(token.installationId !== undefined ? { installationId: token.installationId } : {}),
                ...(token.organizationId !== undefined ? { organizationId: token.organizationId } : {}),
                permissions: token.permissions,
                createdAt: toTimestamp(token.createdAt),
                expiresAt: toTimestamp(token.expiresAt)
              },
              trusted
            )
        )
      )
      .handle("revokeAccessToken", () =>
        Effect.flatMap(CurrentToken, ({ digest, token }) =>
          audited(
            {
              action: "token.revoke",
              actor: "token",
              appId: token.appId,
              ...(token.installationId !== undefined ? { installationId: token.installationId } : {}),
              tokenId: token.id
            },
            tokens.revoke(digest)
          )
        )
      )
      .handle("listInstallations", ({ urlParams }) =>
        Effect.gen(function* () {
          const { appId } = yield* CurrentApp
          const request = yield* pageRequest(urlParams)
          const origin = yield* originOf
          const result = yield* registry.listInstallations({ appId, activeOnly: true }, startOf(request))
          const nextCursor = nextCursorOf(result)
          yield* setLink(linkHeader(`${origin}/app/installations?`, request, result.total, nextCursor))
          return new InstallationPage({
            items: result.items.map((i) => toInstallation(i, origin)),
            ...(request._tag === "Offset" ? { page: request.page } : {}),
            limit: request.limit,
            total: result.total,
            ...(nextCursor !== undefined ? { nextCursor } : {})
          })
        })
      )
      .handle("getInstallation", ({ path }) =>
        Effect.gen(function* () {
          const { appId } = yield* CurrentApp
          return toInstallation(
            yield* asProblems(installationOfApp(yield* Registry, appId, path.installationId)),
            yield* originOf
          )
        })
      )
  })
)

const appNotFound = () => new AppNotFound({ detail: "No such app" })

/** An installation may hold only what its app declares (SPEC §5). */
const withinDeclared = (requested: Permissions, declared: Permissions) => {
  const over = exceeding(requested, declared)
  return over.length === 0
    ? Effect.void
    : Effect.fail(new InvalidPermissions({ detail: `Permissions beyond what the app declares: ${over.join(", ")}` }))
}

/** Handlers of the operator API (SPEC §5). */
export const AdminLive = HttpApiBuilder.group(IcrAppsApi, "admin", (handlers) =>
  Effect.gen(function* () {
    const registry = answering(yield* Registry)
    const entropy = yield* Entropy.Entropy
    const audit = makeAudit(yield* AuditLog.AuditLog)
    const { audited } = audit
    const newKey = (publicKey: Parameters<typeof checkPublicKey>[0]) =>
      Effect.gen(function* () {
        const checked = yield* checkPublicKey(publicKey)
        return {
          id: yield* entropy.uuid,
          fingerprint: checked.fingerprint,
          spki: toBase64(checked.spki),
          createdAt: yield* Clock.currentTimeMillis
        }
      })
    return handlers
      .handle("createApp", ({ payload }) =>
        audited(
          { action: "app.create", actor: "operator" },
          Effect.gen(function* () {
            const key = yield* newKey(payload.publicKey)
            const now = key.createdAt
            const app = yield* registry.createApp(
              { name: payload.name, permissions: canonical(payload.permissions), createdAt: now, updatedAt: now },
              key
            )
            return toApp(app)
          }),
          (app) => ({ appId: app.id, ...(app.keys[0] !== undefined ? { keyId: app.keys[0].id } : {}) })
        )
      )
      .handle("listApps", ({ urlParams }) =>
        Effect.gen(function* () {
          const request = offsetRequest(urlParams)
          const result = yield* registry.listApps(offsetStart(request))
          yield* setLink(linkHeader(`${yield* originOf}/admin/apps?`, request, result.total, undefined))
          return new AppPage({
            items: result.items.map(toApp),
            page: request.page,
            limit: request.limit,
            total: result.total
          })
        })
      )
      .handle("getApp", ({ path }) =>
        Effect.flatMap(
          registry.getApp(path.appId),
          Option.match({ onNone: () => Effect.fail(appNotFound()), onSome: (a) => Effect.succeed(toApp(a)) })
        )
      )
      .handle("addAppKey", ({ path, payload }) =>
        audited(
          { action: "app.key_add", actor: "operator", appId: path.appId },
          Effect.gen(function* () {
            if (Option.isNone(yield* registry.getApp(path.appId))) return yield* appNotFound()
            const key = yield* registry.addKey({ ...(yield* newKey(payload.publicKey)), appId: path.appId })
            return new AppKey({ id: key.id, fingerprint: key.fingerprint, createdAt: toTimestamp(key.createdAt) })
          }),
          (key) => ({ keyId: key.id })
        )
      )
      .handle("deleteAppKey", ({ path }) =>
        Effect.zipRight(
          audited(
            { action: "app.key_delete", actor: "operator", appId: path.appId, keyId: path.keyId },
            Effect.flatMap(Clock.currentTimeMillis, (now) => registry.deleteKey(path.appId, path.keyId, now))
          ),
          // Deleting a key is a kill switch: the app's epoch moved on with it (SPEC §5).
          audit.success({ action: "app.tokens_revoked", actor: "operator", appId: path.appId, keyId: path.keyId })
        )
      )
      .handle("revokeAppTokens", ({ path }) =>
        audited(
          { action: "app.tokens_revoked", actor: "operator", appId: path.appId },
          registry.revokeAppTokens(path.appId)
        )
      )
      .handle("createInstallation", ({ payload }) =>
        audited(
          { action: "installation.create", actor: "operator", appId: payload.appId },
          Effect.gen(function* () {
            const app = yield* registry.getApp(payload.appId)
            if (Option.isNone(app)) return yield* appNotFound()
            yield* withinDeclared(payload.permissions, app.value.permissions)
            const now = yield* Clock.currentTimeMillis
            const record = yield* registry.createInstallation({
              id: yield* entropy.uuid,
              appId: payload.appId,
              organizationId: payload.organizationId,
              permissions: canonical(payload.permissions),
              createdAt: now,
              updatedAt: now,
              suspendedAt: null
            })
            return toInstallation(record, yield* originOf)
          }),
          (installation) => ({ installationId: installation.id })
        )
      )
      .handle("listInstallations", ({ urlParams }) =>
        Effect.gen(function* () {
          const { appId } = urlParams
          const request = offsetRequest(urlParams)
          // An unknown app is an error rather than an empty page, so a mistyped id is not mistaken for "none".
          if (appId !== undefined && Option.isNone(yield* registry.getApp(appId))) return yield* appNotFound()
          const result = yield* registry.listInstallations({ appId, activeOnly: false }, offsetStart(request))
          const origin = yield* originOf
          const listing = `${origin}/admin/installations?${appId === undefined ? "" : `appId=${encodeURIComponent(appId)}&`}`
          yield* setLink(linkHeader(listing, request, result.total, undefined))
          return new AdminInstallationPage({
            items: result.items.map((i) => toInstallation(i, origin)),
            page: request.page,
            limit: request.limit,
            total: result.total
          })
        })
      )
      .handle("updateInstallation", ({ path, payload }) =>
        Effect.gen(function* () {
          const { record, endedTokens } = yield* audited(
            { action: "installation.update", actor: "operator", installationId: path.installationId },
            Effect.gen(function* () {
              const current = yield* registry.getInstallation(path.installationId)
              if (Option.isNone(current)) return yield* new InstallationNotFound({ detail: "No such installation" })
              if (payload.permissions !== undefined) {
                const app = yield* registry.getApp(current.value.appId)
                yield* withinDeclared(
                  payload.permissions,
                  Option.match(app, { onNone: () => ({}), onSome: (a) => a.permissions })
                )
              }
              const now = yield* Clock.currentTimeMillis
              const suspendedAt =
                payload.suspended === undefined
                  ? undefined
                  : payload.suspended
                    ? (current.value.suspendedAt ?? now)
                    : null
              const record = yield* registry.updateInstallation(path.installationId, {
                ...(payload.permissions !== undefined ? { permissions: canonical(payload.permissions) } : {}),
                ...(suspendedAt !== undefined ? { suspendedAt } : {}),
                updatedAt: now
              })
              // The registry moved the epoch on if this was a suspension or a change of permissions.
              return { record, endedTokens: record.tokenEpoch !== current.value.tokenEpoch }
            }),
            ({ record }) => ({ appId: record.appId })
          )
          if (endedTokens) {
            // A kill switch (SPEC §5): recorded as such, after the change that pulled it.
            yield* audit.success({
              action: "installation.tokens_revoked",
              actor: "operator",
              appId: record.appId,
              installationId: record.id
            })
          }
          return toInstallation(record, yield* originOf)
        })
      )
      .handle("deleteInstallation", ({ path }) =>
        Effect.asVoid(
          audited(
            { action: "installation.delete", actor: "operator", installationId: path.installationId },
            registry.deleteInstallation(path.installationId),
            ({ appId }) => ({ appId })
          )
        )
      )
      .handle("revokeInstallationTokens", ({ path }) =>
        Effect.asVoid(
          audited(
            { action: "installation.tokens_revoked", actor: "operator", installationId: path.installationId },
            registry.revokeInstallationTokens(path.installationId),
            ({ appId }) => ({ appId })
          )
        )
      )
  })
)

/** Handlers of `/healthz` and `/openapi.json` (which names the origin it is served from first). */
export const SystemLive = HttpApiBuilder.group(IcrAppsApi, "system", (handlers) =>
  Effect.succeed(
    handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const }))
      .handle("openapi", () => Effect.map(originOf, openApiDocument))
  )
)

/**
 * The issuer's configuration from its options. An ADMIN_TOKEN too short to resist guessing
 * leaves the operator API off, and says so in the log once (its length is not logged either).
 */
const makeConfig = (options: IssuerOptions): Effect.Effect<IssuerConfig["Type"]> => {
  const given = Option.fromNullable(options.adminToken)
  const usable = Option.filter(given, (token) => Redacted.value(token).length >= MIN_ADMIN_TOKEN_LENGTH)
  const config = { adminToken: usable, publicBaseUrl: Option.fromNullable(options.publicBaseUrl) }
  return Option.isSome(given) && Option.isNone(usable)
    ? Effect.as(
        Effect.logWarning(
          `ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters, so it counts as not configured: ` +
            "every /admin route answers 403 admin_disabled. Set a longer one (e.g. 48 random hex characters)."
        ),
        config
      )
    : Effect.succeed(config)
}

/** What the issuer stores and records through: given by whoever runs it (memory, or D1). */
type Storage = Registry | Entropy.Entropy | AuditLog.AuditLog

/** What every group's handlers and the authentication middlewares are built over. */
type IssuerServices = Storage | IssuerConfig | JwtVerifier.JwtVerifier | AccessTokens | AppAuth | TokenAuth | AdminAuth

/**
 * The issuer's own services over its storage, in one context: the configuration, the JWT verifier,
 * the access tokens and the three authentication middlewares, made by plain constructors (a graph
 * of layers would cost more to build on a cold isolate than the services themselves).
 */
const makeServices = (options: IssuerOptions): Effect.Effect<Context.Context<IssuerServices>, never, Storage> =>
  Effect.flatMap(Effect.context<Storage>(), (storage) =>
    Effect.flatMap(makeConfig(options), (config) =>
      Effect.map(AccessTokensModule.make(options.lifetimes), (tokens) => {
        const verifier = JwtVerifier.make(Context.get(storage, Registry))
        return storage.pipe(
          Context.add(IssuerConfig, config),
          Context.add(JwtVerifier.JwtVerifier, verifier),
          Context.add(AccessTokens, tokens),
          Context.add(AppAuth, makeAppAuth(verifier)),
          Context.add(TokenAuth, makeTokenAuth(tokens)),
          Context.add(AdminAuth, makeAdminAuth(config))
        )
      })
    )
  )

/**
 * One router over some of the API's groups (each implemented in full), built over the services in
 * the context, with the `Link` headers its handlers set.
 */
const routerOf = <G extends HttpApiGroup.ApiGroup<"icr-apps", string>>(groups: Layer.Layer<G, never, IssuerServices>) =>
  Effect.gen(function* () {
    // The groups add their routes to the HttpApiBuilder.Router they build; built again with the
    // same memo map, Router.Live is that same router. One after the other: no merge, no fork.
    const memoMap = yield* Layer.makeMemoMap
    const scope = yield* Effect.scope
    yield* Layer.buildWithMemoMap(groups, memoMap, scope)
    const built = yield* Layer.buildWithMemoMap(HttpApiBuilder.Router.Live, memoMap, scope)
    return withPreResponseHandlers(yield* HttpRouter.toHttpApp(yield* Context.get(built, HttpApiBuilder.Router).router))
  })

/** A path that starts with `/admin`, in any case: the operator API's. */
const ADMIN_PATH = /^\/admin(\/|\?|$)/i

/**
 * Whether the apps router found no route for a path that may be another router's: one that names
 * `admin`, `healthz` or `openapi` (in any case), or is percent-encoded (the router decodes it).
 */
const mayBeOther = (e: unknown): boolean => e instanceof RouteNotFound && /admin|healthz|openapi|%/i.test(e.request.url)

/**
 * The issuer's router over its storage, built on the first request that needs it.
 *
 * It is two routers. The Apps API's is built at once. The rest (the operator API and the system
 * endpoints: 13 of the 19 routes) is built on the first request that may reach it: an isolate that
 * only serves apps never needs it, and liveness probes are answered before either. The route
 * sets are disjoint, so trying one router and then the other on "no route" answers exactly as one
 * router over both would.
 */
const makeRouter = <E>(
  storage: Layer.Layer<Registry | Entropy.Entropy, E>,
  options: IssuerOptions,
  scope: Scope.Scope
): Effect.Effect<Router, E> =>
  Effect.gen(function* () {
    const built = yield* Layer.build(storage)
    // Audit events go to the console unless the storage brought an AuditLog of its own.
    const withAudit = Option.isSome(Context.getOption(built, AuditLog.AuditLog))
      ? (built as Context.Context<Storage>)
      : Context.add(built, AuditLog.AuditLog, AuditLog.toConsole)
    const services = yield* Effect.provide(makeServices(options), withAudit)
    const apps = yield* Effect.provide(routerOf(AppsLive), services)
    // Whatever the storage layer set for every fiber (a Clock, a logger) is in this fiber's refs now.
    const runtime = yield* Effect.provide(Effect.runtime<Storage>(), withAudit)
    let other: typeof apps | undefined
    let building: Promise<typeof apps> | undefined
    const otherRouter = Effect.suspend(
      () =>
        other ??
        Effect.flatten(
          Effect.promise(() => {
            building ??= Runtime.runPromise(runtime)(
              Scope.extend(Effect.provide(routerOf(Layer.merge(AdminLive, SystemLive)), services), scope)
            ).then((app) => (other = app))
            return building
          })
        )
    )
    type App = Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>
    const appsFirst = Effect.catchIf(apps, mayBeOther, () => otherRouter) as App
    const otherFirst = Effect.catchIf(
      otherRouter,
      (e) => e instanceof RouteNotFound,
      () => apps
    ) as App
    const { fiberRefs, runtimeFlags } = runtime
    const route: Router["route"] = (request, requestId, limits) => {
      // The context is the request and what the common rules made for it. Not the platform's
      // file-serving services (HttpPlatform, FileSystem, Path, Etag) that the router's type asks
      // for: only file and multipart bodies use them, and no endpoint here reads or answers one.
      const context = Context.unsafeMake<never>(
        new Map<string, unknown>([
          [HttpServerRequest.HttpServerRequest.key, request],
          [RequestId.key, requestId],
          [RequestLimits.key, limits]
        ])
      )
      return Runtime.runPromiseExit(Runtime.make({ context, fiberRefs, runtimeFlags }))(
        ADMIN_PATH.test(request.url) ? otherFirst : appsFirst
      )
    }
    return {
      route,
      runtime: runtime as Runtime.Runtime<never>,
      limiter: Option.getOrUndefined(Context.getOption(built, RateLimiter)),
      clock: yield* Effect.clock
    }
  }).pipe(Scope.extend(scope))

/** A web-standard request handler. */
export interface WebHandler {
  /** Answers one request; a server passes what it knows of the connection (its TCP peer). */
  readonly handler: (request: Request, connection?: Connection) => Promise<Response>
  readonly dispose: () => Promise<void>
}

/**
 * A `fetch`-style handler for the issuer over the given storage layers. Build it once per isolate
 * (it holds the router and the imported-key cache) and call `handler` per request: the router is
 * built on the first request that needs it. Audit events go to the console as JSON lines
 * ({@link AuditLog.layerConsole}) unless `storage` also provides an {@link AuditLog.AuditLog}; a
 * `RateLimiter` in `storage` turns rate limiting on.
 */
export const makeWebHandler = <E>(
  storage: Layer.Layer<Registry | Entropy.Entropy, E>,
  options: IssuerOptions = {}
): WebHandler => {
  const scope = Effect.runSync(Scope.make())
  return {
    handler: withCommonRules(() => Effect.runPromise(makeRouter(storage, options, scope)), options.clientAddress),
    dispose: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
