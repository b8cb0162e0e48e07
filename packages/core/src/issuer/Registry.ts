/**
 * Where apps, their keys, installations and access tokens live: SQL (D1, SQLite, Postgres) through
 * `SqlRegistry`, or memory here. Every operation that must be atomic (the 25-key cap, unique names
 * and keys, one installation per app and organization, a kill switch with what pulled it) is one
 * call, so each implementation can make it atomic in its own way.
 *
 * The registry says what happened, in its own terms ({@link RegistryFailure}: `AppMissing`,
 * `KeyExists`, `StorageUnavailable`, …), never how the wire says it: the issuer maps these to
 * SPEC §6 problems in one place (`StorageProblems`).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { MAX_KEYS_PER_APP } from "../api/Apps.js"
import type { CursorPosition } from "../api/Paging.js"
import type { StoredToken } from "../api/Tokens.js"
import { canonical, type Permissions } from "../api/Permissions.js"

/** The storage could not be reached or failed; nothing was written. Its cause is not kept (it may quote SQL). */
export class StorageUnavailable extends Data.TaggedError("StorageUnavailable")<{}> {}
/** No app has that id. */
export class AppMissing extends Data.TaggedError("AppMissing")<{}> {}
/** No installation has that id. */
export class InstallationMissing extends Data.TaggedError("InstallationMissing")<{}> {}
/** The app has no key with that id. */
export class KeyMissing extends Data.TaggedError("KeyMissing")<{}> {}
/** Another app has that name. */
export class NameTaken extends Data.TaggedError("NameTaken")<{ readonly name: string }> {}
/** The app has that key already (the same fingerprint, whatever format it was sent in). */
export class KeyExists extends Data.TaggedError("KeyExists")<{}> {}
/** The app has {@link MAX_KEYS_PER_APP} keys already. */
export class KeyLimitReached extends Data.TaggedError("KeyLimitReached")<{ readonly limit: number }> {}
/** The app is installed in that organization already. */
export class AlreadyInstalled extends Data.TaggedError("AlreadyInstalled")<{}> {}

/** Every way a registry operation can fail. */
export type RegistryFailure =
  | StorageUnavailable
  | AppMissing
  | InstallationMissing
  | KeyMissing
  | NameTaken
  | KeyExists
  | KeyLimitReached
  | AlreadyInstalled

const registryFailureTags: ReadonlySet<string> = new Set([
  "StorageUnavailable",
  "AppMissing",
  "InstallationMissing",
  "KeyMissing",
  "NameTaken",
  "KeyExists",
  "KeyLimitReached",
  "AlreadyInstalled"
])

/** Whether `u` is one of the registry's failures. */
export const isRegistryFailure = (u: unknown): u is RegistryFailure =>
  typeof u === "object" && u !== null && "_tag" in u && registryFailureTags.has((u as { _tag: string })._tag)

