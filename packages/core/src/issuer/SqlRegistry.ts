/**
 * The {@link Registry} over SQL (SPEC §9): its rules — the key cap, unique names and keys, token
 * standing, the kill-switch epochs, cursor listings — written once, over the {@link SqlDriver} seam,
 * for every engine the issuer runs on: D1 on Workers, SQLite on a server, Postgres beyond one
 * machine. Each operation that must be atomic is one statement or one `batch` (one transaction);
 * where concurrency would let two writers pass a check together (Postgres runs writes in parallel;
 * SQLite and D1 one at a time), a constraint or a row lock holds the rule (see SqlStatements).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { MAX_KEYS_PER_APP } from "../api/Apps.js"
import { canonical, Permissions } from "../api/Permissions.js"
import { StoredToken } from "../api/Tokens.js"
import {
  AlreadyInstalled,
  AppMissing,
  type AppRecord,
  InstallationMissing,
  type InstallationRecord,
  KeyExists,
  KeyLimitReached,
  KeyMissing,
  type KeyRecord,
  NameTaken,
  PRUNE_BATCH,
  Registry,
  StorageUnavailable,
  type TokenStanding
} from "./Registry.js"
import { type SqlDriver, type SqlResult, type SqlStatement, type SqlValue, sql } from "./Sql.js"
import {
  installationCountSql,
  installationListingSql,
  APP_LISTING_KEYS_SQL,
  APP_LISTING_SQL,
  statementsFor
} from "./SqlStatements.js"

const decodePermissionsText = Schema.decodeUnknownSync(Schema.parseJson(Permissions))
/**
 * Stored permissions, decoded once per distinct text: a token use reads two (the token's and its
 * installation's), and the same few texts come back on every request. Decoded values are frozen, so
 * one shared value cannot be changed through another reader. Bounded; cleared when full.
 */
const decodedPermissions = new Map<string, Permissions>()
const decodePermissions = (text: string): Permissions => {
  let permissions = decodedPermissions.get(text)
  if (permissions === undefined) {
    permissions = Object.freeze(decodePermissionsText(text))
    if (decodedPermissions.size >= 1024) decodedPermissions.clear()
    decodedPermissions.set(text, permissions)
  }
  return permissions
}
/** Canonical key order, so that equal permissions are equal text (the kill-switch rule compares the text). */
export const encodePermissions = (p: Permissions) => JSON.stringify(canonical(p))

/** A row of `apps`, as `SqlStatements.app` reads it. */
export interface AppRow {
  readonly id: number
  readonly name: string
  readonly permissions: string
  readonly created_at: number
  readonly updated_at: number
  readonly token_epoch: number
}
/** A row of `keys`, as `SqlStatements.keysOfApp` reads it. */
export interface KeyRow {
  readonly id: string
  readonly app_id: number
  readonly fingerprint: string
  readonly spki: string
  readonly created_at: number
  readonly not_before: number | null
}
interface InstallationRow {
  readonly id: string
  readonly app_id: number
  readonly app_name: string
  readonly organization_id: string
  readonly permissions: string
  readonly created_at: number
  readonly updated_at: number
  readonly suspended_at: number | null
  readonly token_epoch: number
  readonly app_token_epoch: number
}

/** A row of the token-standing statement: the token's columns, then an installation row's (all NULL when absent). */
interface TokenStandingRow extends Omit<InstallationRow, "id" | "app_token_epoch"> {
  readonly t_id: string
  readonly kind: "app" | "installation"
  readonly t_app_id: number
  readonly installation_id: string | null
  readonly t_organization_id: string | null
  readonly t_permissions: string
  readonly t_created_at: number
  readonly expires_at: number
  readonly app_epoch: number
  readonly installation_epoch: number
  readonly revoked_at: number | null
  readonly id: string | null
  readonly app_token_epoch: number | null
}

const toKey = (row: KeyRow): KeyRecord => ({
  id: row.id,
  appId: String(row.app_id),
  fingerprint: row.fingerprint,
  spki: row.spki,
  createdAt: row.created_at,
  notBefore: row.not_before
})

