/**
 * The broker's errors (SPEC §8): the OAuth ones of RFC 6749 §5.2 and RFC 8693 §2.2.2 that the
 * issuer's list (SPEC §6) does not have, beside the issuer's own that the broker shares
 * (`invalid_request`, `rate_limited`, `unavailable`, …).
 *
 * On the wire each is an RFC 9457 problem document, `{ type, title, status, code, detail }`,
 * with `error` and `error_description` as well, so that an OAuth client library that reads
 * RFC 6749 error responses understands the broker too.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import {
  AdminDisabled,
  Conflict,
  Internal,
  InvalidToken,
  MissingCredentials,
  InvalidRequest,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  PROBLEM_CONTENT_TYPE,
  type ProblemMeta,
  problemType,
  RateLimited,
  Unavailable
} from "@icr-apps/core/api/Problems"
import * as Schema from "effect/Schema"

/**
 * Why a request was refused, in a word the audit line and a client can match on (`expired`,
 * `audience`, `unknown_kid`, `no_policy`, …): never a secret, never the caller's input.
 */
const reason = Schema.optional(Schema.String)

/** 400: the subject token is malformed, unverifiable, expired, not yet valid, or for another audience or issuer. */
export class InvalidGrant extends Schema.TaggedError<InvalidGrant>()("InvalidGrant", {
  detail: Schema.String,
  reason
}) {
  static readonly problem: ProblemMeta = { code: "invalid_grant", status: 400, title: "Invalid grant" }
}
/** 403: the caller is authenticated, but no trust policy names it (for this action). */
export class UnauthorizedClient extends Schema.TaggedError<UnauthorizedClient>()("UnauthorizedClient", {
  detail: Schema.String,
  reason
}) {
  static readonly problem: ProblemMeta = { code: "unauthorized_client", status: 403, title: "Unauthorized client" }
}
/** 400: the installation (`resource`) is malformed, unknown, suspended, or not one the caller's policies reach. */
export class InvalidTarget extends Schema.TaggedError<InvalidTarget>()("InvalidTarget", {
  detail: Schema.String,
  reason
}) {
  static readonly problem: ProblemMeta = { code: "invalid_target", status: 400, title: "Invalid target" }
}
/** 400: `scope` is malformed, or asks for more than the policy (or the installation) grants. */
export class InvalidScope extends Schema.TaggedError<InvalidScope>()("InvalidScope", {
  detail: Schema.String,
  reason
}) {
  static readonly problem: ProblemMeta = { code: "invalid_scope", status: 400, title: "Invalid scope" }
}

/**
 * 428: a `PUT /admin/policies` without `If-Match: "<version>"` — the operator must say which version
 * its change is based on, so that two operators' changes never silently overwrite each other.
 */
export class PreconditionRequired extends Schema.TaggedError<PreconditionRequired>()("PreconditionRequired", {
  detail: Schema.String
}) {
  static readonly problem: ProblemMeta = {
    code: "precondition_required",
    status: 428,
    title: "Precondition required"
  }
}

/** Every error the broker answers with. */
export type BrokerProblem =
  | InvalidRequest
  | InvalidGrant
  | UnauthorizedClient
  | InvalidTarget
  | InvalidScope
  | RateLimited
  | Unavailable
  | NotFound
  | MethodNotAllowed
  | PayloadTooLarge
  | Internal
  | AdminDisabled
  | MissingCredentials
  | InvalidToken
  | Conflict
  | PreconditionRequired

type ProblemClass =
  | typeof InvalidRequest
  | typeof InvalidGrant
  | typeof UnauthorizedClient
  | typeof InvalidTarget
  | typeof InvalidScope
  | typeof RateLimited
  | typeof Unavailable
  | typeof NotFound
  | typeof MethodNotAllowed
  | typeof PayloadTooLarge
  | typeof Internal
  | typeof AdminDisabled
  | typeof MissingCredentials
  | typeof InvalidToken
  | typeof Conflict
  | typeof PreconditionRequired

/** The wire schema of one problem: the tagged error, encoded as a problem document (and an RFC 6749 error). */
const wire = <C extends ProblemClass>(cls: C): Schema.Schema<InstanceType<C>, Record<string, unknown>> => {
  const { _tag: _, ...fields } = cls.fields as Schema.Struct.Fields
  const meta = cls.problem
  const Document = Schema.Struct({
    type: Schema.String,
    title: Schema.String,
    status: Schema.Literal(meta.status),
    code: Schema.Literal(meta.code),
    error: Schema.Literal(meta.code),
    error_description: Schema.String,
    ...fields
  })
  return Schema.transform(Document, cls as unknown as Schema.Schema<InstanceType<C>, any>, {
    strict: false,
    decode: ({ type: _t, title: _ti, status: _s, code: _c, error: _e, error_description: _d, ...rest }) => ({
      ...rest,
      _tag: cls._tag
    }),
    encode: ({ _tag, ...rest }) => ({
      type: problemType(meta.code),
      title: meta.title,
      status: meta.status,
      code: meta.code,
      error: meta.code,
      error_description: (rest as { detail: string }).detail,
      ...rest
    })
  }).annotations({
    identifier: `BrokerProblem_${meta.code}`,
    title: meta.title,
    description: `Problem document with code \`${meta.code}\``,
    ...HttpApiSchema.annotations({ status: meta.status }),
    [HttpApiSchema.AnnotationEncoding]: { kind: "Json", contentType: PROBLEM_CONTENT_TYPE }
  }) as unknown as Schema.Schema<InstanceType<C>, Record<string, unknown>>
}

/** The wire schema of each broker problem, by tag. */
export const Problems = {
  InvalidRequest: wire(InvalidRequest),
  InvalidGrant: wire(InvalidGrant),
  UnauthorizedClient: wire(UnauthorizedClient),
  InvalidTarget: wire(InvalidTarget),
  InvalidScope: wire(InvalidScope),
  RateLimited: wire(RateLimited),
  Unavailable: wire(Unavailable),
  NotFound: wire(NotFound),
  MethodNotAllowed: wire(MethodNotAllowed),
  PayloadTooLarge: wire(PayloadTooLarge),
  Internal: wire(Internal),
  AdminDisabled: wire(AdminDisabled),
  MissingCredentials: wire(MissingCredentials),
  InvalidToken: wire(InvalidToken),
  Conflict: wire(Conflict),
  PreconditionRequired: wire(PreconditionRequired)
} as const

/** The SPEC code of any broker problem. */
export const codeOf = (e: BrokerProblem): string => (e.constructor as unknown as { problem: ProblemMeta }).problem.code

export {
  AdminDisabled,
  Conflict,
  Internal,
  InvalidRequest,
  InvalidToken,
  MissingCredentials,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  RateLimited,
  Unavailable
}

// A problem's message is its detail, as in the core's problems.
for (const cls of [InvalidGrant, UnauthorizedClient, InvalidTarget, InvalidScope]) {
  Object.defineProperty(cls.prototype, "message", {
    get(this: { readonly detail: string }) {
      return this.detail
    }
  })
}
