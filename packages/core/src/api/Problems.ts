/**
 * The errors of SPEC §6: one tagged error per `code`, and its RFC 9457 problem-document wire form.
 *
 * In Effect code each error is a `Schema.TaggedError` (so `catchTag` works); on the wire it is
 * `{ type, title, status, code, detail, ...extras }` with `Content-Type: application/problem+json`,
 * and no `_tag` — a client decodes it by `code`, so it also understands a server that is not this one.
 *
 * Adding an error code: declare its class below (tag, code, status, title, extra fields) and put it
 * in {@link all}; the `Problem` union, the wire schemas, `codeOf` and the OpenAPI document follow.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"
import { PermissionLevel } from "./Permissions.js"

/** The `Content-Type` of every error response. */
export const PROBLEM_CONTENT_TYPE = "application/problem+json"

/** The `type` URI of a problem document with the given code. */
export const problemType = (code: string): string => `urn:icr:problem:${code}`

/** Why an App JWT was refused (SPEC §6). */
export const JwtFailureReason = Schema.Literal(
  "malformed",
  "unsupported_algorithm",
  "expired",
  "iat_in_future",
  "exp_too_far",
  "invalid_signature",
  "missing_claim"
).annotations({ identifier: "JwtFailureReason" })
/** Why an App JWT was refused. */
export type JwtFailureReason = typeof JwtFailureReason.Type

/** Seconds until a retry is worth it (429, 503). */
const RetryAfter = Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { exact: true })

/** What the wire knows of a problem besides its fields: SPEC §6 code, HTTP status, title. */
export interface ProblemMeta {
  readonly code: string
  readonly status: number
  readonly title: string
}

/** 400: the request is malformed (bad id, bad query, bad or oversized JSON, unknown fields). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "invalid_request", status: 400, title: "Invalid request" }
}
/** 400: `x-icr-api-version` names a version this server does not serve. */
export class UnsupportedApiVersion extends Schema.TaggedError<UnsupportedApiVersion>()("UnsupportedApiVersion", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = {
    code: "unsupported_api_version",
    status: 400,
    title: "Unsupported API version"
  }
}
/** 401: no credential was sent. */
export class MissingCredentials extends Schema.TaggedError<MissingCredentials>()("MissingCredentials", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = { code: "missing_credentials", status: 401, title: "Missing credentials" }
}
/** 401: the App JWT was refused; `reason` says why. */
export class InvalidJwt extends Schema.TaggedError<InvalidJwt>()("InvalidJwt", {
  detail: Schema.String,
  reason: JwtFailureReason
}) {
  static readonly problem: ProblemMeta = { code: "invalid_jwt", status: 401, title: "Invalid JWT" }
}
/** 401: the access token is unknown, expired, revoked, or no longer backed by a live installation. */
export class InvalidToken extends Schema.TaggedError<InvalidToken>()("InvalidToken", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "invalid_token", status: 401, title: "Invalid access token" }
}
/** 403: the installation is suspended. */
export class InstallationSuspended extends Schema.TaggedError<InstallationSuspended>()("InstallationSuspended", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = {
    code: "installation_suspended",
    status: 403,
    title: "Installation suspended"
  }
}
/** 403: no ADMIN_TOKEN is configured, so the operator API is off. */
export class AdminDisabled extends Schema.TaggedError<AdminDisabled>()("AdminDisabled", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "admin_disabled", status: 403, title: "Operator API disabled" }
}
/** 403: the credential is valid but does not allow this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "forbidden", status: 403, title: "Forbidden" }
}
/**
 * 403 (SPEC §10): a resource server's route needs more than the token holds; `permission` and
 * `level` name the first requirement it falls short of (the level the route requires).
 */
