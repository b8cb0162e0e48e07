/**
 * The handlers of the operator API (SPEC §5): how apps, keys and installations come to exist,
 * change and end — each change audited, each kill switch recorded as such.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { IcrAppsApi } from "../api/Api.js"
import { AppKey, AppPage } from "../api/Apps.js"
import { AdminInstallationPage } from "../api/Installations.js"
import { offsetRequest } from "../api/Paging.js"
import { canonical, exceeding, type Permissions } from "../api/Permissions.js"
import { AppNotFound, InstallationNotFound, InvalidPermissions } from "../api/Problems.js"
import { toBase64 } from "../internal/der.js"
import * as AuditLog from "./AuditLog.js"
import { originOf } from "./Config.js"
import * as Entropy from "./Entropy.js"
import { checkPublicKey } from "./PublicKeys.js"
import { Registry } from "./Registry.js"
import { linkHeader, offsetStart, setLink, toApp, toInstallation, toTimestamp } from "./Responses.js"
import { answering } from "./StorageProblems.js"

const appNotFound = () => new AppNotFound({ detail: "No such app" })

/** An installation may hold only what its app declares (SPEC §5). */
const withinDeclared = (requested: Permissions, declared: Permissions) => {
  const over = exceeding(requested, declared)
  return over.length === 0
    ? Effect.void
    : Effect.fail(new InvalidPermissions({ detail: `Permissions beyond what the app declares: ${over.join(", ")}` }))
}

