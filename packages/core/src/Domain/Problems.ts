/**
 * The errors of SPEC §6: one tagged error per `code`, and its RFC 9457 problem-document wire form.
 *
 * In Effect code each error is a `Schema.TaggedError` (so `catchTag` works); on the wire it is
 * `{ type, title, status, code, detail, ...extras }` with `Content-Type: application/problem+json`,
 * and no `_tag` — a client decodes it by `code`, so it also understands a server that is not this one.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"

/** The `Content-Type` of every error response. */
export const PROBLEM_CONTENT_TYPE = "application/problem+json"

/** The `type` URI of a problem document with the given code. */
export const problemType = (code: string): string => `urn:icr:problem:${code}`

/** 400: the request is malformed (bad id, bad query, bad or oversized JSON, unknown fields). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 400: `x-icr-api-version` names a version this server does not serve. */
export class UnsupportedApiVersion extends Schema.TaggedError<UnsupportedApiVersion>()("UnsupportedApiVersion", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 401: no credential was sent. */
export class MissingCredentials extends Schema.TaggedError<MissingCredentials>()("MissingCredentials", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

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

/** 401: the App JWT was refused; `reason` says why. */
export class InvalidJwt extends Schema.TaggedError<InvalidJwt>()("InvalidJwt", {
  detail: Schema.String,
  reason: JwtFailureReason
}) {
  override get message(): string {
    return this.detail
  }
}
/** 401: the access token is unknown, expired, revoked, or no longer backed by a live installation. */
export class InvalidToken extends Schema.TaggedError<InvalidToken>()("InvalidToken", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 403: the installation is suspended. */
export class InstallationSuspended extends Schema.TaggedError<InstallationSuspended>()("InstallationSuspended", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 403: no ADMIN_TOKEN is configured, so the operator API is off. */
export class AdminDisabled extends Schema.TaggedError<AdminDisabled>()("AdminDisabled", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 403: the credential is valid but does not allow this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 404: no such route, or no such resource. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 404: no such installation for this app. */
export class InstallationNotFound extends Schema.TaggedError<InstallationNotFound>()("InstallationNotFound", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 404: no such app. */
export class AppNotFound extends Schema.TaggedError<AppNotFound>()("AppNotFound", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 405: the path exists, the method does not; `allow` lists the methods that do. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  detail: Schema.String,
  allow: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.detail
  }
}
/** 409: a unique value (an app name) is taken. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 413: the request body is over the limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 422: the requested permissions exceed the grant; `permissions` names the ones that do. */
export class PermissionsExceedGrant extends Schema.TaggedError<PermissionsExceedGrant>()("PermissionsExceedGrant", {
  detail: Schema.String,
  permissions: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.detail
  }
}
/** 422: the public key is not RSA, too short, unreadable, or one too many. */
export class InvalidPublicKey extends Schema.TaggedError<InvalidPublicKey>()("InvalidPublicKey", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 422: a permission name or level is unknown, or outside what the app declared. */
export class InvalidPermissions extends Schema.TaggedError<InvalidPermissions>()("InvalidPermissions", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}
/** 429: too many requests; retry after `retryAfter` seconds. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  detail: Schema.String,
  retryAfter: Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { exact: true })
}) {
  override get message(): string {
    return this.detail
  }
}
/** 500: the server failed; the detail says nothing about why. */
export class Internal extends Schema.TaggedError<Internal>()("Internal", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}
/** 503: the server (or its storage) is unavailable; retry after `retryAfter` seconds. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  detail: Schema.String,
  retryAfter: Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { exact: true })
}) {
  override get message(): string {
    return this.detail
  }
}

/** Every problem error. */
export type Problem =
  | InvalidRequest
  | UnsupportedApiVersion
  | MissingCredentials
  | InvalidJwt
  | InvalidToken
  | InstallationSuspended
  | AdminDisabled
  | Forbidden
  | NotFound
  | InstallationNotFound
  | AppNotFound
  | MethodNotAllowed
  | Conflict
  | PayloadTooLarge
  | PermissionsExceedGrant
  | InvalidPublicKey
  | InvalidPermissions
  | RateLimited
  | Internal
  | Unavailable

type ProblemClass<E> = Schema.Schema<E, any, never> & { readonly fields: Schema.Struct.Fields }

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

const wire = <E extends { readonly _tag: string }>(
  cls: ProblemClass<E>,
  code: string,
  status: number,
  title: string
): ProblemWire<E> => {
  const { _tag: tagField, ...rest } = cls.fields
  const tag = (tagField as unknown as { ast: { type: { literal: string } } }).ast.type.literal
  const Document = Schema.Struct({
    type: Schema.String,
    title: Schema.String,
    status: Schema.Literal(status),
    code: Schema.Literal(code),
    ...rest
  })
  return Schema.transform(Document, cls, {
    strict: false,
    decode: ({ type: _t, title: _ti, status: _s, code: _c, ...fields }) => ({ ...fields, _tag: tag }),
    encode: ({ _tag, ...fields }) => ({ type: problemType(code), title, status, code, ...fields })
  }).annotations({
    identifier: `Problem_${code}`,
    title,
    description: `Problem document with code \`${code}\``,
    ...HttpApiSchema.annotations({ status }),
    [HttpApiSchema.AnnotationEncoding]: { kind: "Json", contentType: PROBLEM_CONTENT_TYPE }
  }) as unknown as ProblemWire<E>
}

/** The wire schema of every SPEC §6 code, keyed by error tag. */
export const Problems = {
  InvalidRequest: wire(InvalidRequest, "invalid_request", 400, "Invalid request"),
  UnsupportedApiVersion: wire(UnsupportedApiVersion, "unsupported_api_version", 400, "Unsupported API version"),
  MissingCredentials: wire(MissingCredentials, "missing_credentials", 401, "Missing credentials"),
  InvalidJwt: wire(InvalidJwt, "invalid_jwt", 401, "Invalid JWT"),
  InvalidToken: wire(InvalidToken, "invalid_token", 401, "Invalid access token"),
  InstallationSuspended: wire(InstallationSuspended, "installation_suspended", 403, "Installation suspended"),
  AdminDisabled: wire(AdminDisabled, "admin_disabled", 403, "Operator API disabled"),
  Forbidden: wire(Forbidden, "forbidden", 403, "Forbidden"),
  NotFound: wire(NotFound, "not_found", 404, "Not found"),
  InstallationNotFound: wire(InstallationNotFound, "installation_not_found", 404, "Installation not found"),
  AppNotFound: wire(AppNotFound, "app_not_found", 404, "App not found"),
  MethodNotAllowed: wire(MethodNotAllowed, "method_not_allowed", 405, "Method not allowed"),
  Conflict: wire(Conflict, "conflict", 409, "Conflict"),
  PayloadTooLarge: wire(PayloadTooLarge, "payload_too_large", 413, "Payload too large"),
  PermissionsExceedGrant: wire(PermissionsExceedGrant, "permissions_exceed_grant", 422, "Permissions exceed grant"),
  InvalidPublicKey: wire(InvalidPublicKey, "invalid_public_key", 422, "Invalid public key"),
  InvalidPermissions: wire(InvalidPermissions, "invalid_permissions", 422, "Invalid permissions"),
  RateLimited: wire(RateLimited, "rate_limited", 429, "Rate limited"),
  Internal: wire(Internal, "internal", 500, "Internal error"),
  Unavailable: wire(Unavailable, "unavailable", 503, "Service unavailable")
} as const

/** Every problem error's wire schema, in one union (how a client decodes any error body). */
export const AnyProblem: Schema.Schema<Problem, ProblemDocument> = Schema.Union(
  ...Object.values(Problems)
) as unknown as Schema.Schema<Problem, ProblemDocument>

/** The SPEC §6 code and HTTP status of a problem error. */
export const codeOf = (e: Problem): { readonly code: string; readonly status: number } => {
  const doc = Schema.encodeSync(AnyProblem)(e)
  return { code: doc.code, status: doc.status }
}
