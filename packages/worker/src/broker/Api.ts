/**
 * The one definition of the broker's HTTP API (SPEC §8): the worker serves it and `openapi.json`
 * is generated from it, as the issuer's is from `@icr-apps/core/api/Api`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Installation } from "@icr-apps/core/api/Installations"
import * as Schema from "effect/Schema"
import { Problems } from "./Problems.js"

/** RFC 8693's grant type. */
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
/** The subject token types the broker accepts: an OIDC identity token, or a JWT. */
export const SUBJECT_TOKEN_TYPES = ["urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt"]
/** What the broker issues. */
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

const param = (description: string) => Schema.optionalWith(Schema.String.annotations({ description }), { exact: true })

/**
 * An RFC 8693 token-exchange request, as a form (`application/x-www-form-urlencoded`) or as JSON.
 * Every member is an optional string here, so that a missing or wrong one is answered by the
 * handler with the precise OAuth error; unknown members are ignored (RFC 6749 §3.2).
 */
export const TokenRequest = Schema.Struct({
  grant_type: param(`Must be \`${TOKEN_EXCHANGE_GRANT}\``),
  subject_token: param(
    "The caller's OIDC identity token (or send it as `Authorization: Bearer`); not needed over a service binding"
  ),
  subject_token_type: param(`\`${SUBJECT_TOKEN_TYPES[0]}\` or \`${SUBJECT_TOKEN_TYPES[1]}\``),
  resource: param(
    "The installation the token is for: its id (a UUID), `urn:icr:installation:<id>`, or its `accessTokensUrl`"
  ),
  scope: param(
    "Space-separated `name:LEVEL` permissions (e.g. `organization_info:VIEW`); absent = the policy's permissions"
  ),
  requested_token_type: param(`If present, \`${ACCESS_TOKEN_TYPE}\``),
  actor_token: param("Not supported (delegation): refused with `invalid_request`"),
  actor_token_type: param("Not supported")
}).annotations({ identifier: "TokenRequest", description: "An RFC 8693 token-exchange request" })
/** An RFC 8693 token-exchange request. */
export type TokenRequest = typeof TokenRequest.Type

/** The RFC 8693 answer: an installation token narrowed to policy ∩ request. */
export const TokenResponse = Schema.Struct({
  access_token: Schema.String.annotations({ description: "The installation access token (`crs_…`)" }),
  issued_token_type: Schema.Literal(ACCESS_TOKEN_TYPE),
  token_type: Schema.Literal("Bearer"),
  expires_in: Schema.Int.annotations({ description: "Seconds until the token expires" }),
  scope: Schema.String.annotations({ description: "The token's permissions, space-separated `name:LEVEL`" })
}).annotations({ identifier: "TokenResponse" })
/** The RFC 8693 answer. */
export type TokenResponse = typeof TokenResponse.Type

/** Every installation the caller's listing policies reach (all pages, read through the SDK). */
export const InstallationList = Schema.Struct({ items: Schema.Array(Installation) }).annotations({
  identifier: "InstallationList"
})

/** RFC 8414 metadata: enough for an OAuth client library to discover the token endpoint. */
export const AuthorizationServerMetadata = Schema.Struct({
  issuer: Schema.String.annotations({
    description: "This broker's URL (the metadata's own, less the well-known path)"
  }),
  token_endpoint: Schema.String,
  grant_types_supported: Schema.Array(Schema.String),
  response_types_supported: Schema.Array(Schema.String),
  token_endpoint_auth_methods_supported: Schema.Array(Schema.String),
  subject_token_types_supported: Schema.Array(Schema.String),
  issued_token_types_supported: Schema.Array(Schema.String),
  service_documentation: Schema.optional(Schema.String)
}).annotations({ identifier: "AuthorizationServerMetadata" })

/** `/healthz` when the broker can serve. */
export const Healthy = Schema.Struct({ status: Schema.Literal("ok") }).annotations({ identifier: "Healthy" })
/** `/healthz` when it cannot: why, one line per problem (never a secret's value). */
export const NotReady = Schema.Struct({
  status: Schema.Literal("unavailable"),
  problems: Schema.Array(Schema.String)
}).annotations({ identifier: "NotReady", ...HttpApiSchema.annotations({ status: 503 }) })

type JsonObject = Record<string, any>

