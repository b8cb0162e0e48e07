/**
 * Where apps, their keys and installations live: D1 in the worker, memory here. Every operation
 * that must be atomic (the 25-key cap, unique names, one installation per app and organization)
 * is one call, so each implementation can make it atomic in its own way.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { MAX_KEYS_PER_APP } from "../api/Apps.js"
import type { CursorPosition } from "../api/Paging.js"
import type { StoredToken } from "../api/Tokens.js"
import { canonical, type Permissions } from "../api/Permissions.js"
import {
  AppNotFound,
  Conflict,
  InstallationNotFound,
  InvalidPublicKey,
  NotFound,
  type Unavailable
} from "../api/Problems.js"

/** A stored public key (SPKI DER, base64). */
export interface KeyRecord {
  readonly id: string
  readonly appId: string
  readonly fingerprint: string
  readonly spki: string
  readonly createdAt: number
}

/** A stored app with its active keys, oldest key first. */
export interface AppRecord {
  readonly id: string
  readonly name: string
  readonly permissions: Permissions
  readonly createdAt: number
  readonly updatedAt: number
  /**
   * The app's token epoch: a counter bumped by every kill switch of the app (key deletion,
   * `revokeTokens`). A token is honoured only while the epoch it was minted under is current.
   */
  readonly tokenEpoch: number
  readonly keys: ReadonlyArray<KeyRecord>
}

/** A stored installation, with its app's name joined in. */
export interface InstallationRecord {
  readonly id: string
  readonly appId: string
  readonly appName: string
  readonly organizationId: string
  readonly permissions: Permissions
  readonly createdAt: number
  readonly updatedAt: number
  readonly suspendedAt: number | null
  /** The installation's token epoch, bumped by suspension, a change of permissions and `revokeTokens`. */
  readonly tokenEpoch: number
  /** Its app's {@link AppRecord.tokenEpoch}, read with it. */
  readonly appTokenEpoch: number
}

/** What a new installation is made of (the registry adds the app's name and the epochs). */
export type NewInstallation = Omit<InstallationRecord, "appName" | "tokenEpoch" | "appTokenEpoch">

/**
 * A stored token with what it stands on, read together (one D1 statement) on every use of the
 * token: the record, its revocation, and the installation or app whose epochs it must still match.
 */
export interface TokenStanding {
  /** The record as minted. */
  readonly token: StoredToken
  /** Revoked by `DELETE /app/installations/token`. */
  readonly revoked: boolean
  /** For installation tokens: the installation (with its own and its app's epoch), if it still exists. */
  readonly installation: Option.Option<InstallationRecord>
  /** For app tokens: the app's token epoch, if the app still exists. */
  readonly appTokenEpoch: Option.Option<number>
}

/** How many expired token records one mint prunes at most (in the same write, see `putToken`). */
export const PRUNE_BATCH = 100

/**
 * Where a page of a listing starts: after `offset` items, or just after `after` in the listing
 * order (keyset: unaffected by items that leave or join the listing before that position).
 */
export type PageStart =
  | { readonly limit: number; readonly offset: number }
  | { readonly limit: number; readonly after: CursorPosition }

/** One page of a listing: at most `limit` items, whether any item follows them, and the listing's size. */
export interface RecordPage<A> {
  readonly items: ReadonlyArray<A>
  readonly more: boolean
  readonly total: number
}

/** Which installations a listing holds. */
export interface InstallationFilter {
  /** Only this app's (all apps' when absent). */
  readonly appId?: string | undefined
  /** Only those not suspended. */
  readonly activeOnly: boolean
}

