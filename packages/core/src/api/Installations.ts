/**
 * Installations and their pages (SPEC §3, §4, §5).
 */
import * as Schema from "effect/Schema"
import { Permissions } from "./Permissions.js"
import { AppId, AppName, Timestamp, Uuid } from "./Primitives.js"

/** The default and bounds of `?limit=` (SPEC §4). */
export const PAGE_LIMIT = { default: 10, min: 1, max: 100 } as const

/** An installation of an app in an organization. */
export class Installation extends Schema.Class<Installation>("Installation")(
  {
    id: Uuid,
    createdAt: Timestamp,
    updatedAt: Timestamp,
    permissions: Permissions,
    appNameId: AppName,
    appId: AppId,
    organizationId: Uuid,
    accessTokensUrl: Schema.String.annotations({ description: "Absolute URL that mints this installation's tokens" }),
    suspendedAt: Schema.NullOr(Timestamp)
  },
  { description: "An installation of an app in an organization" }
) {}

/** One page of an app's installations; the `Link` header carries `next`/`prev`. */
export class InstallationPage extends Schema.Class<InstallationPage>("InstallationPage")(
  {
    items: Schema.Array(Installation),
    page: Schema.Int.pipe(Schema.nonNegative()),
    limit: Schema.Int.pipe(Schema.between(PAGE_LIMIT.min, PAGE_LIMIT.max)),
    total: Schema.Int.pipe(Schema.nonNegative())
  },
  { description: "A page of installations" }
) {}

/** A non-negative integer carried as a query-string value. */
const QueryInt = Schema.String.pipe(
  Schema.pattern(/^(0|[1-9][0-9]{0,15})$/, { message: () => "must be a non-negative integer" }),
  Schema.compose(Schema.NumberFromString)
)

/**
 * `?limit=&page=` of `GET /app/installations`: limit 1..100 (default 10), page >= 0 (default 0).
 * Defaults are applied by {@link pageRequest}, so the wire schema stays a plain object that the
 * OpenAPI generator can list parameter by parameter.
 */
export const InstallationsQuery = Schema.Struct({
  limit: Schema.optionalWith(
    QueryInt.pipe(Schema.between(PAGE_LIMIT.min, PAGE_LIMIT.max)).annotations({
      description: "Items per page, 1..100 (default 10)"
    }),
    { exact: true }
  ),
  page: Schema.optionalWith(
    QueryInt.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER)).annotations({
      description: "Zero-based page number (default 0)"
    }),
    { exact: true }
  )
})
/** `?limit=&page=` of `GET /app/installations`. */
export type InstallationsQuery = typeof InstallationsQuery.Type

/** A page request with the defaults of SPEC §4 applied. */
export const pageRequest = (q: InstallationsQuery): { readonly limit: number; readonly page: number } => ({
  limit: q.limit ?? PAGE_LIMIT.default,
  page: q.page ?? 0
})

/** Body of `POST /admin/installations`. */
export const CreateInstallationRequest = Schema.Struct({
  appId: AppId,
  organizationId: Uuid,
  permissions: Permissions
}).annotations({ identifier: "CreateInstallationRequest", parseOptions: { onExcessProperty: "error" } })
/** Body of `POST /admin/installations`. */
export type CreateInstallationRequest = typeof CreateInstallationRequest.Type

/** Body of `PATCH /admin/installations/{id}`. */
export const UpdateInstallationRequest = Schema.Struct({
  permissions: Schema.optionalWith(Permissions, { exact: true }),
  suspended: Schema.optionalWith(Schema.Boolean, { exact: true })
}).annotations({ identifier: "UpdateInstallationRequest", parseOptions: { onExcessProperty: "error" } })
/** Body of `PATCH /admin/installations/{id}`. */
export type UpdateInstallationRequest = typeof UpdateInstallationRequest.Type