/** Token exchange and listing. */
export class BrokerGroup extends HttpApiGroup.make("broker")
  .add(
    HttpApiEndpoint.post("token", "/token")
      .setPayload(TokenRequest)
      .addSuccess(TokenResponse)
      .addError(Problems.InvalidGrant)
      .addError(Problems.UnauthorizedClient)
      .addError(Problems.InvalidTarget)
      .addError(Problems.InvalidScope)
      .addError(Problems.PayloadTooLarge)
      .annotate(OpenApi.Summary, "Exchange an identity for a narrowed installation token (RFC 8693)")
      .annotate(OpenApi.Transform, (operation: JsonObject) => {
        // One schema, two encodings: RFC 8693 clients send a form, others may send JSON.
        const json = operation.requestBody?.content?.["application/json"]
        if (json !== undefined) operation.requestBody.content["application/x-www-form-urlencoded"] = json
        return operation
      })
  )
  .add(
    HttpApiEndpoint.get("installations", "/installations")
      .addSuccess(InstallationList)
      .addError(Problems.InvalidGrant)
      .addError(Problems.UnauthorizedClient)
      .annotate(OpenApi.Summary, "List the installations the caller's listing policies reach")
  )
  .addError(Problems.RateLimited)
  .addError(Problems.Unavailable)
  .annotate(OpenApi.Title, "Broker")
  .annotate(
    OpenApi.Description,
    "Callers authenticate with an OIDC identity token from a configured issuer (Authorization: Bearer, or " +
      "`subject_token`), or come over a Cloudflare service binding whose `props.service` names them."
  ) {}

/** The policy document in force (SPEC §8): BROKER_POLICIES (version 0) or the last one stored. */
export const PolicyDocument = Schema.Struct({
  version: Schema.Int.annotations({ description: "0 for BROKER_POLICIES; 1, 2, … for each document stored" }),
  updatedAt: Schema.NullOr(Schema.String),
  source: Schema.Literal("environment", "store"),
  policies: Schema.Array(Schema.Unknown).annotations({ description: "The policies, as BROKER_POLICIES writes them" })
}).annotations({ identifier: "PolicyDocument" })

/** A new policy document: `policies` and nothing else (an unknown member is 400, not ignored). */
export const PolicyUpdate = Schema.Struct({
  policies: Schema.Unknown.annotations({ description: "A JSON array of policies, as BROKER_POLICIES" })
}).annotations({ identifier: "PolicyUpdate", parseOptions: { onExcessProperty: "error" } })

/**
 * The operator's authentication, checked before anything of the request is decoded: an
 * unauthenticated `PUT` is 401 whatever its body, and says nothing about the document's shape.
 */
export class OperatorAuth extends HttpApiMiddleware.Tag<OperatorAuth>()("@icr-apps/worker/broker/OperatorAuth", {
  failure: Schema.Union(
    Problems.MissingCredentials,
    Problems.InvalidToken,
    Problems.AdminDisabled,
    Problems.InvalidRequest,
    Problems.RateLimited,
    Problems.Unavailable
  )
}) {}

/** The operator API: trust policies managed without a redeploy. */
export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.get("getPolicies", "/admin/policies")
      .addSuccess(PolicyDocument)
      .annotate(OpenApi.Summary, "The trust policies in force, with their version")
  )
  .add(
    HttpApiEndpoint.put("putPolicies", "/admin/policies")
      .setPayload(PolicyUpdate)
      .setHeaders(
        Schema.Struct({
          "if-match": Schema.optional(Schema.String).annotations({
            description:
              'Required: `"<version>"`, the version the change is based on (GET shows it; BROKER_POLICIES is 0)'
          })
        })
      )
      .addSuccess(PolicyDocument)
      .addError(Problems.Conflict)
      .addError(Problems.PreconditionRequired)
      .annotate(OpenApi.Summary, "Replace the trust policies (validated; effective on the next exchange)")
  )
  .addError(Problems.MissingCredentials)
  .addError(Problems.InvalidToken)
  .addError(Problems.AdminDisabled)
  .addError(Problems.RateLimited)
  .addError(Problems.Unavailable)
  .middleware(OperatorAuth)
  .annotate(OpenApi.Title, "Operator")
  .annotate(OpenApi.Description, "Guarded by `Authorization: Bearer <BROKER_ADMIN_TOKEN>` (at least 32 characters).") {}

