/**
 * The one definition of the ICR Apps API (SPEC §1, §4, §5). The worker serves it, the SDK's client
 * is derived from it, and `openapi.json` is generated from it: nothing about the API is written twice.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Context from "effect/Context"
import * as Option from "effect/Option"
import * as AST from "effect/SchemaAST"
import * as Schema from "effect/Schema"
import { AddAppKeyRequest, App, AppKey, AppPage, CreateAppRequest } from "./Apps.js"
import {
  AdminInstallationPage,
  AdminInstallationsQuery,
  CreateInstallationRequest,
  Installation,
  InstallationPage,
  InstallationsQuery,
  UpdateInstallationRequest
} from "./Installations.js"
import { PageQuery } from "./Paging.js"
import type { Permissions } from "./Permissions.js"
import { API_VERSION, AppId, Uuid } from "./Primitives.js"
import { Problems } from "./Problems.js"
import {
  AccessToken,
  CreateAppTokenRequest,
  CreateInstallationTokenRequest,
  InstallationAccessToken,
  type StoredToken,
  TokenDescription
} from "./Tokens.js"

/** The app an App JWT authenticated (provided to Apps API handlers by {@link AppAuth}). */
export class CurrentApp extends Context.Tag("@icr-apps/core/Api/CurrentApp")<
  CurrentApp,
  {
    readonly appId: string
    readonly keyId: string
    readonly permissions: Permissions
    /** The app's token epoch as the JWT check read it: what an app token minted for this request carries. */
    readonly tokenEpoch: number
  }
>() {}

/** The access token in the `Authorization` header, looked up by digest (provided by {@link TokenAuth}). */
export class CurrentToken extends Context.Tag("@icr-apps/core/Api/CurrentToken")<
  CurrentToken,
  {
    readonly digest: string
    readonly token: StoredToken
    /** The shard the token's secret names (see the issuer's `Shards`); a registry of one database ignores it. */
    readonly shard?: number | undefined
  }
>() {}

/** Failures any endpoint may answer because storage or the runtime failed, not the caller. */
const ServerFailures = [Problems.Internal, Problems.Unavailable, Problems.RateLimited] as const

/** Authenticates an App JWT (SPEC §2) and provides {@link CurrentApp}. */
export class AppAuth extends HttpApiMiddleware.Tag<AppAuth>()("@icr-apps/core/Api/AppAuth", {
  provides: CurrentApp,
  failure: Schema.Union(Problems.MissingCredentials, Problems.InvalidJwt, ...ServerFailures),
  security: {
    appJwt: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "An App JWT (RS256) signed with one of the app's private keys"),
      HttpApiSecurity.annotate(OpenApi.Format, "JWT")
    )
  }
}) {}

/** Authenticates an access token (`crs_…`) and provides {@link CurrentToken}. */
export class TokenAuth extends HttpApiMiddleware.Tag<TokenAuth>()("@icr-apps/core/Api/TokenAuth", {
  provides: CurrentToken,
  failure: Schema.Union(Problems.MissingCredentials, Problems.InvalidToken, ...ServerFailures),
  security: {
    accessToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "An app or installation access token (crs_…)")
    )
  }
}) {}

/** Guards the operator API with the configured ADMIN_TOKEN (SPEC §5). */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("@icr-apps/core/Api/AdminAuth", {
  failure: Schema.Union(Problems.MissingCredentials, Problems.InvalidToken, Problems.AdminDisabled, ...ServerFailures),
  security: {
    adminToken: HttpApiSecurity.bearer.pipe(HttpApiSecurity.annotate(OpenApi.Description, "The operator's ADMIN_TOKEN"))
  }
}) {}

type JsonObject = Record<string, any>

/** An OpenAPI header object. */
const header = (description: string) => ({ description, schema: { type: "string" } })

/** Adds headers to an operation's success response (they are set by the handler, not by a schema). */
const successHeaders =
  (headers: JsonObject) =>
  (operation: JsonObject): JsonObject => {
    for (const [status, response] of Object.entries<JsonObject>(operation.responses ?? {})) {
      if (Number(status) < 300) response.headers = { ...response.headers, ...headers }
    }
    return operation
  }

/** The `Link` header of an offset-paged listing. */
const pageLinks = successHeaders({
  Link: header('RFC 8288 links: rel="next" when a next page exists, rel="prev" when page > 0')
})

const noStore = successHeaders({ "Cache-Control": header("`no-store`: token responses are never cached") })

