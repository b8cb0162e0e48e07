/**
 * Access tokens: the secret's format, the minted token, and its description (SPEC §2, §3, §4).
 */
import * as Schema from "effect/Schema"
import { Permissions } from "./Permissions.js"
import { AppId, Timestamp, Uuid } from "./Primitives.js"

/** `crs_` followed by 48 lower-case hex characters (24 bytes from a CSPRNG). */
export const accessTokenPattern = /^crs_[0-9a-f]{48}$/

/** The secret text of an access token. */
export const AccessTokenSecret = Schema.String.pipe(
  Schema.pattern(accessTokenPattern, { message: () => "must be crs_ followed by 48 lower-case hex characters" }),
  Schema.annotations({ identifier: "AccessTokenSecret" })
)

/** The kinds of access token. */
export const TokenKind = Schema.Literal("app", "installation").annotations({ identifier: "TokenKind" })
/** The kinds of access token. */
export type TokenKind = typeof TokenKind.Type

const accessTokenFields = {
  id: Uuid,
  createdAt: Timestamp,
  updatedAt: Timestamp,
  /** Redacted once decoded, so it can be logged or inspected without leaking. */
  token: Schema.Redacted(AccessTokenSecret),
  expiresAt: Timestamp,
  isActive: Schema.Boolean,
  permissions: Permissions,
  appId: AppId
}

/** An app access token, as minted by `POST /app/accessTokens`. */
export class AccessToken extends Schema.Class<AccessToken>("AccessToken")(accessTokenFields, {
  description: "An app access token"
}) {}

/** An installation access token, as minted by `POST /app/installations/{id}/accessTokens`. */
export class InstallationAccessToken extends Schema.Class<InstallationAccessToken>("InstallationAccessToken")(
  {
    ...accessTokenFields,
    installationId: Uuid,
    organizationId: Uuid
  },
  { description: "An installation access token" }
) {}

/** Who a token speaks for and what it may do: shared by its description and its stored record. */
const tokenIdentityFields = {
  id: Uuid,
  kind: TokenKind,
  appId: AppId,
  installationId: Schema.optionalWith(Uuid, { exact: true }),
  organizationId: Schema.optionalWith(Uuid, { exact: true }),
  permissions: Permissions
}

/** What `GET /app/installations/token` tells about the token in the header; never the token itself. */
export class TokenDescription extends Schema.Class<TokenDescription>("TokenDescription")(
  { ...tokenIdentityFields, createdAt: Timestamp, expiresAt: Timestamp },
  { description: "A description of an access token, without its secret" }
) {}

/**
 * A narrowed grant as a mint asks for it: at least one permission. An empty `{}` is refused (422
 * `invalid_permissions`): an empty grant never means "everything" (SPEC §4), and a token with no
 * permission at all serves nobody.
 */
export const RequestedPermissions = Permissions.pipe(
  Schema.filter((p) => Object.keys(p).length > 0, {
    message: () => "must name at least one permission (leave permissions out for the full grant)",
    jsonSchema: { minProperties: 1 }
  }),
  Schema.annotations({ identifier: "RequestedPermissions" })
)

/**
 * The optional body of both mints (SPEC §4): `{ "permissions": {...} }` narrows the grant (the
 * installation's, or for an app token the app's declared permissions); no body, or `{}`, means the
 * full grant. A member the endpoint does not know is refused (400), never ignored: a caller who
 * believes it narrowed a token must not receive a wider one.
 */
export const NarrowingRequest = Schema.Struct({
  permissions: Schema.optionalWith(RequestedPermissions, { exact: true })
}).annotations({
  identifier: "NarrowingRequest",
  description: "Optional narrowing of a minted token's permissions",
  parseOptions: { onExcessProperty: "error" }
})
/** The optional body of both mints. */
export type NarrowingRequest = typeof NarrowingRequest.Type

/** The optional body of `POST /app/installations/{id}/accessTokens`: a narrower grant. */
export const CreateInstallationTokenRequest = NarrowingRequest
/** The optional body of `POST /app/installations/{id}/accessTokens`. */
export type CreateInstallationTokenRequest = NarrowingRequest

/** The optional body of `POST /app/accessTokens`: a grant narrower than the app's declared permissions. */
export const CreateAppTokenRequest = NarrowingRequest
/** The optional body of `POST /app/accessTokens`. */
export type CreateAppTokenRequest = NarrowingRequest

/**
 * What the issuer stores for a minted token, keyed by the SHA-256 digest of its secret. The secret
 * itself is never stored. Times are epoch milliseconds so storage needs no date parsing.
 */
export class StoredToken extends Schema.Class<StoredToken>("StoredToken")({
  ...tokenIdentityFields,
  createdAt: Schema.Number,
  expiresAt: Schema.Number,
  /**
   * The app's token epoch when the token was minted; the token is honoured only while it is still
   * the app's epoch (SPEC §5: kill switches are final).
   */
  appEpoch: Schema.Int,
  /** For installation tokens: the installation's token epoch when minted (0 for app tokens). */
  installationEpoch: Schema.Int
}) {}