/** Readiness and the API's own description. */
export class SystemGroup extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Healthy)
      .addError(NotReady)
      .annotate(OpenApi.Summary, "Readiness: 200 when configured, else 503 with the reasons")
  )
  .add(
    HttpApiEndpoint.get("metadata", "/.well-known/oauth-authorization-server")
      .addSuccess(AuthorizationServerMetadata)
      .annotate(OpenApi.Summary, "RFC 8414 authorization server metadata: where and how to exchange tokens")
  )
  .add(
    HttpApiEndpoint.get("openapi", "/openapi.json")
      .addSuccess(Schema.Unknown.annotations({ description: "The OpenAPI 3.1 document of the broker" }))
      .annotate(OpenApi.Summary, "This document")
  )
  .annotate(OpenApi.Title, "System") {}

const header = (description: string) => ({ description, schema: { type: "string" } })

/**
 * Tidies the generated document: every problem response is `application/problem+json` and lists
 * its codes, the platform's decode-error shape (never sent: `invalid_request` is) is dropped, the
 * OIDC bearer scheme is declared, and `Retry-After`, `Allow` and `Cache-Control` are documented.
 */
const tidy = (spec: JsonObject): JsonObject => {
  const decodeError = "#/components/schemas/HttpApiDecodeError"
  for (const [path, operations] of Object.entries<JsonObject>(spec.paths ?? {})) {
    for (const operation of Object.values<JsonObject>(operations)) {
      if (path === "/token" || path === "/installations") operation.security = [{ oidc: [] }, {}]
      if (path === "/admin/policies") operation.security = [{ admin: [] }]
      for (const [status, response] of Object.entries<JsonObject>(operation.responses ?? {})) {
        if (Number(status) < 300) {
          response.headers = { ...response.headers, "Cache-Control": header("`no-store`") }
          continue
        }
        const schema = Object.values<JsonObject>(response.content ?? {})[0]?.schema
        if (schema === undefined) continue
        const refs: Array<JsonObject> = (schema.anyOf ?? [schema]).filter((s: JsonObject) => s.$ref !== decodeError)
        const problems = refs.map((s) => String(s.$ref)).filter((r) => r.includes("BrokerProblem_"))
        if (problems.length > 0) {
          const codes = problems.map((r) => `\`${r.replace(/^.*BrokerProblem_/, "")}\``)
          response.description = `Problem document (${codes.join(", ")})`
          response.content = { "application/problem+json": { schema: refs.length === 1 ? refs[0] : { anyOf: refs } } }
        }
        if (status === "429" || status === "503")
          response.headers = { ...response.headers, "Retry-After": header("Seconds until a retry is worth it") }
      }
    }
  }
  delete spec.components?.schemas?.HttpApiDecodeError
  spec.components = {
    ...spec.components,
    securitySchemes: {
      ...spec.components?.securitySchemes,
      admin: { type: "http", scheme: "bearer", description: "BROKER_ADMIN_TOKEN" },
      oidc: {
        type: "http",
        scheme: "bearer",
        bearerFormat: "JWT",
        description: "An OIDC identity token from an issuer in BROKER_OIDC_ISSUERS, for the audience BROKER_AUDIENCE"
      }
    }
  }
  return spec
}

/** The broker's API: token exchange, listing, readiness, this document. */
export class BrokerApi extends HttpApi.make("icr-apps-broker")
  .add(BrokerGroup)
  .add(AdminGroup)
  .add(SystemGroup)
  .addError(Problems.InvalidRequest)
  .addError(Problems.NotFound)
  .addError(Problems.MethodNotAllowed)
  .addError(Problems.Internal)
  .annotate(OpenApi.Title, "ICR Apps token broker")
  .annotate(OpenApi.Version, "1")
  .annotate(
    OpenApi.Description,
    "Holds one ICR app's identity and vends narrowed installation tokens to workloads that prove who they are, " +
      "as trust policies allow (SPEC §8)."
  )
  .annotate(OpenApi.Transform, tidy) {}

/** The OpenAPI 3.1 document of {@link BrokerApi}. */
export const openApiDocument = (): OpenApi.OpenAPISpec => OpenApi.fromApi(BrokerApi)