/** A mint's operation: its body may be left out, and its answer is never cached. */
const optionalBody = (operation: JsonObject): JsonObject =>
  noStore({ ...operation, requestBody: { ...(operation.requestBody as object), required: false } })

/** `x-icr-api-version`, documented on every endpoint; the version check itself runs before routing. */
const VersionHeader = Schema.Struct({
  "x-icr-api-version": Schema.optionalWith(Schema.Literal(API_VERSION), { exact: true })
})

const installationIdPath = Schema.Struct({ installationId: Uuid })

/** What apps call (SPEC §4). */
export class AppsGroup extends HttpApiGroup.make("apps")
  .add(
    HttpApiEndpoint.post("createAppAccessToken", "/app/accessTokens")
      .setHeaders(VersionHeader)
      .setPayload(CreateAppTokenRequest)
      .addSuccess(AccessToken)
      .addError(Problems.PermissionsExceedGrant)
      .middleware(AppAuth)
      .annotate(OpenApi.Summary, "Create an app access token")
      .annotate(
        OpenApi.Description,
        'Carries the app\'s declared permissions, or fewer: an optional body `{ "permissions" }` narrows them ' +
          "(422 `permissions_exceed_grant` beyond them)."
      )
      // The body is optional: none, or `{}`, means the app's declared permissions.
      .annotate(OpenApi.Transform, optionalBody)
  )
  .add(
    HttpApiEndpoint.post("createInstallationAccessToken", "/app/installations/:installationId/accessTokens")
      .setPath(installationIdPath)
      .setHeaders(VersionHeader)
      .setPayload(CreateInstallationTokenRequest)
      .addSuccess(InstallationAccessToken)
      .addError(Problems.InstallationNotFound)
      .addError(Problems.InstallationSuspended)
      .addError(Problems.PermissionsExceedGrant)
      .middleware(AppAuth)
      .annotate(OpenApi.Summary, "Create an installation access token")
      .annotate(
        OpenApi.Description,
        "An installation token (`crs_…`, lives 2 hours) for one of the app's installations, with the installation's " +
          'permissions, or fewer: an optional body `{ "permissions" }` narrows them (422 `permissions_exceed_grant` ' +
          "beyond the grant; an explicit empty object is 422 `invalid_permissions`). An installation of another app, " +
          "or none, is 404 `installation_not_found`; a suspended one, 403 `installation_suspended`. The token is " +
          "shown once: the server keeps only its digest."
      )
      // The body is optional: none, or `{}`, means the installation's full grant.
      .annotate(OpenApi.Transform, optionalBody)
  )
  .add(
    HttpApiEndpoint.get("describeAccessToken", "/app/installations/token")
      .setHeaders(VersionHeader)
      .addSuccess(TokenDescription)
      .middleware(TokenAuth)
      .annotate(OpenApi.Summary, "Describe the access token in the Authorization header")
      .annotate(
        OpenApi.Description,
        "What the token is (kind, app, installation, permissions, expiry), never its secret. A revoked, expired or " +
          "killed token is 401 `invalid_token`."
      )
      .annotate(OpenApi.Transform, noStore)
  )
  .add(
    HttpApiEndpoint.del("revokeAccessToken", "/app/installations/token")
      .setHeaders(VersionHeader)
      .addSuccess(HttpApiSchema.NoContent)
      .middleware(TokenAuth)
      .annotate(OpenApi.Summary, "Revoke the access token in the Authorization header")
      .annotate(OpenApi.Description, "Any later use of the token is 401 `invalid_token`.")
  )
  .add(
    HttpApiEndpoint.get("listInstallations", "/app/installations")
      .setUrlParams(InstallationsQuery)
      .setHeaders(VersionHeader)
      .addSuccess(InstallationPage)
      .middleware(AppAuth)
      .annotate(OpenApi.Summary, "List the app's active installations")
      .annotate(
        OpenApi.Description,
        "Pages by offset (`page`) or by keyset (`cursor`, the previous page's `nextCursor`). A walk that starts " +
          "with neither and follows `nextCursor` sees every installation that stays active during the walk exactly once."
      )
      .annotate(
        OpenApi.Transform,
        successHeaders({
          Link: header(
            'RFC 8288 links: rel="next" when a next page exists (by cursor when the request used one, else by page), ' +
              'rel="prev" when page > 0'
          )
        })
      )
  )
  .add(
    HttpApiEndpoint.get("getInstallation", "/app/installations/:installationId")
      .setPath(installationIdPath)
      .setHeaders(VersionHeader)
      .addSuccess(Installation)
      .addError(Problems.InstallationNotFound)
      .middleware(AppAuth)
      .annotate(OpenApi.Summary, "Get one of the app's installations")
  )
  .annotate(OpenApi.Title, "Apps")
  .annotate(OpenApi.Description, "What apps call, with an App JWT or an access token") {}

