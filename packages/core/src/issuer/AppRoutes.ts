/**
 * The handlers of the Apps API (SPEC §4): what apps call with an App JWT or an access token.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { CurrentApp, CurrentToken, IcrAppsApi } from "../api/Api.js"
import { InstallationPage } from "../api/Installations.js"
import { pageRequest } from "../api/Paging.js"
import { AccessToken, InstallationAccessToken, TokenDescription } from "../api/Tokens.js"
import { AccessTokens, type MintedToken } from "./AccessTokens.js"
import * as AuditLog from "./AuditLog.js"
import { RouteInstallation } from "./Auth.js"
import { originOf } from "./Config.js"
import { InstallationMissing, installationOfApp, Registry } from "./Registry.js"
import {
  linkHeader,
  nextCursorOf,
  setLink,
  startOf,
  toInstallation,
  tokenFields,
  toTimestamp,
  trusted
} from "./Responses.js"
import { answering, asProblems } from "./StorageProblems.js"

/** Handlers of the Apps API (SPEC §4). */
export const AppsLive = HttpApiBuilder.group(IcrAppsApi, "apps", (handlers) =>
  Effect.gen(function* () {
    const tokens = answering(yield* AccessTokens)
    const registry = yield* Registry
    const { audited } = AuditLog.auditTrail(yield* AuditLog.AuditLog)
    const tokenId = (minted: MintedToken) => ({ tokenId: minted.record.id })
    /** The app's installation `installationId`: as AppAuth read it for this route, else read now. */
    const installationOf = (appId: string, installationId: string) =>
      Effect.flatMap(RouteInstallation, (named) => {
        const read = named.take(installationId)
        if (read === undefined) return asProblems(installationOfApp(registry, appId, installationId))
        // Another app's installation is reported exactly like a missing one.
        return asProblems(
          Option.isSome(read) && read.value.appId === appId
            ? Effect.succeed(read.value)
            : Effect.fail(new InstallationMissing())
        )
      })
    // Token responses must never be cached (SPEC §1): every response carries `Cache-Control:
    // no-store` (the common rules' security headers), these included.
    return handlers
      .handle("createAppAccessToken", ({ payload }) =>
        Effect.flatMap(CurrentApp, ({ appId, permissions, tokenEpoch }) =>
          Effect.map(
            audited(
              { action: "app_token.mint", actor: "app", appId },
              tokens.mintAppToken(appId, permissions, tokenEpoch, payload.permissions),
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
              Effect.flatMap(RouteInstallation, (named) =>
                tokens.mintInstallationToken(
                  appId,
                  path.installationId,
                  payload.permissions,
                  tokenEpoch,
                  named.take(path.installationId)
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
        Effect.flatMap(CurrentToken, ({ digest, shard, token }) =>
          audited(
            {
              action: "token.revoke",
              actor: "token",
              appId: token.appId,
              ...(token.installationId !== undefined ? { installationId: token.installationId } : {}),
              tokenId: token.id
            },
            tokens.revoke(digest, shard)
          )
        )
      )
      .handle("listInstallations", ({ urlParams }) =>
        Effect.gen(function* () {
          const { appId } = yield* CurrentApp
          const request = yield* pageRequest(urlParams)
          const origin = yield* originOf
          const result = yield* asProblems(registry.listInstallations({ appId, activeOnly: true }, startOf(request)))
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
          return toInstallation(yield* installationOf(appId, path.installationId), yield* originOf)
        })
      )
  })
)