export class InsufficientPermissions extends Schema.TaggedError<InsufficientPermissions>()("InsufficientPermissions", {
  detail: Schema.String,
  permission: Schema.String,
  level: PermissionLevel
}) {
  static readonly problem: ProblemMeta = {
    code: "insufficient_permissions",
    status: 403,
    title: "Insufficient permissions"
  }
}
/** 404: no such route, or no such resource. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "not_found", status: 404, title: "Not found" }
}
/** 404: no such installation for this app. */
export class InstallationNotFound extends Schema.TaggedError<InstallationNotFound>()("InstallationNotFound", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = {
    code: "installation_not_found",
    status: 404,
    title: "Installation not found"
  }
}
/** 404: no such app. */
export class AppNotFound extends Schema.TaggedError<AppNotFound>()("AppNotFound", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "app_not_found", status: 404, title: "App not found" }
}
/** 405: the path exists, the method does not; `allow` lists the methods that do. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  detail: Schema.String,
  allow: Schema.Array(Schema.String)
}) {
  static readonly problem: ProblemMeta = { code: "method_not_allowed", status: 405, title: "Method not allowed" }
}
/** 409: a unique value (an app name) is taken. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "conflict", status: 409, title: "Conflict" }
}
/** 413: the request body is over the limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = { code: "payload_too_large", status: 413, title: "Payload too large" }
}
/** 422: the requested permissions exceed the grant; `permissions` names the ones that do. */
export class PermissionsExceedGrant extends Schema.TaggedError<PermissionsExceedGrant>()("PermissionsExceedGrant", {
  detail: Schema.String,
  permissions: Schema.Array(Schema.String)
}) {
  static readonly problem: ProblemMeta = {
    code: "permissions_exceed_grant",
    status: 422,
    title: "Permissions exceed grant"
  }
}
/** 422: the public key is not RSA, too short, unreadable, or one too many. */
export class InvalidPublicKey extends Schema.TaggedError<InvalidPublicKey>()("InvalidPublicKey", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = { code: "invalid_public_key", status: 422, title: "Invalid public key" }
}
/** 422: a permission name or level is unknown, or outside what the app declared. */
export class InvalidPermissions extends Schema.TaggedError<InvalidPermissions>()("InvalidPermissions", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = { code: "invalid_permissions", status: 422, title: "Invalid permissions" }
}
/** 429: too many requests; retry after `retryAfter` seconds. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  detail: Schema.String,
  retryAfter: RetryAfter
}) {
  static readonly problem: ProblemMeta = { code: "rate_limited", status: 429, title: "Rate limited" }
}
/** 500: the server failed; the detail says nothing about why. */
export class Internal extends Schema.TaggedError<Internal>()("Internal", { detail: Schema.String }) {
  static readonly problem: ProblemMeta = { code: "internal", status: 500, title: "Internal error" }
}
/** 503: the server (or its storage) is unavailable; retry after `retryAfter` seconds. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  detail: Schema.String,
  retryAfter: RetryAfter
}) {
  static readonly problem: ProblemMeta = { code: "unavailable", status: 503, title: "Service unavailable" }
}

/** What every problem error answers besides its fields: its SPEC §6 `code` and HTTP `status`. */
export interface ProblemInfo {
  readonly code: string
  readonly status: number
}

// Declaration merging gives each problem class's instances the `code` and `status` that the loop
// below defines on its prototype (so the merge is sound; biome.json allows it for this file only).
export interface InvalidRequest extends ProblemInfo {}
export interface UnsupportedApiVersion extends ProblemInfo {}
export interface MissingCredentials extends ProblemInfo {}
export interface InvalidJwt extends ProblemInfo {}
export interface InvalidToken extends ProblemInfo {}
export interface InstallationSuspended extends ProblemInfo {}
export interface AdminDisabled extends ProblemInfo {}
export interface Forbidden extends ProblemInfo {}
export interface InsufficientPermissions extends ProblemInfo {}
export interface NotFound extends ProblemInfo {}
export interface InstallationNotFound extends ProblemInfo {}
export interface AppNotFound extends ProblemInfo {}
export interface MethodNotAllowed extends ProblemInfo {}
export interface Conflict extends ProblemInfo {}
export interface PayloadTooLarge extends ProblemInfo {}
export interface PermissionsExceedGrant extends ProblemInfo {}
export interface InvalidPublicKey extends ProblemInfo {}
export interface InvalidPermissions extends ProblemInfo {}
export interface RateLimited extends ProblemInfo {}
export interface Internal extends ProblemInfo {}
export interface Unavailable extends ProblemInfo {}