/** Storage for apps, keys, installations and access tokens (by digest). */
export class Registry extends Context.Tag("@icr-apps/core/Registry")<
  Registry,
  {
    /** Creates an app with its first key; fails with `Conflict` when the name is taken. */
    readonly createApp: (
      app: Omit<AppRecord, "keys" | "id" | "tokenEpoch">,
      key: Omit<KeyRecord, "appId">
    ) => Effect.Effect<AppRecord, Conflict | Unavailable>
    /** An app with its keys. */
    readonly getApp: (appId: string) => Effect.Effect<Option.Option<AppRecord>, Unavailable>
    /**
     * An app with its keys and one installation, read together (one D1 batch): what a mint needs,
     * so the JWT check and the installation cost one round trip.
     */
    readonly getAppWithInstallation: (
      appId: string,
      installationId: string
    ) => Effect.Effect<
      { readonly app: Option.Option<AppRecord>; readonly installation: Option.Option<InstallationRecord> },
      Unavailable
    >
    /**
     * Adds a key; fails when the app is unknown, already has {@link MAX_KEYS_PER_APP} keys, or
     * already has this key (`Conflict`: the same fingerprint, whatever format it was sent in).
     */
    readonly addKey: (
      key: KeyRecord
    ) => Effect.Effect<KeyRecord, AppNotFound | Conflict | InvalidPublicKey | Unavailable>
    /** Deletes a key and, in the same step, bumps the app's token epoch (a kill switch, SPEC §5). */
    readonly deleteKey: (appId: string, keyId: string) => Effect.Effect<void, AppNotFound | NotFound | Unavailable>
    /** Bumps the app's token epoch: every token of the app minted before ends (SPEC §5 `revokeTokens`). */
    readonly revokeAppTokens: (appId: string) => Effect.Effect<void, AppNotFound | Unavailable>
    /** Creates an installation; `Conflict` when the app is already installed in that organization. */
    readonly createInstallation: (
      installation: NewInstallation
    ) => Effect.Effect<InstallationRecord, AppNotFound | Conflict | Unavailable>
    /** One installation, suspended or not. */
    readonly getInstallation: (id: string) => Effect.Effect<Option.Option<InstallationRecord>, Unavailable>
    /**
     * Changes an installation's permissions and/or suspension. In the same step it bumps the
     * installation's token epoch when the permissions differ from the stored ones or a suspension
     * begins ({@link bumpsEpoch}), judged against the row as it is when written, not as last read.
     */
    readonly updateInstallation: (
      id: string,
      change: { readonly permissions?: Permissions; readonly suspendedAt?: number | null; readonly updatedAt: number }
    ) => Effect.Effect<InstallationRecord, InstallationNotFound | Unavailable>
    /** Removes an installation (uninstall); tells which app it belonged to. */
    readonly deleteInstallation: (
      id: string
    ) => Effect.Effect<{ readonly appId: string }, InstallationNotFound | Unavailable>
    /**
     * Bumps the installation's token epoch: its tokens minted before end (SPEC §5 `revokeTokens`);
     * tells which app it belongs to.
     */
    readonly revokeInstallationTokens: (
      id: string
    ) => Effect.Effect<{ readonly appId: string }, InstallationNotFound | Unavailable>
    /**
     * Stores a freshly minted token under the SHA-256 digest of its secret (never the secret), and in
     * the same write prunes up to {@link PRUNE_BATCH} records that expired before `token.createdAt`.
     */
    readonly putToken: (digest: string, token: StoredToken) => Effect.Effect<void, Unavailable>
    /** The token stored under a digest, with its standing, in one read; none when unknown or pruned. */
    readonly findToken: (digest: string) => Effect.Effect<Option.Option<TokenStanding>, Unavailable>
    /** Marks a token revoked (at `now`): every later use fails, everywhere. Unknown digests are ignored. */
    readonly revokeToken: (digest: string, now: number) => Effect.Effect<void, Unavailable>
    /** One page of installations, by `createdAt` then `id`; `total` counts every one the filter holds. */
    readonly listInstallations: (
      filter: InstallationFilter,
      page: PageStart
    ) => Effect.Effect<RecordPage<InstallationRecord>, Unavailable>
    /** One page of apps with their keys, by `createdAt` then id; `total` counts every app. */
    readonly listApps: (page: {
      readonly limit: number
      readonly offset: number
    }) => Effect.Effect<RecordPage<AppRecord>, Unavailable>
  }
>() {}

/** An installation of `appId`; another app's installation is reported exactly like a missing one. */
export const installationOfApp = (
  registry: Registry["Type"],
  appId: string,
  installationId: string
): Effect.Effect<InstallationRecord, InstallationNotFound | Unavailable> =>
  Effect.flatMap(registry.getInstallation(installationId), (found) =>
    Option.isSome(found) && found.value.appId === appId
      ? Effect.succeed(found.value)
      : Effect.fail(new InstallationNotFound({ detail: "No such installation for this app" }))
  )

