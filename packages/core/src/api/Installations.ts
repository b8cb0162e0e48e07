/**
 * Installations and their pages (SPEC §3, §4, §5).
 */
import * as Schema from "effect/Schema"
import { CursorParam, LimitParam, PageParam, pageFields } from "./Paging.js"
import { Permissions } from "./Permissions.js"
import { AppId, AppName, Timestamp, Uuid } from "./Primitives.js"

/** The default and bounds of `?limit=` (SPEC §4); kept here too, where the SDK has always found them. */
export { PAGE_LIMIT } from "./Paging.js"

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

/**
 * One page of an app's active installations (SPEC §4); the `Link` header carries `next`/`prev`.
 * `page` is there when the request paged by offset (or named neither `page` nor `cursor`), not
 * when it followed a cursor; `nextCursor` is there whenever a further installation exists.
 */
export class InstallationPage extends Schema.Class<InstallationPage>("InstallationPage")(
  {
    items: Schema.Array(Installation),
    page: Schema.optionalWith(
      pageFields.page.annotations({ description: "The page number, for offset requests (absent for cursor ones)" }),
      { exact: true }
    ),
    limit: pageFields.limit,
    total: pageFields.total.annotations({ description: "How many active installations the app has" }),
    nextCursor: Schema.optionalWith(
      Schema.String.annotations({
        description: "Pass as `?cursor=` to get the installations after this page; absent on the last page"
      }),
      { exact: true }
    )
  },
  { description: "A page of an app's active installations" }
) {}

/** One page of installations as the operator sees them (SPEC §5): every installation, suspended ones too. */
export class AdminInstallationPage extends Schema.Class<AdminInstallationPage>("AdminInstallationPage")(
  { items: Schema.Array(Installation), ...pageFields },
  { description: "A page of installations, suspended ones included" }
) {}

/** `?limit=&page=&cursor=` of `GET /app/installations` (SPEC §4); read with {@link pageRequest}. */
export const InstallationsQuery = Schema.Struct({ limit: LimitParam, page: PageParam, cursor: CursorParam })
/** `?limit=&page=&cursor=` of `GET /app/installations`. */
export type InstallationsQuery = typeof InstallationsQuery.Type

/** `?appId=&limit=&page=` of `GET /admin/installations` (SPEC §5). */
export const AdminInstallationsQuery = Schema.Struct({
  appId: Schema.optionalWith(AppId.annotations({ title: "appId", description: "Only this app's installations" }), {
    exact: true
  }),
  limit: LimitParam,
  page: PageParam
})
/** `?appId=&limit=&page=` of `GET /admin/installations`. */
export type AdminInstallationsQuery = typeof AdminInstallationsQuery.Type

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