/** Every problem class, in SPEC §6 order: the one list the union, the wire map and `codeOf` come from. */
const all = [
  InvalidRequest,
  UnsupportedApiVersion,
  MissingCredentials,
  InvalidJwt,
  InvalidToken,
  InstallationSuspended,
  AdminDisabled,
  Forbidden,
  InsufficientPermissions,
  NotFound,
  InstallationNotFound,
  AppNotFound,
  MethodNotAllowed,
  Conflict,
  PayloadTooLarge,
  PermissionsExceedGrant,
  InvalidPublicKey,
  InvalidPermissions,
  RateLimited,
  Internal,
  Unavailable
] as const

type ProblemClass = (typeof all)[number]

// A problem's message is its detail (the detail is what the server wrote for people), and every
// problem error answers its SPEC §6 code and HTTP status (read from its class; not wire fields).
for (const cls of all) {
  Object.defineProperties(cls.prototype, {
    message: {
      get(this: { readonly detail: string }) {
        return this.detail
      }
    },
    code: { value: cls.problem.code },
    status: { value: cls.problem.status }
  })
}

/** Every problem error. */
export type Problem = InstanceType<ProblemClass>

/** The wire schema of one error: a problem document, decoded by its `code` into the tagged error. */
export interface ProblemWire<E> extends Schema.Schema<E, ProblemDocument, never> {}

/** The encoded form every problem document shares. */
export interface ProblemDocument {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly code: string
  readonly detail: string
  readonly [extra: string]: unknown
}

const wire = <C extends ProblemClass>(cls: C): ProblemWire<InstanceType<C>> => {
  const { _tag: _, ...rest } = cls.fields as Schema.Struct.Fields
  const Document = Schema.Struct({
    type: Schema.String,
    title: Schema.String,
    status: Schema.Literal(cls.problem.status),
    code: Schema.Literal(cls.problem.code),
    ...rest
  })
  return Schema.transform(Document, cls as unknown as Schema.Schema<InstanceType<C>, any>, {
    strict: false,
    decode: ({ type: _t, title: _ti, status: _s, code: _c, ...fields }) => ({ ...fields, _tag: cls._tag }),
    encode: ({ _tag, ...fields }) => ({
      type: problemType(cls.problem.code),
      title: cls.problem.title,
      status: cls.problem.status,
      code: cls.problem.code,
      ...fields
    })
  }).annotations({
    identifier: `Problem_${cls.problem.code}`,
    title: cls.problem.title,
    description: `Problem document with code \`${cls.problem.code}\``,
    ...HttpApiSchema.annotations({ status: cls.problem.status }),
    [HttpApiSchema.AnnotationEncoding]: { kind: "Json", contentType: PROBLEM_CONTENT_TYPE }
  }) as unknown as ProblemWire<InstanceType<C>>
}

/** The wire schema of every SPEC §6 code, keyed by error tag. */
export const Problems = Object.fromEntries(all.map((cls) => [cls._tag, wire(cls)])) as unknown as {
  readonly [C in ProblemClass as C["_tag"]]: ProblemWire<InstanceType<C>>
}

/** Every problem error's wire schema, in one union (how a client decodes any error body). */
export const AnyProblem: Schema.Schema<Problem, ProblemDocument> = Schema.Union(
  ...Object.values(Problems)
) as unknown as Schema.Schema<Problem, ProblemDocument>

const metaByTag: ReadonlyMap<string, ProblemMeta> = new Map(all.map((cls) => [cls._tag, cls.problem]))

/** The SPEC §6 code and HTTP status of a problem error. */
export const codeOf = (e: Problem): { readonly code: string; readonly status: number } => {
  const meta = metaByTag.get(e._tag)!
  return { code: meta.code, status: meta.status }
}

/** Whether a value is one of the problem errors. */
export const isProblem = (u: unknown): u is Problem =>
  typeof u === "object" && u !== null && metaByTag.has((u as { readonly _tag?: unknown })._tag as string)