const appIdPath = Schema.Struct({ appId: AppId })

/** How apps, keys and installations come to exist (SPEC §5). */
export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createApp", "/admin/apps")
      .setHeaders(VersionHeader)
      .setPayload(CreateAppRequest)
      .addSuccess(App, { status: 201 })
      .addError(Problems.Conflict)
      .addError(Problems.InvalidPublicKey)
      .annotate(OpenApi.Summary, "Register an app with its first public key")
  )
  .add(
    HttpApiEndpoint.get("listApps", "/admin/apps")
      .setUrlParams(PageQuery)
      .setHeaders(VersionHeader)
      .addSuccess(AppPage)
      .annotate(OpenApi.Summary, "List apps, in creation order")
      .annotate(OpenApi.Transform, pageLinks)
  )
  .add(
    HttpApiEndpoint.get("getApp", "/admin/apps/:appId")
      .setPath(appIdPath)
      .setHeaders(VersionHeader)
      .addSuccess(App)
      .addError(Problems.AppNotFound)
      .annotate(OpenApi.Summary, "Get an app")
  )
  .add(
    HttpApiEndpoint.post("addAppKey", "/admin/apps/:appId/keys")
      .setPath(appIdPath)
      .setHeaders(VersionHeader)
      .setPayload(AddAppKeyRequest)
      .addSuccess(AppKey, { status: 201 })
      .addError(Problems.AppNotFound)
      .addError(Problems.Conflict)
      .addError(Problems.InvalidPublicKey)
      .annotate(OpenApi.Summary, "Add a public key to an app")
      .annotate(
        OpenApi.Description,
        "At most 25 keys per app (422 `invalid_public_key` beyond). The same key twice for one app (the same " +
          "fingerprint, in any format) is 409 `conflict`."
      )
  )
  .add(
    HttpApiEndpoint.del("deleteAppKey", "/admin/apps/:appId/keys/:keyId")
      .setPath(Schema.Struct({ appId: AppId, keyId: Uuid }))
      .setHeaders(VersionHeader)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problems.AppNotFound)
      .addError(Problems.NotFound)
      .annotate(OpenApi.Summary, "Delete an app's public key")
      .annotate(
        OpenApi.Description,
        "Also ends every token of the app minted before it (app and installation tokens), for good (SPEC §5)."
      )
  )
  .add(
    HttpApiEndpoint.post("revokeAppTokens", "/admin/apps/:appId/revokeTokens")
      .setPath(appIdPath)
      .setHeaders(VersionHeader)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problems.AppNotFound)
      .annotate(OpenApi.Summary, "End every token of an app minted before now")
      .annotate(
        OpenApi.Description,
        "Every app token and installation token of the app minted before this request stops working on its next " +
          "use, for good (SPEC §5: kill switches are final). The app's keys and installations are untouched: " +
          "tokens minted afterwards work."
      )
  )
  .add(
    HttpApiEndpoint.post("createInstallation", "/admin/installations")
      .setHeaders(VersionHeader)
      .setPayload(CreateInstallationRequest)
      .addSuccess(Installation, { status: 201 })
      .addError(Problems.AppNotFound)
      .addError(Problems.InvalidPermissions)
      .addError(Problems.Conflict)
      .annotate(OpenApi.Summary, "Install an app in an organization")
  )
  .add(
    HttpApiEndpoint.get("listInstallations", "/admin/installations")
      .setUrlParams(AdminInstallationsQuery)
      .setHeaders(VersionHeader)
      .addSuccess(AdminInstallationPage)
      .addError(Problems.AppNotFound)
      .annotate(OpenApi.Summary, "List installations (suspended ones too), of every app or of one")
      .annotate(OpenApi.Description, "In creation order. An `appId` that names no app is 404 `app_not_found`.")
      .annotate(OpenApi.Transform, pageLinks)
  )
  .add(
    HttpApiEndpoint.patch("updateInstallation", "/admin/installations/:installationId")
      .setPath(installationIdPath)
      .setHeaders(VersionHeader)
      .setPayload(UpdateInstallationRequest)
      .addSuccess(Installation)
      .addError(Problems.InstallationNotFound)
      .addError(Problems.InvalidPermissions)
      .annotate(OpenApi.Summary, "Change an installation's permissions, or suspend or unsuspend it")
      .annotate(
        OpenApi.Description,
        "A suspension, or any change of the permissions, ends every token of the installation minted before it, " +
          "for good: unsuspending or widening again revives none of them (SPEC §5)."
      )
  )
  .add(
    HttpApiEndpoint.del("deleteInstallation", "/admin/installations/:installationId")
      .setPath(installationIdPath)
      .setHeaders(VersionHeader)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problems.InstallationNotFound)
      .annotate(OpenApi.Summary, "Uninstall an app from an organization")
  )
  .add(
    HttpApiEndpoint.post("revokeInstallationTokens", "/admin/installations/:installationId/revokeTokens")
      .setPath(installationIdPath)
      .setHeaders(VersionHeader)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problems.InstallationNotFound)
      .annotate(OpenApi.Summary, "End every token of an installation minted before now")
      .annotate(
        OpenApi.Description,
        "Every installation token of the installation minted before this request stops working on its next use, " +
          "for good (SPEC §5: kill switches are final). Suspending, and any change of permissions, does the same."
      )
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "Operator")
  .annotate(OpenApi.Description, "How apps, keys and installations come to exist; guarded by ADMIN_TOKEN") {}