const toApp = (row: AppRow, keys: ReadonlyArray<KeyRecord>): AppRecord => ({
  id: String(row.id),
  name: row.name,
  permissions: decodePermissions(row.permissions),
  createdAt: row.created_at,
  updatedAt: row.updated_at,
  tokenEpoch: row.token_epoch,
  keys
})

const toInstallation = (row: InstallationRow): InstallationRecord => ({
  id: row.id,
  appId: String(row.app_id),
  appName: row.app_name,
  organizationId: row.organization_id,
  permissions: decodePermissions(row.permissions),
  createdAt: row.created_at,
  updatedAt: row.updated_at,
  suspendedAt: row.suspended_at,
  tokenEpoch: row.token_epoch,
  appTokenEpoch: row.app_token_epoch
})

const toStanding = (row: TokenStandingRow): TokenStanding => ({
  // Read back from the row this issuer wrote: no validation (the response encoder checks what leaves).
  token: new StoredToken(
    {
      id: row.t_id,
      kind: row.kind,
      appId: String(row.t_app_id),
      ...(row.installation_id === null ? {} : { installationId: row.installation_id }),
      ...(row.t_organization_id === null ? {} : { organizationId: row.t_organization_id }),
      permissions: decodePermissions(row.t_permissions),
      createdAt: row.t_created_at,
      expiresAt: row.expires_at,
      appEpoch: row.app_epoch,
      installationEpoch: row.installation_epoch
    },
    true
  ),
  revoked: row.revoked_at !== null,
  installation:
    row.kind === "installation" && row.id !== null && row.app_token_epoch !== null
      ? Option.some(toInstallation({ ...row, id: row.id, app_token_epoch: row.app_token_epoch }))
      : Option.none(),
  appTokenEpoch: row.kind === "app" && row.app_token_epoch !== null ? Option.some(row.app_token_epoch) : Option.none()
})

/** App ids are the integer row id; anything else names no app. */
export const appRowId = (appId: string): number | undefined =>
  /^[1-9][0-9]{0,15}$/.test(appId) && Number.isSafeInteger(Number(appId)) ? Number(appId) : undefined

/** The rows of one statement's result (none when it has no result). */
export const rowsOf = <R>(result: SqlResult | undefined): ReadonlyArray<R> => (result?.rows ?? []) as ReadonlyArray<R>

/** What a token record is written from (a `StoredToken`'s fields). */
export type TokenRecordFields = Pick<
  StoredToken,
  | "id"
  | "kind"
  | "appId"
  | "installationId"
  | "organizationId"
  | "permissions"
  | "createdAt"
  | "expiresAt"
  | "appEpoch"
  | "installationEpoch"
>

/**
 * The parameters of `SqlStatements.putToken`: the prune's (records expired before this one, at most
 * {@link PRUNE_BATCH}) and the insert's.
 */
export const putTokenParams = (
  digest: string,
  token: TokenRecordFields
): { readonly prune: ReadonlyArray<SqlValue>; readonly insert: ReadonlyArray<SqlValue> } => ({
  prune: [token.createdAt, PRUNE_BATCH],
  insert: [
    digest,
    token.id,
    token.kind,
    appRowId(token.appId) ?? 0,
    token.installationId ?? null,
    token.organizationId ?? null,
    encodePermissions(token.permissions),
    token.createdAt,
    token.expiresAt,
    token.appEpoch,
    token.installationEpoch
  ]
})

