/**
 * What the handlers answer with, made from stored records: apps, keys, installations, tokens, and
 * the `Link` headers of paged listings (RFC 8288).
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { App, AppKey } from "../api/Apps.js"
import { Installation } from "../api/Installations.js"
import { InstallationAccessToken, type StoredToken, TokenDescription } from "../api/Tokens.js"
import { encodeCursor, type OffsetRequest, type PageRequest } from "../api/Paging.js"
import { canonical } from "../api/Permissions.js"
import type { MintedToken } from "./AccessTokens.js"
import type { AppRecord, InstallationRecord, PageStart, RecordPage } from "./Registry.js"

/** A stored time (epoch ms) as a wire timestamp. */
export const toTimestamp = (ms: number) => DateTime.unsafeMake(ms)

/**
 * Skips a `Schema.Class` constructor's validation for values the handler built from its own records:
 * validating recompiles a parser on every call (a quarter of describe's and mint's CPU), and the
 * response encoder checks the same shape on the way out anyway.
 */
export const trusted = true

/** An installation as the API shows it, its `accessTokensUrl` on `origin`. */
export const toInstallation = (record: InstallationRecord, origin: string) =>
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

/** An app, with its keys, as the operator API shows it. */
export const toApp = (record: AppRecord) =>
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

/**
 * The fields every minted token answers with (SPEC §3 `AccessToken`), its times made by `time` and
 * its secret by `reveal`: as the response class holds them (`DateTime`, `Redacted`) or in their wire form.
 */
const mintedFields = <T, S>(
  { secret, record }: MintedToken,
  time: (ms: number) => T,
  reveal: (secret: Redacted.Redacted<string>) => S
) => ({
  id: record.id,
  createdAt: time(record.createdAt),
  updatedAt: time(record.createdAt),
  token: reveal(secret),
  expiresAt: time(record.expiresAt),
  isActive: true,
  permissions: record.permissions,
  appId: record.appId
})

/** The fields every minted token answers with (SPEC §3 `AccessToken`). */
export const tokenFields = (minted: MintedToken) => mintedFields(minted, toTimestamp, (secret) => secret)

/** What `GET /app/installations/token` tells about a stored token (SPEC §4), its times made by `time`: never its secret. */
const descriptionFields = <T>(token: StoredToken, time: (ms: number) => T) => ({
  id: token.id,
  kind: token.kind,
  appId: token.appId,
  ...(token.installationId !== undefined ? { installationId: token.installationId } : {}),
  ...(token.organizationId !== undefined ? { organizationId: token.organizationId } : {}),
  permissions: token.permissions,
  createdAt: time(token.createdAt),
  expiresAt: time(token.expiresAt)
})

/** What `GET /app/installations/token` answers about a stored token (SPEC §4): never its secret. */
export const toTokenDescription = (token: StoredToken) =>
  new TokenDescription(descriptionFields(token, toTimestamp), trusted)

/** A freshly minted installation token as `POST /app/installations/{id}/accessTokens` answers it. */
export const toInstallationAccessToken = (minted: MintedToken) =>
  new InstallationAccessToken(
    {
      ...tokenFields(minted),
      installationId: minted.record.installationId!,
      organizationId: minted.record.organizationId!
    },
    trusted
  )

/** A stored time (epoch ms) as `Timestamp` encodes it on the wire: RFC 3339 UTC, no fraction when it is zero. */
export const toWireTimestamp = (ms: number): string => new Date(ms).toISOString().replace(/\.000Z$/, "Z")

/**
 * {@link toTokenDescription}, already in its wire form: what the schema encodes it to, built
 * without the class and `DateTime` (the direct path validates it with the schema's wire side).
 */
export const tokenDescriptionWire = (token: StoredToken): typeof TokenDescription.Encoded =>
  descriptionFields(token, toWireTimestamp)

/** {@link toInstallationAccessToken}, already in its wire form (see {@link tokenDescriptionWire}). */
export const installationAccessTokenWire = (minted: MintedToken): typeof InstallationAccessToken.Encoded => ({
  ...mintedFields(minted, toWireTimestamp, Redacted.value),
  installationId: minted.record.installationId!,
  organizationId: minted.record.organizationId!
})

/** Where a page requested by number starts; a number too large to be an offset starts past every listing. */
export const offsetStart = (request: OffsetRequest) => ({
  limit: request.limit,
  offset: Math.min(request.page * request.limit, Number.MAX_SAFE_INTEGER)
})

/** Where a requested page starts: at an offset, or just after a cursor's position. */
export const startOf = (request: PageRequest): PageStart =>
  request._tag === "Cursor" ? { limit: request.limit, after: request.after } : offsetStart(request)

/**
 * The `Link` header of a page (RFC 8288). By cursor: `next` when a further item exists (a keyset
 * has no way back, so no `prev`). By page: `next` when more exist, `prev` when `page > 0`.
 * `listing` is the path and any fixed query parameters, ending in `?` or `&`.
 */
export const linkHeader = (
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
export const setLink = (link: string | undefined) =>
  link === undefined
    ? Effect.void
    : HttpApp.appendPreResponseHandler((_request, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "link", link))
      )

/** The cursor after a page: the last item's position, when another item follows it. */
export const nextCursorOf = (result: RecordPage<InstallationRecord>): string | undefined => {
  const last = result.items.at(-1)
  return result.more && last !== undefined ? encodeCursor(last) : undefined
}
