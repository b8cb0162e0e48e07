/**
 * {@link Registry} on Cloudflare D1. Each operation that must be atomic is a single statement or a
 * `batch` (which D1 runs as one transaction). See STORAGE.md and migrations/.
 */
import { canonical, Permissions } from "@icr-apps/core/api/Permissions"
import { MAX_KEYS_PER_APP } from "@icr-apps/core/api/Apps"
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
} from "@icr-apps/core/issuer/Registry"
import { StoredToken } from "@icr-apps/core/api/Tokens"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

const unavailable = () => new StorageUnavailable()

const isUniqueViolation = (e: unknown) => e instanceof Error && /UNIQUE constraint failed/i.test(e.message)

/** Runs a D1 call; a failure is `Unavailable` (its message, which may quote SQL, is not kept). */
const run = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: unavailable })

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
const encodePermissions = (p: Permissions) => JSON.stringify(canonical(p))

interface AppRow {
  readonly id: number
  readonly name: string
  readonly permissions: string
  readonly created_at: number
  readonly updated_at: number
  readonly token_epoch: number
}
interface KeyRow {
  readonly id: string
  readonly app_id: number
  readonly fingerprint: string
  readonly spki: string
  readonly created_at: number
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

const toKey = (row: KeyRow): KeyRecord => ({
  id: row.id,
  appId: String(row.app_id),
  fingerprint: row.fingerprint,
  spki: row.spki,
  createdAt: row.created_at,
  notBefore: null
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

/**
 * A token with what it stands on, in one statement: the `tokens` row, the installation it was
 * minted for joined with that installation's app (installation tokens), or its own app (app tokens).
 * Every column of the installation side is NULL when the installation or app is gone.
 */
export const TOKEN_STANDING_SQL = `SELECT t.id AS t_id, t.kind, t.app_id AS t_app_id, t.installation_id, t.organization_id AS t_organization_id,
  t.permissions AS t_permissions, t.created_at AS t_created_at, t.expires_at, t.app_epoch, t.installation_epoch, t.revoked_at,
  i.id, i.app_id, a.name AS app_name, i.organization_id, i.permissions, i.created_at, i.updated_at, i.suspended_at,
  i.token_epoch, a.token_epoch AS app_token_epoch
  FROM tokens t
  LEFT JOIN installations i ON t.kind = 'installation' AND i.id = t.installation_id
  LEFT JOIN apps a ON a.id = CASE t.kind WHEN 'installation' THEN i.app_id ELSE t.app_id END
  WHERE t.digest = ?`

/** Deletes up to `?2` token records that expired before `?1`, oldest first, off `tokens_by_expiry`. */
export const PRUNE_TOKENS_SQL =
  "DELETE FROM tokens WHERE digest IN (SELECT digest FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ?)"

/** A row of {@link TOKEN_STANDING_SQL}: the token's columns, then an installation row's (all NULL when absent). */
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

const toStanding = (row: TokenStandingRow): TokenStanding => ({
  // Read back from the row this worker wrote: no validation (the response encoder checks what leaves).
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
const appRowId = (appId: string): number | undefined =>
  /^[1-9][0-9]{0,15}$/.test(appId) && Number.isSafeInteger(Number(appId)) ? Number(appId) : undefined

const INSTALLATION_COLUMNS = `i.id, i.app_id, a.name AS app_name, i.organization_id, i.permissions,
  i.created_at, i.updated_at, i.suspended_at, i.token_epoch, a.token_epoch AS app_token_epoch`

const APP_COLUMNS = "id, name, permissions, created_at, updated_at, token_epoch"

/** Which installation listing a query serves. */
export interface ListingShape {
  /** `app_id = ?` (bound first). */
  readonly byApp: boolean
  /** `suspended_at IS NULL`. */
  readonly activeOnly: boolean
  /** `(created_at, id) > (?, ?)`, a cursor's position (bound next). */
  readonly keyset: boolean
}

const listingWhere = (shape: ListingShape, keyset: boolean): string => {
  const conditions = [
    ...(shape.byApp ? ["i.app_id = ?"] : []),
    ...(shape.activeOnly ? ["i.suspended_at IS NULL"] : []),
    ...(keyset ? ["(i.created_at, i.id) > (?, ?)"] : [])
  ]
  return conditions.length === 0 ? "" : `WHERE ${conditions.join(" AND ")}`
}

/**
 * One page of installations in (created_at, id) order, then `LIMIT ? OFFSET ?`. Every shape walks
 * an index in that order (a test checks the query plans): see migrations/0003_listing_indexes.sql.
 */
export const installationListingSql = (shape: ListingShape): string =>
  `SELECT ${INSTALLATION_COLUMNS} FROM installations i JOIN apps a ON a.id = i.app_id
   ${listingWhere(shape, shape.keyset)} ORDER BY i.created_at, i.id LIMIT ? OFFSET ?`

/** How many installations the listing holds (the cursor does not narrow it: `total` is the whole). */
export const installationCountSql = (shape: ListingShape): string =>
  `SELECT COUNT(*) AS total FROM installations i ${listingWhere(shape, false)}`

/** One page of apps in (created_at, id) order, then `LIMIT ? OFFSET ?`. */
export const APP_LISTING_SQL = `SELECT ${APP_COLUMNS} FROM apps ORDER BY created_at, id LIMIT ? OFFSET ?`

/** The keys of the apps on one page (`LIMIT ? OFFSET ?` as the page). */
export const APP_LISTING_KEYS_SQL = `SELECT id, app_id, fingerprint, spki, created_at FROM app_keys
  WHERE app_id IN (SELECT id FROM apps ORDER BY created_at, id LIMIT ? OFFSET ?) ORDER BY app_id, created_at, id`

/** A {@link Registry} over a D1 database. */
export const make = (db: D1Database): Registry["Type"] => {
  const appStatements = (id: number) => [
    db.prepare(`SELECT ${APP_COLUMNS} FROM apps WHERE id = ?`).bind(id),
    db
      .prepare(
        "SELECT id, app_id, fingerprint, spki, created_at FROM app_keys WHERE app_id = ? ORDER BY created_at, id"
      )
      .bind(id)
  ]
  const installationStatement = (id: string) =>
    db
      .prepare(`SELECT ${INSTALLATION_COLUMNS} FROM installations i JOIN apps a ON a.id = i.app_id WHERE i.id = ?`)
      .bind(id)
  const appOf = (apps: D1Result<unknown> | undefined, keys: D1Result<unknown> | undefined) => {
    const row = apps?.results[0] as AppRow | undefined
    return row === undefined
      ? Option.none<AppRecord>()
      : Option.some(toApp(row, ((keys?.results ?? []) as Array<KeyRow>).map(toKey)))
  }
  const getApp = (appId: string) =>
    Effect.gen(function* () {
      const id = appRowId(appId)
      if (id === undefined) return Option.none<AppRecord>()
      const [apps, keys] = yield* run(() => db.batch<AppRow | KeyRow>(appStatements(id)))
      return appOf(apps, keys)
    })
  /** The app, its keys and one installation in one batch: the mint's one read round trip. */
  const getAppWithInstallation = (appId: string, installationId: string) =>
    Effect.gen(function* () {
      const id = appRowId(appId)
      const [apps, keys, installation] = yield* run(() =>
        db.batch<Record<string, unknown>>([...appStatements(id ?? 0), installationStatement(installationId)])
      )
      const row = installation?.results[0] as InstallationRow | undefined
      return {
        app: id === undefined ? Option.none<AppRecord>() : appOf(apps, keys),
        installation: row === undefined ? Option.none<InstallationRecord>() : Option.some(toInstallation(row))
      }
    })

  const getInstallation = (id: string) =>
    Effect.map(
      run(() => installationStatement(id).first<InstallationRow>()),
      (row) => (row === null ? Option.none() : Option.some(toInstallation(row)))
    )

  return {
    putToken: (digest, token) =>
      Effect.asVoid(
        run(() =>
          db.batch([
            // Expired records, oldest first, a bounded number per mint (tokens_by_expiry): pruning keeps
            // up as long as mints outnumber expiries, which they do (every record is a mint).
            db.prepare(PRUNE_TOKENS_SQL).bind(token.createdAt, PRUNE_BATCH),
            db
              .prepare(
                `INSERT INTO tokens (digest, id, kind, app_id, installation_id, organization_id, permissions, created_at,
                   expires_at, app_epoch, installation_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
              )
              .bind(
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
              )
          ])
        )
      ),
    findToken: (digest) =>
      Effect.map(
        run(() => db.prepare(TOKEN_STANDING_SQL).bind(digest).first<TokenStandingRow>()),
        (row) => (row === null ? Option.none() : Option.some(toStanding(row)))
      ),
    revokeToken: (digest, now) =>
      Effect.asVoid(
        run(() =>
          db.prepare("UPDATE tokens SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL").bind(now, digest).run()
        )
      ),
    createApp: (app, key) =>
      Effect.gen(function* () {
        const result = yield* Effect.tryPromise({
          try: () =>
            db.batch([
              db
                .prepare("INSERT INTO apps (name, permissions, created_at, updated_at) VALUES (?, ?, ?, ?)")
                .bind(app.name, encodePermissions(app.permissions), app.createdAt, app.updatedAt),
              db
                .prepare(
                  "INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at) VALUES (?, last_insert_rowid(), ?, ?, ?)"
                )
                .bind(key.id, key.fingerprint, key.spki, key.createdAt)
            ]),
          catch: (e) => (isUniqueViolation(e) ? new NameTaken({ name: app.name }) : unavailable())
        })
        const id = String(result[0]?.meta.last_row_id)
        return { ...app, id, tokenEpoch: 0, keys: [{ ...key, appId: id, notBefore: null }] }
      }),
    getApp,
    getAppWithInstallation,
    addKey: (key) =>
      Effect.gen(function* () {
        const appId = appRowId(key.appId)
        if (appId === undefined) return yield* new AppMissing()
        // One statement: the cap and duplicate checks and the insert cannot interleave with another request's.
        const result = yield* run(() =>
          db
            .prepare(
              `INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at)
               SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM apps WHERE id = ?)
                 AND NOT EXISTS (SELECT 1 FROM app_keys WHERE app_id = ? AND fingerprint = ?)
                 AND (SELECT COUNT(*) FROM app_keys WHERE app_id = ?) < ?`
            )
            .bind(
              key.id,
              appId,
              key.fingerprint,
              key.spki,
              key.createdAt,
              appId,
              appId,
              key.fingerprint,
              appId,
              MAX_KEYS_PER_APP
            )
            .run()
        )
        if (result.meta.changes === 1) return { ...key, notBefore: null }
        // Refused: say why (the app is gone, has the key already, or is full).
        const [app, same] = yield* run(() =>
          db.batch([
            db.prepare("SELECT 1 AS one FROM apps WHERE id = ?").bind(appId),
            db
              .prepare("SELECT 1 AS one FROM app_keys WHERE app_id = ? AND fingerprint = ?")
              .bind(appId, key.fingerprint)
          ])
        )
        if ((app?.results.length ?? 0) === 0) return yield* new AppMissing()
        return yield* (same?.results.length ?? 0) > 0
          ? new KeyExists()
          : new KeyLimitReached({ limit: MAX_KEYS_PER_APP })
      }),
    deleteKey: (appId, keyId, _now) =>
      Effect.gen(function* () {
        const id = appRowId(appId)
        if (id === undefined) return yield* new AppMissing()
        // One transaction: the epoch moves on exactly when the key goes (a kill switch, SPEC §5).
        const [app, , deleted] = yield* run(() =>
          db.batch([
            db.prepare("SELECT id FROM apps WHERE id = ?").bind(id),
            db
              .prepare(
                `UPDATE apps SET token_epoch = token_epoch + 1
                 WHERE id = ? AND EXISTS (SELECT 1 FROM app_keys WHERE app_id = ? AND id = ?)`
              )
              .bind(id, id, keyId),
            db.prepare("DELETE FROM app_keys WHERE app_id = ? AND id = ?").bind(id, keyId)
          ])
        )
        if ((app?.results.length ?? 0) === 0) return yield* new AppMissing()
        if (deleted?.meta.changes !== 1) return yield* new KeyMissing()
      }),
    revokeAppTokens: (appId) =>
      Effect.gen(function* () {
        const id = appRowId(appId)
        if (id === undefined) return yield* new AppMissing()
        const result = yield* run(() =>
          db.prepare("UPDATE apps SET token_epoch = token_epoch + 1 WHERE id = ?").bind(id).run()
        )
        if (result.meta.changes !== 1) return yield* new AppMissing()
      }),
    createInstallation: (installation) =>
      Effect.gen(function* () {
        const appId = appRowId(installation.appId)
        if (appId === undefined) return yield* new AppMissing()
        const result = yield* Effect.tryPromise({
          try: () =>
            db
              .prepare(
                `INSERT INTO installations (id, app_id, organization_id, permissions, created_at, updated_at, suspended_at)
                 SELECT ?, id, ?, ?, ?, ?, NULL FROM apps WHERE id = ?`
              )
              .bind(
                installation.id,
                installation.organizationId,
                encodePermissions(installation.permissions),
                installation.createdAt,
                installation.updatedAt,
                appId
              )
              .run(),
          catch: (e) => (isUniqueViolation(e) ? new AlreadyInstalled() : unavailable())
        })
        if (result.meta.changes !== 1) return yield* new AppMissing()
        const created = yield* getInstallation(installation.id)
        return Option.getOrThrow(created)
      }),
    getInstallation,
    updateInstallation: (id, change) =>
      Effect.gen(function* () {
        const sets = ["updated_at = ?"]
        const values: Array<unknown> = [change.updatedAt]
        // The kill-switch rule (Registry.bumpsEpoch) in SQL, judged against the row being written:
        // SQLite evaluates every SET expression on the row as it was before this UPDATE.
        const bumps: Array<string> = []
        const bumpValues: Array<unknown> = []
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
        if (bumps.length > 0) {
          sets.push(`token_epoch = token_epoch + (${bumps.join(" OR ")})`)
          values.push(...bumpValues)
        }
        const result = yield* run(() =>
          db
            .prepare(`UPDATE installations SET ${sets.join(", ")} WHERE id = ?`)
            .bind(...values, id)
            .run()
        )
        if (result.meta.changes !== 1) return yield* new InstallationMissing()
        return Option.getOrThrow(yield* getInstallation(id))
      }),
    deleteInstallation: (id) =>
      Effect.gen(function* () {
        const row = yield* run(() =>
          db.prepare("DELETE FROM installations WHERE id = ? RETURNING app_id").bind(id).first<{ app_id: number }>()
        )
        if (row === null) return yield* new InstallationMissing()
        return { appId: String(row.app_id) }
      }),
    revokeInstallationTokens: (id) =>
      Effect.gen(function* () {
        const row = yield* run(() =>
          db
            .prepare("UPDATE installations SET token_epoch = token_epoch + 1 WHERE id = ? RETURNING app_id")
            .bind(id)
            .first<{ app_id: number }>()
        )
        if (row === null) return yield* new InstallationMissing()
        return { appId: String(row.app_id) }
      }),
    listInstallations: (filter, page) =>
      Effect.gen(function* () {
        const appId = filter.appId === undefined ? undefined : appRowId(filter.appId)
        if (filter.appId !== undefined && appId === undefined) return { items: [], more: false, total: 0 }
        const shape = { byApp: appId !== undefined, activeOnly: filter.activeOnly, keyset: "after" in page }
        const byApp = appId === undefined ? [] : [appId]
        const after = "after" in page ? [page.after.createdAt, page.after.id] : []
        // One row beyond the page says whether another follows; the batch reads page and count at one instant.
        const [rows, count] = yield* run(() =>
          db.batch<InstallationRow | { total: number }>([
            db
              .prepare(installationListingSql(shape))
              .bind(...byApp, ...after, page.limit + 1, "offset" in page ? page.offset : 0),
            db.prepare(installationCountSql(shape)).bind(...byApp)
          ])
        )
        const found = (rows?.results ?? []) as Array<InstallationRow>
        return {
          items: found.slice(0, page.limit).map(toInstallation),
          more: found.length > page.limit,
          total: (count?.results[0] as { total: number } | undefined)?.total ?? 0
        }
      }),
    listApps: ({ limit, offset }) =>
      Effect.gen(function* () {
        const [apps, keys, count] = yield* run(() =>
          db.batch<AppRow | KeyRow | { total: number }>([
            db.prepare(APP_LISTING_SQL).bind(limit + 1, offset),
            db.prepare(APP_LISTING_KEYS_SQL).bind(limit, offset),
            db.prepare("SELECT COUNT(*) AS total FROM apps")
          ])
        )
        const keysOf = new Map<number, Array<KeyRecord>>()
        for (const row of (keys?.results ?? []) as Array<KeyRow>) {
          keysOf.set(row.app_id, [...(keysOf.get(row.app_id) ?? []), toKey(row)])
        }
        const found = (apps?.results ?? []) as Array<AppRow>
        return {
          items: found.slice(0, limit).map((row) => toApp(row, keysOf.get(row.id) ?? [])),
          more: found.length > limit,
          total: (count?.results[0] as { total: number } | undefined)?.total ?? 0
        }
      })
  }
}

/** The registry as a layer. */
export const layer = (db: D1Database): Layer.Layer<Registry> => Layer.succeed(Registry, make(db))