/** A {@link Registry} over a SQL driver. */
export const make = (driver: SqlDriver): Registry["Type"] => {
  const S = statementsFor(driver.dialect)

  /** Runs a driver call; any failure is `StorageUnavailable` (its message, which may quote SQL, is not kept). */
  const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, StorageUnavailable> =>
    Effect.tryPromise({ try: f, catch: () => new StorageUnavailable() })
  /** As {@link attempt}, but a unique violation is the conflict `onUnique` names. */
  const attemptUnique = <A, E>(f: () => Promise<A>, onUnique: () => E): Effect.Effect<A, E | StorageUnavailable> =>
    Effect.tryPromise({
      try: f,
      catch: (e): E | StorageUnavailable => (driver.isUniqueViolation(e) ? onUnique() : new StorageUnavailable())
    })
  const batch = (statements: ReadonlyArray<SqlStatement>) => attempt(() => driver.batch(statements))
  /**
   * A driver call of a promise form, its result read by `read`: the driver's failure, thrown or
   * rejected, rejects as `StorageUnavailable` (its message, which may quote SQL, is not kept); a
   * throw of `read` (a row that does not decode) rejects as itself. One step, not two.
   */
  const stored = <A, B>(call: () => Promise<A>, read: (a: A) => B): Promise<B> => {
    try {
      return call().then(read, () => Promise.reject(new StorageUnavailable()))
    } catch {
      return Promise.reject(new StorageUnavailable())
    }
  }
  /** A promise form as an effect: `StorageUnavailable` is its failure; anything else (a row that does not decode) a defect. */
  const fromNow = <A>(f: () => Promise<A>): Effect.Effect<A, StorageUnavailable> =>
    Effect.flatten(
      Effect.promise(() =>
        f().then(Either.right, (e: unknown) => {
          if (e instanceof StorageUnavailable) return Either.left(e)
          throw e
        })
      )
    )
  const appStatements = (id: number): ReadonlyArray<SqlStatement> => [sql(S.app, id), sql(S.keysOfApp, id)]
  const appOf = (apps: SqlResult | undefined, keys: SqlResult | undefined): Option.Option<AppRecord> => {
    const row = rowsOf<AppRow>(apps)[0]
    return row === undefined ? Option.none() : Option.some(toApp(row, rowsOf<KeyRow>(keys).map(toKey)))
  }
  /** An app with its keys and one installation, in one batch (`getAppWithInstallation` is this in an effect). */
  const getAppWithInstallationNow = (appId: string, installationId: string) => {
    const id = appRowId(appId)
    return stored(
      () => driver.batch([...appStatements(id ?? 0), sql(S.installation, installationId)]),
      ([apps, keys, installation]) => {
        const row = rowsOf<InstallationRow>(installation)[0]
        return {
          app: id === undefined ? Option.none<AppRecord>() : appOf(apps, keys),
          installation: row === undefined ? Option.none<InstallationRecord>() : Option.some(toInstallation(row))
        }
      }
    )
  }
  /** A minted token's record, pruning a few expired ones (`putToken` is this in an effect). */
  const putTokenNow = (digest: string, token: StoredToken): Promise<void> => {
    const { prune, insert } = putTokenParams(digest, token)
    // Expired records, oldest first, a bounded number per mint: pruning keeps up as long as mints
    // outnumber expiries, which they do (every record is a mint).
    return stored<unknown, void>(
      () =>
        S.putToken.length === 1
          ? driver.run(S.putToken[0]!, [...prune, ...insert])
          : driver.batch([sql(S.putToken[0]!, ...prune), sql(S.putToken[1]!, ...insert)]),
      () => undefined
    )
  }
  /** The token's standing, in one statement (`findToken` is this in an effect). */
  const findTokenNow = (digest: string): Promise<Option.Option<TokenStanding>> =>
    stored(
      () => driver.first<TokenStandingRow>(S.findToken, [digest]),
      (row) => (row === undefined ? Option.none() : Option.some(toStanding(row)))
    )

  const getApp = (appId: string): Effect.Effect<Option.Option<AppRecord>, StorageUnavailable> => {
    const id = appRowId(appId)
    // An id that is no row id is read all the same (row 0, which never exists), as
    // getAppWithInstallation does: the JWT check reads this, and an `iss` of any spelling must cost
    // what an unknown app costs (SPEC §2: indistinguishable in timing).
    return Effect.map(batch(appStatements(id ?? 0)), ([apps, keys]) =>
      id === undefined ? Option.none() : appOf(apps, keys)
    )
  }
  const getInstallation = (id: string) =>
    Effect.map(
      attempt(() => driver.first<InstallationRow>(S.installation, [id])),
      (row) => (row === undefined ? Option.none<InstallationRecord>() : Option.some(toInstallation(row)))
    )

  return {
    tokenShard: () => 0,
    createApp: (app, key) =>
      Effect.gen(function* () {
        const values: ReadonlyArray<SqlValue> = [
          app.name,
          encodePermissions(app.permissions),
          app.createdAt,
          app.updatedAt
        ]
        const keyValues: ReadonlyArray<SqlValue> = [key.id, key.fingerprint, key.spki, key.createdAt]
        const [first] = yield* attemptUnique(
          () =>
            driver.batch(
              S.createApp.length === 1
                ? [sql(S.createApp[0]!, ...values, ...keyValues)]
                : [sql(S.createApp[0]!, ...values), sql(S.createApp[1]!, ...keyValues)]
            ),
          () => new NameTaken({ name: app.name })
        )
        const id = String(rowsOf<{ id: number }>(first)[0]?.id)
        return { ...app, id, tokenEpoch: 0, keys: [{ ...key, appId: id, notBefore: null }] }
      }),
    getApp,
    getAppWithInstallation: (appId, installationId) => fromNow(() => getAppWithInstallationNow(appId, installationId)),
    getAppWithInstallationNow,
    addKey: (key) =>
      Effect.gen(function* () {
        const appId = appRowId(key.appId)
        if (appId === undefined) return yield* new AppMissing()
        const insert = sql(
          S.addKey,
          key.id,
          appId,
          key.fingerprint,
          key.spki,
          key.createdAt,
          appId,
          key.fingerprint,
          appId,
          appId,
          key.fingerprint,
          appId,
          MAX_KEYS_PER_APP
        )
        const bump = sql(S.keyAdded, appId, appId, key.id)
        const results = yield* attemptUnique(
          () => driver.batch(S.lockApp === undefined ? [insert, bump] : [sql(S.lockApp, appId), insert, bump]),
          () => new KeyExists()
        )
        const added = rowsOf<{ not_before: number | null }>(results.at(-2))[0]
        if (added !== undefined) return { ...key, notBefore: added.not_before }
        // Refused: say why (the app is gone, has the key already, or is full).
        const [app, same] = yield* batch([sql(S.appExists, appId), sql(S.keyExists, appId, key.fingerprint)])
        if (rowsOf(app).length === 0) return yield* new AppMissing()
        return yield* rowsOf(same).length > 0 ? new KeyExists() : new KeyLimitReached({ limit: MAX_KEYS_PER_APP })
      }),
    deleteKey: (appId, keyId, now) =>
      Effect.gen(function* () {
        const id = appRowId(appId)
        if (id === undefined) return yield* new AppMissing()
        const [select, bump, remember, remove] = S.deleteKey as unknown as [string, string, string, string]
        const [app, , , deleted] = yield* batch([
          sql(select, id),
          sql(bump, id, id, keyId),
          sql(remember, now, id, keyId),
          sql(remove, id, keyId)
        ])
        if (rowsOf(app).length === 0) return yield* new AppMissing()
        if (deleted?.changes !== 1) return yield* new KeyMissing()
      }),
    revokeAppTokens: (appId) =>
      Effect.gen(function* () {
        const id = appRowId(appId)
        if (id === undefined) return yield* new AppMissing()
        const { changes } = yield* attempt(() => driver.run(S.revokeAppTokens, [id]))
        if (changes !== 1) return yield* new AppMissing()
      }),
    createInstallation: (installation) =>
      Effect.gen(function* () {
        const appId = appRowId(installation.appId)
        if (appId === undefined) return yield* new AppMissing()
        const { changes } = yield* attemptUnique(
          () =>
            driver.run(S.createInstallation, [
              installation.id,
              installation.organizationId,
              encodePermissions(installation.permissions),
              installation.createdAt,
              installation.updatedAt,
              appId
            ]),
          () => new AlreadyInstalled()
        )
        if (changes !== 1) return yield* new AppMissing()
        return Option.getOrThrow(yield* getInstallation(installation.id))
      }),
    getInstallation,
    updateInstallation: (id, change) =>
      Effect.gen(function* () {
        const sets = ["updated_at = ?"]
        const values: Array<SqlValue> = [change.updatedAt]
        // The kill-switch rule (Registry.bumpsEpoch) in SQL.
        const bumps: Array<string> = []
        const bumpValues: Array<SqlValue> = []
        if (change.permissions !== undefined) {
          sets.push("permissions = ?")
          values.push(encodePermissions(change.permissions))
          bumps.push("permissions <> ?")
          bumpValues.push(encodePermissions(change.permissions))
        }
        if (change.suspendedAt !== undefined) {
          sets.push("suspended_at = ?")
          values.push(change.suspendedAt)
          if (change.suspendedAt !== null) bumps.push("suspended_at IS NULL")
        }
        const { changes } = yield* attempt(() =>
          driver.run(S.updateInstallation(sets, bumps), [...values, ...bumpValues, id])
        )
        if (changes !== 1) return yield* new InstallationMissing()
        return Option.getOrThrow(yield* getInstallation(id))
      }),
    deleteInstallation: (id) =>
      Effect.gen(function* () {
        const row = yield* attempt(() => driver.first<{ app_id: number }>(S.deleteInstallation, [id]))
        if (row === undefined) return yield* new InstallationMissing()
        return { appId: String(row.app_id) }
      }),
    revokeInstallationTokens: (id) =>
      Effect.gen(function* () {
        const row = yield* attempt(() => driver.first<{ app_id: number }>(S.revokeInstallationTokens, [id]))
        if (row === undefined) return yield* new InstallationMissing()
        return { appId: String(row.app_id) }
      }),
    putToken: (digest, token) => fromNow(() => putTokenNow(digest, token)),
    putTokenNow,
    findToken: (digest) => fromNow(() => findTokenNow(digest)),
    findTokenNow,
    revokeToken: (digest, now) => Effect.asVoid(attempt(() => driver.run(S.revokeToken, [now, digest]))),
    listInstallations: (filter, page) =>
      Effect.gen(function* () {
        const appId = filter.appId === undefined ? undefined : appRowId(filter.appId)
        if (filter.appId !== undefined && appId === undefined) return { items: [], more: false, total: 0 }
        const shape = { byApp: appId !== undefined, activeOnly: filter.activeOnly, keyset: "after" in page }
        const byApp = appId === undefined ? [] : [appId]
        const after = "after" in page ? [page.after.createdAt, page.after.id] : []
        // One row beyond the page says whether another follows; the batch reads page and count together.
        const [rows, count] = yield* batch([
          sql(installationListingSql(shape), ...byApp, ...after, page.limit + 1, "offset" in page ? page.offset : 0),
          sql(installationCountSql(shape), ...byApp)
        ])
        const found = rowsOf<InstallationRow>(rows)
        return {
          items: found.slice(0, page.limit).map(toInstallation),
          more: found.length > page.limit,
          total: Number(rowsOf<{ total: number }>(count)[0]?.total ?? 0)
        }
      }),
    listApps: ({ limit, offset }) =>
      Effect.gen(function* () {
        const [apps, keys, count] = yield* batch([
          sql(APP_LISTING_SQL, limit + 1, offset),
          sql(APP_LISTING_KEYS_SQL, limit, offset),
          sql(S.countApps)
        ])
        const keysOf = new Map<number, Array<KeyRecord>>()
        for (const row of rowsOf<KeyRow>(keys)) keysOf.set(row.app_id, [...(keysOf.get(row.app_id) ?? []), toKey(row)])
        const found = rowsOf<AppRow>(apps)
        return {
          items: found.slice(0, limit).map((row) => toApp(row, keysOf.get(row.id) ?? [])),
          more: found.length > limit,
          total: Number(rowsOf<{ total: number }>(count)[0]?.total ?? 0)
        }
      })
  }
}

/** The registry over a SQL driver, as a layer. */
export const layer = (driver: SqlDriver): Layer.Layer<Registry> => Layer.succeed(Registry, make(driver))