/** Liveness and the API's own description. */
export class SystemGroup extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness check")
      .annotate(OpenApi.Description, '`{"status":"ok"}` while the server runs; no credential, never rate limited.')
  )
  .add(
    HttpApiEndpoint.get("openapi", "/openapi.json")
      .addSuccess(Schema.Unknown.annotations({ description: "The OpenAPI 3.1 document of this API" }))
      .annotate(OpenApi.Summary, "This document")
  )
  .annotate(OpenApi.Title, "System") {}

/**
 * Tidies the generated document: every error response is `application/problem+json` (the
 * generator falls back to `application/json` when several errors share a status), is described by
 * its SPEC §6 codes, and the platform's internal decode-error shape, which this server never sends
 * (it answers `invalid_request` instead), is dropped.
 */
const problemResponses = (spec: JsonObject): JsonObject => {
  const internal = "#/components/schemas/HttpApiDecodeError"
  const own = endpointCodes()
  for (const operations of Object.values<JsonObject>(spec.paths ?? {})) {
    for (const operation of Object.values<JsonObject>(operations)) {
      const answers = apiWideAnswers(spec, operation, own.get(operation.operationId) ?? new Set())
      for (const [status, response] of Object.entries<JsonObject>(operation.responses ?? {})) {
        if (Number(status) < 400 || response.content === undefined) continue
        const schema = Object.values<JsonObject>(response.content)[0]?.schema ?? {}
        const refs: Array<JsonObject> = (schema.anyOf ?? [schema]).filter(
          (s: JsonObject) => s.$ref !== internal && answers(String(s.$ref).replace("#/components/schemas/Problem_", ""))
        )
        if (refs.length === 0) {
          delete operation.responses[status]
          continue
        }
        const codes = refs.map((s) => String(s.$ref).replace("#/components/schemas/Problem_", ""))
        response.description = `Problem document (${codes.map((c) => `\`${c}\``).join(", ")})`
        response.content = {
          "application/problem+json": { schema: refs.length === 1 ? refs[0] : { anyOf: refs } }
        }
        const extra = errorHeaders[status]
        if (extra !== undefined) response.headers = { ...response.headers, ...extra }
      }
    }
  }
  return pruneComponents(spec)
}

/** The SPEC §6 codes each endpoint declares itself (not the API-wide ones), by operation id (`group.endpoint`). */
const endpointCodes = (): Map<string, Set<string>> => {
  const collect = (ast: AST.AST, into: Set<string>): void => {
    const id = Option.getOrUndefined(AST.getIdentifierAnnotation(ast))
    if (id?.startsWith("Problem_")) into.add(id.slice("Problem_".length))
    else if (AST.isUnion(ast)) for (const member of ast.types) collect(member, into)
  }
  const out = new Map<string, Set<string>>()
  for (const group of Object.values(IcrAppsApi.groups)) {
    for (const endpoint of Object.values(group.endpoints)) {
      const codes = new Set<string>()
      collect(endpoint.errorSchema.ast, codes)
      out.set(`${group.identifier}.${endpoint.name}`, codes)
    }
  }
  return out
}

/**
 * Which API-wide problems (declared once on {@link IcrAppsApi}, so that every call decodes them) an
 * operation can answer, so that its document lists only those: `invalid_request` where there is a
 * path, query or body to be wrong; `payload_too_large` where there is a body; `invalid_permissions`
 * where the body carries permissions; `unavailable` where storage is read (not `/healthz` or
 * `/openapi.json`); `rate_limited` everywhere but `/healthz` (never limited); never `not_found` or
 * `method_not_allowed` (those answer paths and methods the document has no operation for) unless the
 * endpoint declares them itself.
 */
const apiWideAnswers = (spec: JsonObject, operation: JsonObject, own: ReadonlySet<string>) => {
  const id = String(operation.operationId)
  const body = operation.requestBody?.content?.["application/json"]?.schema as JsonObject | undefined
  const bodySchema: JsonObject | undefined =
    body?.$ref === undefined ? body : spec.components?.schemas?.[String(body.$ref).split("/").pop()!]
  const hasInput =
    body !== undefined || (operation.parameters ?? []).some((p: JsonObject) => p.in === "path" || p.in === "query")
  return (code: string): boolean => {
    if (own.has(code)) return true
    switch (code) {
      case "invalid_request":
        return hasInput
      case "payload_too_large":
        return body !== undefined
      case "invalid_permissions":
        return bodySchema?.properties?.permissions !== undefined
      case "unavailable":
        return !id.startsWith("system.")
      case "rate_limited":
        return id !== "system.healthz"
      case "not_found":
      case "method_not_allowed":
        return false
      default:
        return true
    }
  }
}

/** The headers SPEC §1 and §6 put on error responses, documented where they apply. */
const errorHeaders: Record<string, JsonObject> = {
  "401": {
    "WWW-Authenticate": header(
      '`Bearer realm="icr-apps"`, followed by `, error="invalid_token"` when the request sent credentials (RFC 6750 §3.1)'
    )
  },
  "405": { Allow: header("The methods this path serves") },
  "429": { "Retry-After": header("Seconds until the client may retry") },
  "503": { "Retry-After": header("Seconds until the client may retry") }
}

/** Drops component schemas that nothing references any more. */
const pruneComponents = (spec: JsonObject): JsonObject => {
  const schemas: JsonObject = spec.components?.schemas ?? {}
  const live = new Set<string>()
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(visit)
      return
    }
    if (node === null || typeof node !== "object") return
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string" && value.startsWith("#/components/schemas/")) {
        const name = value.slice("#/components/schemas/".length)
        if (!live.has(name)) {
          live.add(name)
          visit(schemas[name])
        }
      } else visit(value)
    }
  }
  visit(spec.paths)
  for (const name of Object.keys(schemas)) if (!live.has(name)) delete schemas[name]
  return spec
}

/** The ICR Apps API, every endpoint of SPEC §4 and §5 plus `/healthz` and `/openapi.json`. */
export class IcrAppsApi extends HttpApi.make("icr-apps")
  .add(AppsGroup)
  .add(AdminGroup)
  .add(SystemGroup)
  .addError(Problems.InvalidRequest)
  .addError(Problems.UnsupportedApiVersion)
  .addError(Problems.NotFound)
  .addError(Problems.MethodNotAllowed)
  .addError(Problems.PayloadTooLarge)
  .addError(Problems.InvalidPermissions)
  .addError(Problems.Internal)
  .addError(Problems.Unavailable)
  .addError(Problems.RateLimited)
  .annotate(OpenApi.Title, "ICR Apps API")
  .annotate(OpenApi.Version, API_VERSION)
  .annotate(
    OpenApi.Description,
    "The GitHub-Apps-style API of the International Carbon Registry: App JWTs, access tokens, installations. " +
      "Errors are RFC 9457 problem documents with a stable `code`; each operation lists the ones it can answer. " +
      "Any path not listed here is 404 `not_found`; a listed path with a method it does not serve is 405 " +
      "`method_not_allowed`, with `Allow`."
  )
  .annotate(OpenApi.Servers, [{ url: "https://api.carbonregistry.com", description: "Production" }])
  .annotate(OpenApi.Transform, problemResponses) {}

let generated: OpenApi.OpenAPISpec | undefined

/**
 * The OpenAPI 3.1 document of {@link IcrAppsApi}, generated from the definition (once, on first
 * use). Given the origin it is served from, that origin is the first server ("This server"),
 * before the ones the definition names.
 */
export const openApiDocument = (origin?: string): OpenApi.OpenAPISpec => {
  generated ??= OpenApi.fromApi(IcrAppsApi)
  if (origin === undefined) return generated
  const others = (generated.servers ?? []).filter((server) => server.url !== origin)
  return { ...generated, servers: [{ url: origin, description: "This server" }, ...others] }
}