/** A stored public key (SPKI DER, base64). */
export interface KeyRecord {
  readonly id: string
  readonly appId: string
  readonly fingerprint: string
  readonly spki: string
  readonly createdAt: number
  /**
   * JWTs issued (`iat`, in ms) at or before this instant never verify with this key: when the same
   * key was registered before and deleted, the time of that deletion (SPEC §4: a JWT signed before
   * its key was deleted never verifies again, even if the key is registered anew); else null.
   */
  readonly notBefore: number | null
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
    /** Creates an app with its first key; `NameTaken` when another app has the name. */
    readonly createApp: (
      app: Omit<AppRecord, "keys" | "id" | "tokenEpoch">,
      key: Omit<KeyRecord, "appId" | "notBefore">
    ) => Effect.Effect<AppRecord, NameTaken | StorageUnavailable>
    /** An app with its keys. */
    readonly getApp: (appId: string) => Effect.Effect<Option.Option<AppRecord>, StorageUnavailable>
    /**
     * An app with its keys and one installation, read together (one round trip): what a mint
     * needs, so the JWT check and the installation cost one read.
     */
    readonly getAppWithInstallation: (
      appId: string,
      installationId: string
    ) => Effect.Effect<
      { readonly app: Option.Option<AppRecord>; readonly installation: Option.Option<InstallationRecord> },
      StorageUnavailable
    >
    /**
     * {@link getAppWithInstallation} as a promise, when the registry has it (`SqlRegistry`): rejects
     * with `StorageUnavailable` where the effect fails with it. A mint on the direct path then costs
     * no fiber.
     */
    readonly getAppWithInstallationNow?:
      | ((
          appId: string,
          installationId: string
        ) => Promise<{
          readonly app: Option.Option<AppRecord>
          readonly installation: Option.Option<InstallationRecord>
        }>)
      | undefined
    /**
     * Adds a key, atomically with its checks, under real concurrency: `AppMissing`, `KeyExists`
     * (the same fingerprint, whatever format it was sent in), `KeyLimitReached` at
     * {@link MAX_KEYS_PER_APP}. The stored key's `notBefore` is the last deletion of the same key
     * from this app, if any.
     */
    readonly addKey: (
      key: Omit<KeyRecord, "notBefore">
    ) => Effect.Effect<KeyRecord, AppMissing | KeyExists | KeyLimitReached | StorageUnavailable>
    /**
     * Deletes a key at `now` and, in the same step, bumps the app's token epoch (a kill switch,
     * SPEC §5) and remembers the deletion, so the same key registered again refuses older JWTs.
     */
    readonly deleteKey: (
      appId: string,
      keyId: string,
      now: number
    ) => Effect.Effect<void, AppMissing | KeyMissing | StorageUnavailable>
    /** Bumps the app's token epoch: every token of the app minted before ends (SPEC §5 `revokeTokens`). */
    readonly revokeAppTokens: (appId: string) => Effect.Effect<void, AppMissing | StorageUnavailable>
    /** Creates an installation; `AlreadyInstalled` when the app is installed in that organization. */
    readonly createInstallation: (
      installation: NewInstallation
    ) => Effect.Effect<InstallationRecord, AppMissing | AlreadyInstalled | StorageUnavailable>
    /** One installation, suspended or not. */
    readonly getInstallation: (id: string) => Effect.Effect<Option.Option<InstallationRecord>, StorageUnavailable>
    /**
     * Changes an installation's permissions and/or suspension. In the same step it bumps the
     * installation's token epoch when the permissions differ from the stored ones or a suspension
     * begins ({@link bumpsEpoch}), judged against the row as it is when written, not as last read.
     */
    readonly updateInstallation: (
      id: string,
      change: { readonly permissions?: Permissions; readonly suspendedAt?: number | null; readonly updatedAt: number }
    ) => Effect.Effect<InstallationRecord, InstallationMissing | StorageUnavailable>
    /** Removes an installation (uninstall); tells which app it belonged to. */
    readonly deleteInstallation: (
      id: string
    ) => Effect.Effect<{ readonly appId: string }, InstallationMissing | StorageUnavailable>
    /**
     * Bumps the installation's token epoch: its tokens minted before end (SPEC §5 `revokeTokens`);
     * tells which app it belongs to.
     */
    readonly revokeInstallationTokens: (
      id: string
    ) => Effect.Effect<{ readonly appId: string }, InstallationMissing | StorageUnavailable>
    /**
     * Stores a freshly minted token under the SHA-256 digest of its secret (never the secret), and in
     * the same write prunes up to {@link PRUNE_BATCH} records that expired before `token.createdAt`.
     */
    readonly putToken: (digest: string, token: StoredToken) => Effect.Effect<void, StorageUnavailable>
    /** {@link putToken} as a promise, when the registry has it (`SqlRegistry`): rejects as the effect fails. */
    readonly putTokenNow?: ((digest: string, token: StoredToken) => Promise<void>) | undefined
    /**
     * The shard a token about to be minted will be stored on (its secret carries it, so that a use
     * reads one shard; see `ShardedRegistry`): the shard of its installation, or the home shard (0)
     * for app tokens. 0 on a registry of one database.
     */
    readonly tokenShard: (token: StoredToken) => number
    /**
     * The token stored under a digest, with its standing, in one read; none when unknown or pruned.
     * `shard` is the one its secret names ({@link TokenShard}); a registry of one database ignores it.
     */
    readonly findToken: (
      digest: string,
      shard?: number | undefined
    ) => Effect.Effect<Option.Option<TokenStanding>, StorageUnavailable>
    /**
     * {@link findToken} as a promise, when the registry has it (`SqlRegistry`, whose `findToken` is
     * this promise in an effect): rejects with `StorageUnavailable` where `findToken` fails with it
     * (with anything else, a defect). A token use on the direct path
     * (`Direct.ts`) then costs no fiber.
     */
    readonly findTokenNow?:
      | ((digest: string, shard?: number | undefined) => Promise<Option.Option<TokenStanding>>)
      | undefined
    /** Marks a token revoked (at `now`): every later use fails, everywhere. Unknown digests are ignored. */
    readonly revokeToken: (
      digest: string,
      now: number,
      shard?: number | undefined
    ) => Effect.Effect<void, StorageUnavailable>
    /** One page of installations, by `createdAt` then `id`; `total` counts every one the filter holds. */
    readonly listInstallations: (
      filter: InstallationFilter,
      page: PageStart
    ) => Effect.Effect<RecordPage<InstallationRecord>, StorageUnavailable>
    /** One page of apps with their keys, by `createdAt` then id; `total` counts every app. */
    readonly listApps: (page: {
      readonly limit: number
      readonly offset: number
    }) => Effect.Effect<RecordPage<AppRecord>, StorageUnavailable>
  }