/**
 * The kill-switch rule of an installation change (SPEC §5): any change of its permissions, or
 * the start of a suspension, ends the tokens minted before it. Unsuspending ends nothing (there
 * is nothing left to end) and revives nothing (the epoch never goes back).
 */
export const bumpsEpoch = (
  current: { readonly permissions: Permissions; readonly suspendedAt: number | null },
  change: { readonly permissions?: Permissions; readonly suspendedAt?: number | null }
): boolean =>
  (change.permissions !== undefined &&
    JSON.stringify(canonical(change.permissions)) !== JSON.stringify(canonical(current.permissions))) ||
  (change.suspendedAt !== undefined && change.suspendedAt !== null && current.suspendedAt === null)

/** The shared failure when an app already has the key (SPEC §5: 409). */
export const duplicateKey = () => new Conflict({ detail: "The app already has this key (the same fingerprint)" })

/** The shared failure when the key cap is reached. */
export const tooManyKeys = () =>
  new InvalidPublicKey({ detail: `An app may have at most ${MAX_KEYS_PER_APP} keys; delete one first` })

/** The order every installation listing uses: `createdAt` ascending, then `id`. */
export const byCreation = (a: CursorPosition, b: CursorPosition): number =>
  a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** The order of the app listing: `createdAt`, then the id as a number (D1's integer row id). */
const appsByCreation = (a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): number =>
  a.createdAt - b.createdAt || Number(a.id) - Number(b.id)

/** Cuts one page out of a whole listing already in order. */
export const pageOf = <A extends CursorPosition>(all: ReadonlyArray<A>, page: PageStart): RecordPage<A> => {
  const from = "offset" in page ? page.offset : all.findIndex((item) => byCreation(item, page.after) > 0)
  const start = from < 0 ? all.length : from
  return { items: all.slice(start, start + page.limit), more: start + page.limit < all.length, total: all.length }
}

/** A registry in memory, with the same rules as the D1 one. */
export const layerMemory: Layer.Layer<Registry> = Layer.sync(Registry, () => {
  const apps = new Map<string, Omit<AppRecord, "keys">>()
  const keys = new Map<string, KeyRecord>()
  const installations = new Map<string, Omit<InstallationRecord, "appName" | "appTokenEpoch">>()
  const keysOf = (appId: string) =>
    [...keys.values()].filter((k) => k.appId === appId).sort((a, b) => a.createdAt - b.createdAt)
  const withKeys = (app: Omit<AppRecord, "keys">): AppRecord => ({ ...app, keys: keysOf(app.id) })
  const withName = (i: Omit<InstallationRecord, "appName" | "appTokenEpoch">): InstallationRecord => ({
    ...i,
    appName: apps.get(i.appId)?.name ?? "",
    appTokenEpoch: apps.get(i.appId)?.tokenEpoch ?? 0
  })
  const bumpApp = (appId: string) => {
    const app = apps.get(appId)
    if (app !== undefined) apps.set(appId, { ...app, tokenEpoch: app.tokenEpoch + 1 })
  }
  const tokens = new Map<string, { readonly token: StoredToken; revokedAt: number | null }>()
  let nextAppId = 1
  return {
    putToken: (digest, token) =>
      Effect.sync(() => {
        // The oldest entries first (a Map keeps insertion order), a bounded look per mint like D1's.
        let looked = 0
        for (const [key, entry] of tokens) {
          if (looked++ >= PRUNE_BATCH) break
          if (entry.token.expiresAt < token.createdAt) tokens.delete(key)
        }
        tokens.set(digest, { token, revokedAt: null })
      }),
    findToken: (digest) =>
      Effect.sync(() => {
        const entry = tokens.get(digest)
        if (entry === undefined) return Option.none()
        const { token } = entry
        const installation =
          token.kind === "installation" && token.installationId !== undefined
            ? Option.map(Option.fromNullable(installations.get(token.installationId)), withName)
            : Option.none()
        return Option.some({
          token,
          revoked: entry.revokedAt !== null,
          installation,
          appTokenEpoch:
            token.kind === "app"
              ? Option.map(Option.fromNullable(apps.get(token.appId)), (a) => a.tokenEpoch)
              : Option.none()
        })
      }),
    revokeToken: (digest, now) =>
      Effect.sync(() => {
        const entry = tokens.get(digest)
        if (entry !== undefined && entry.revokedAt === null) entry.revokedAt = now
      }),
    createApp: (app, key) =>
      Effect.gen(function* () {
        if ([...apps.values()].some((a) => a.name === app.name)) {
          return yield* new Conflict({ detail: `An app named "${app.name}" already exists` })
        }
        const id = String(nextAppId++)
        apps.set(id, { ...app, id, tokenEpoch: 0 })
        keys.set(key.id, { ...key, appId: id })
        return withKeys({ ...app, id, tokenEpoch: 0 })
      }),
    getApp: (appId) => Effect.sync(() => Option.map(Option.fromNullable(apps.get(appId)), withKeys)),
    getAppWithInstallation: (appId, installationId) =>
      Effect.sync(() => ({
        app: Option.map(Option.fromNullable(apps.get(appId)), withKeys),
        installation: Option.map(Option.fromNullable(installations.get(installationId)), withName)
      })),
    addKey: (key) =>
      Effect.gen(function* () {
        if (!apps.has(key.appId)) return yield* new AppNotFound({ detail: "No such app" })
        if (keysOf(key.appId).some((k) => k.fingerprint === key.fingerprint)) return yield* duplicateKey()
        if (keysOf(key.appId).length >= MAX_KEYS_PER_APP) return yield* tooManyKeys()
        keys.set(key.id, key)
        return key
      }),
    deleteKey: (appId, keyId) =>
      Effect.gen(function* () {
        if (!apps.has(appId)) return yield* new AppNotFound({ detail: "No such app" })
        const key = keys.get(keyId)
        if (key === undefined || key.appId !== appId) return yield* new NotFound({ detail: "No such key" })
        keys.delete(keyId)
        bumpApp(appId)
      }),
    revokeAppTokens: (appId) =>
      Effect.gen(function* () {
        if (!apps.has(appId)) return yield* new AppNotFound({ detail: "No such app" })
        bumpApp(appId)
      }),
    createInstallation: (installation) =>
      Effect.gen(function* () {
        if (!apps.has(installation.appId)) return yield* new AppNotFound({ detail: "No such app" })
        const taken = [...installations.values()].some(
          (i) => i.appId === installation.appId && i.organizationId === installation.organizationId
        )
        if (taken) {
          return yield* new Conflict({ detail: "The app is already installed in that organization" })
        }
        const created = { ...installation, tokenEpoch: 0 }
        installations.set(installation.id, created)
        return withName(created)
      }),
    getInstallation: (id) => Effect.sync(() => Option.map(Option.fromNullable(installations.get(id)), withName)),
    updateInstallation: (id, change) =>
      Effect.gen(function* () {
        const current = installations.get(id)
        if (current === undefined) return yield* new InstallationNotFound({ detail: "No such installation" })
        const next = {
          ...current,
          ...(change.permissions !== undefined ? { permissions: change.permissions } : {}),
          ...(change.suspendedAt !== undefined ? { suspendedAt: change.suspendedAt } : {}),
          updatedAt: change.updatedAt,
          tokenEpoch: current.tokenEpoch + (bumpsEpoch(current, change) ? 1 : 0)
        }
        installations.set(id, next)
        return withName(next)
      }),
    deleteInstallation: (id) =>
      Effect.gen(function* () {
        const current = installations.get(id)
        if (current === undefined) return yield* new InstallationNotFound({ detail: "No such installation" })
        installations.delete(id)
        return { appId: current.appId }
      }),
    revokeInstallationTokens: (id) =>
      Effect.gen(function* () {
        const current = installations.get(id)
        if (current === undefined) return yield* new InstallationNotFound({ detail: "No such installation" })
        installations.set(id, { ...current, tokenEpoch: current.tokenEpoch + 1 })
        return { appId: current.appId }
      }),
    listInstallations: (filter, page) =>
      Effect.sync(() => {
        const listed = [...installations.values()]
          .filter(
            (i) =>
              (filter.appId === undefined || i.appId === filter.appId) && (!filter.activeOnly || i.suspendedAt === null)
          )
          .map(withName)
          .sort(byCreation)
        return pageOf(listed, page)
      }),
    listApps: ({ limit, offset }) =>
      Effect.sync(() => {
        const all = [...apps.values()].sort(appsByCreation)
        return {
          items: all.slice(offset, offset + limit).map(withKeys),
          more: offset + limit < all.length,
          total: all.length
        }
      })
  }
})