/** Handlers of the operator API (SPEC §5). */
export const AdminLive = HttpApiBuilder.group(IcrAppsApi, "admin", (handlers) =>
  Effect.gen(function* () {
    const registry = answering(yield* Registry)
    const entropy = yield* Entropy.Entropy
    const audit = AuditLog.auditTrail(yield* AuditLog.AuditLog)
    const { audited } = audit
    const newKey = (publicKey: Parameters<typeof checkPublicKey>[0]) =>
      Effect.gen(function* () {
        const checked = yield* checkPublicKey(publicKey)
        return {
          id: yield* entropy.uuid,
          fingerprint: checked.fingerprint,
          spki: toBase64(checked.spki),
          createdAt: yield* Clock.currentTimeMillis
        }
      })
    return handlers
      .handle("createApp", ({ payload }) =>
        audited(
          { action: "app.create", actor: "operator" },
          Effect.gen(function* () {
            const key = yield* newKey(payload.publicKey)
            const now = key.createdAt
            const app = yield* registry.createApp(
              { name: payload.name, permissions: canonical(payload.permissions), createdAt: now, updatedAt: now },
              key
            )
            return toApp(app)
          }),
          (app) => ({ appId: app.id, ...(app.keys[0] !== undefined ? { keyId: app.keys[0].id } : {}) })
        )
      )
      .handle("listApps", ({ urlParams }) =>
        Effect.gen(function* () {
          const request = offsetRequest(urlParams)
          const result = yield* registry.listApps(offsetStart(request))
          yield* setLink(linkHeader(`${yield* originOf}/admin/apps?`, request, result.total, undefined))
          return new AppPage({
            items: result.items.map(toApp),
            page: request.page,
            limit: request.limit,
            total: result.total
          })
        })
      )
      .handle("getApp", ({ path }) =>
        Effect.flatMap(
          registry.getApp(path.appId),
          Option.match({ onNone: () => Effect.fail(appNotFound()), onSome: (a) => Effect.succeed(toApp(a)) })
        )
      )
      .handle("addAppKey", ({ path, payload }) =>
        audited(
          { action: "app.key_add", actor: "operator", appId: path.appId },
          Effect.gen(function* () {
            if (Option.isNone(yield* registry.getApp(path.appId))) return yield* appNotFound()
            const key = yield* registry.addKey({ ...(yield* newKey(payload.publicKey)), appId: path.appId })
            return new AppKey({ id: key.id, fingerprint: key.fingerprint, createdAt: toTimestamp(key.createdAt) })
          }),
          (key) => ({ keyId: key.id })
        )
      )
      .handle("deleteAppKey", ({ path }) =>
        Effect.zipRight(
          audited(
            { action: "app.key_delete", actor: "operator", appId: path.appId, keyId: path.keyId },
            Effect.flatMap(Clock.currentTimeMillis, (now) => registry.deleteKey(path.appId, path.keyId, now))
          ),
          // Deleting a key is a kill switch: the app's epoch moved on with it (SPEC §5).
          audit.success({ action: "app.tokens_revoked", actor: "operator", appId: path.appId, keyId: path.keyId })
        )
      )
      .handle("revokeAppTokens", ({ path }) =>
        audited(
          { action: "app.tokens_revoked", actor: "operator", appId: path.appId },
          registry.revokeAppTokens(path.appId)
        )
      )
      .handle("createInstallation", ({ payload }) =>
        audited(
          { action: "installation.create", actor: "operator", appId: payload.appId },
          Effect.gen(function* () {
            const app = yield* registry.getApp(payload.appId)
            if (Option.isNone(app)) return yield* appNotFound()
            yield* withinDeclared(payload.permissions, app.value.permissions)
            const now = yield* Clock.currentTimeMillis
            const record = yield* registry.createInstallation({
              id: yield* entropy.uuid,
              appId: payload.appId,
              organizationId: payload.organizationId,
              permissions: canonical(payload.permissions),
              createdAt: now,
              updatedAt: now,
              suspendedAt: null
            })
            return toInstallation(record, yield* originOf)
          }),
          (installation) => ({ installationId: installation.id })
        )
      )
      .handle("listInstallations", ({ urlParams }) =>
        Effect.gen(function* () {
          const { appId } = urlParams
          const request = offsetRequest(urlParams)
          // An unknown app is an error rather than an empty page, so a mistyped id is not mistaken for "none".
          if (appId !== undefined && Option.isNone(yield* registry.getApp(appId))) return yield* appNotFound()
          const result = yield* registry.listInstallations({ appId, activeOnly: false }, offsetStart(request))
          const origin = yield* originOf
          const listing = `${origin}/admin/installations?${appId === undefined ? "" : `appId=${encodeURIComponent(appId)}&`}`
          yield* setLink(linkHeader(listing, request, result.total, undefined))
          return new AdminInstallationPage({
            items: result.items.map((i) => toInstallation(i, origin)),
            page: request.page,
            limit: request.limit,
            total: result.total
          })
        })
      )
      .handle("updateInstallation", ({ path, payload }) =>
        Effect.gen(function* () {
          const { record, endedTokens } = yield* audited(
            { action: "installation.update", actor: "operator", installationId: path.installationId },
            Effect.gen(function* () {
              const current = yield* registry.getInstallation(path.installationId)
              if (Option.isNone(current)) return yield* new InstallationNotFound({ detail: "No such installation" })
              if (payload.permissions !== undefined) {
                const app = yield* registry.getApp(current.value.appId)
                yield* withinDeclared(
                  payload.permissions,
                  Option.match(app, { onNone: () => ({}), onSome: (a) => a.permissions })
                )
              }
              const now = yield* Clock.currentTimeMillis
              const suspendedAt =
                payload.suspended === undefined
                  ? undefined
                  : payload.suspended
                    ? (current.value.suspendedAt ?? now)
                    : null
              const record = yield* registry.updateInstallation(path.installationId, {
                ...(payload.permissions !== undefined ? { permissions: canonical(payload.permissions) } : {}),
                ...(suspendedAt !== undefined ? { suspendedAt } : {}),
                updatedAt: now
              })
              // The registry moved the epoch on if this was a suspension or a change of permissions.
              return { record, endedTokens: record.tokenEpoch !== current.value.tokenEpoch }
            }),
            ({ record }) => ({ appId: record.appId })
          )
          if (endedTokens) {
            // A kill switch (SPEC §5): recorded as such, after the change that pulled it.
            yield* audit.success({
              action: "installation.tokens_revoked",
              actor: "operator",
              appId: record.appId,
              installationId: record.id
            })
          }
          return toInstallation(record, yield* originOf)
        })
      )
      .handle("deleteInstallation", ({ path }) =>
        Effect.asVoid(
          audited(
            { action: "installation.delete", actor: "operator", installationId: path.installationId },
            registry.deleteInstallation(path.installationId),
            ({ appId }) => ({ appId })
          )
        )
      )
      .handle("revokeInstallationTokens", ({ path }) =>
        Effect.asVoid(
          audited(
            { action: "installation.tokens_revoked", actor: "operator", installationId: path.installationId },
            registry.revokeInstallationTokens(path.installationId),
            ({ appId }) => ({ appId })
          )
        )
      )
  })
)