>() {}

/** An installation of `appId`; another app's installation is reported exactly like a missing one. */
export const installationOfApp = (
  registry: Registry["Type"],
  appId: string,
  installationId: string
): Effect.Effect<InstallationRecord, InstallationMissing | StorageUnavailable> =>
  Effect.flatMap(registry.getInstallation(installationId), (found) =>
    Option.isSome(found) && found.value.appId === appId
      ? Effect.succeed(found.value)
      : Effect.fail(new InstallationMissing())
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

/** A registry in memory, with the same rules as the SQL one (the testkit's `registryContract` holds both to them). */
export const layerMemory: Layer.Layer<Registry> = /* @__PURE__ */ Layer.sync(Registry, () => {
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
  /** When each (app, fingerprint) was last deleted: a key registered again refuses JWTs issued before. */
  const deletions = new Map<string, number>()
  let nextAppId = 1
  return {
    tokenShard: () => 0,
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
        if ([...apps.values()].some((a) => a.name === app.name)) return yield* new NameTaken({ name: app.name })
        const id = String(nextAppId++)
        apps.set(id, { ...app, id, tokenEpoch: 0 })
        keys.set(key.id, { ...key, appId: id, notBefore: null })
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
        if (!apps.has(key.appId)) return yield* new AppMissing()
        if (keysOf(key.appId).some((k) => k.fingerprint === key.fingerprint)) return yield* new KeyExists()
        if (keysOf(key.appId).length >= MAX_KEYS_PER_APP) {
          return yield* new KeyLimitReached({ limit: MAX_KEYS_PER_APP })
        }
        const stored = { ...key, notBefore: deletions.get(`${key.appId} ${key.fingerprint}`) ?? null }
        keys.set(key.id, stored)
        return stored
      }),
    deleteKey: (appId, keyId, now) =>
      Effect.gen(function* () {
        if (!apps.has(appId)) return yield* new AppMissing()
        const key = keys.get(keyId)
        if (key === undefined || key.appId !== appId) return yield* new KeyMissing()
        keys.delete(keyId)
        const deletion = `${appId} ${key.fingerprint}`
        deletions.set(deletion, Math.max(now, deletions.get(deletion) ?? 0))
        bumpApp(appId)
      }),
    revokeAppTokens: (appId) =>
      Effect.gen(function* () {
        if (!apps.has(appId)) return yield* new AppMissing()
        bumpApp(appId)
      }),
    createInstallation: (installation) =>
      Effect.gen(function* () {
        if (!apps.has(installation.appId)) return yield* new AppMissing()
        const taken = [...installations.values()].some(
          (i) => i.appId === installation.appId && i.organizationId === installation.organizationId
        )
        if (taken) return yield* new AlreadyInstalled()
        const created = { ...installation, tokenEpoch: 0 }
        installations.set(installation.id, created)
        return withName(created)
      }),
    getInstallation: (id) => Effect.sync(() => Option.map(Option.fromNullable(installations.get(id)), withName)),
    updateInstallation: (id, change) =>
      Effect.gen(function* () {
        const current = installations.get(id)
        if (current === undefined) return yield* new InstallationMissing()
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
        if (current === undefined) return yield* new InstallationMissing()
        installations.delete(id)
        return { appId: current.appId }
      }),
    revokeInstallationTokens: (id) =>
      Effect.gen(function* () {
        const current = installations.get(id)
        if (current === undefined) return yield* new InstallationMissing()
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
