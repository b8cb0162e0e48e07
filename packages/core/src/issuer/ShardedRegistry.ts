/**
 * The {@link Registry} split over several databases ("shards"), for traffic past what one database
 * serves (SCALE.md). Each shard is a whole issuer database (the same migrations) behind its own
 * {@link SqlDriver}; shard 0 is **home**.
 *
 * - **Home** holds the truth of every app (ids, names, keys, kill-switch epochs), app tokens, and one
 *   claim per (app, organization) saying which shard holds that installation (one installation per
 *   app and organization across every shard; where an app's kill switches must reach).
 * - **Every shard** (home too) holds installations and their installation tokens, and a copy of each
 *   app that has installations there (its row, keys and epoch), so that a token use is **one
 *   statement on one shard** (the same token-standing statement as on one database) and a mint one
 *   read and one write on the installation's shard. Which shard: the token's secret and the
 *   installation's id name it themselves (`Shards`), so no directory is read on the hot paths.
 * - **An app's kill switch** (a key deleted, `revokeTokens`) and a key added commit on home (moving
 *   the app's `version` in the same write), then write the app's new state to every shard that holds
 *   its installations. The call succeeds only once every one of them has it; when one cannot be
 *   written, it fails `StorageUnavailable` (503: retry), never a false success, and every later call
 *   that touches the app completes the copy first. A copy is only ever replaced by a newer version.
 * - **An installation's kill switches** (suspension, permissions, `revokeTokens`) and a token's
 *   revocation are one statement on its own shard: they act on the next use, as on one database.
 * - **Listings** read the shards that can hold the rows (for one app: home and its claims' shards)
 *   and merge them in listing order.
 * - **Growing**: new installations go to the `open` shards; nothing moves. A token or installation
 *   keeps the shard it was made on for life.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { StoredToken } from "../api/Tokens.js"
import {
  AlreadyInstalled,
  AppMissing,
  byCreation,
  InstallationMissing,
  type InstallationRecord,
  type PageStart,
  type RecordPage,
  Registry,
  StorageUnavailable
} from "./Registry.js"
import { installationIdOn, MAX_SHARDS, shardOfInstallation } from "./Shards.js"
import { type SqlDriver, type SqlStatement, sql } from "./Sql.js"
import * as SqlRegistry from "./SqlRegistry.js"
import { appRowId, encodePermissions, rowsOf } from "./SqlRegistry.js"
import { SHARD_STATEMENTS as SS, statementsFor } from "./SqlStatements.js"

/** How a registry is split. */
export interface ShardOptions {
  /**
   * The shards new installations go to, chosen at random among them (default: every shard). Adding
   * shards: list them in `shards`, then here; a shard left out keeps serving what it holds.
   */
  readonly open?: ReadonlyArray<number> | undefined
  /** Picks one of `open` (index in `[0, n)`); default: a random one. For tests. */
  readonly pick?: ((n: number) => number) | undefined
}

interface ClaimRow {
  readonly installation_id: string
  readonly shard: number
  readonly state: "creating" | "active" | "deleting"
}

const randomPick = (n: number): number => {
  const [r] = crypto.getRandomValues(new Uint32Array(1))
  return (r ?? 0) % n
}

/** How often a shard's copy of an app is written again before the call fails (no wait: a retry is the caller's). */
const COPY_ATTEMPTS = 3

/** Runs `f` until it succeeds, `times` times at most, with no wait between. */
const withAttempts = <A, E>(times: number, f: () => Effect.Effect<A, E>): Effect.Effect<A, E> =>
  times <= 1 ? f() : Effect.catchAll(f(), () => withAttempts(times - 1, f))

/** A registry over `shards` (shard 0 is home). */
export const make = (shards: ReadonlyArray<SqlDriver>, options: ShardOptions = {}): Registry["Type"] => {
  if (shards.length === 0 || shards.length > MAX_SHARDS) throw new RangeError(`1 to ${MAX_SHARDS} shards`)
  const home = shards[0]!
  const dialects = new Set(shards.map((s) => s.dialect))
  if (dialects.size !== 1) throw new RangeError("every shard must speak the same SQL dialect")
  const open = options.open ?? shards.map((_, i) => i)
  if (open.length === 0 || open.some((k) => !Number.isInteger(k) || k < 0 || k >= shards.length)) {
    throw new RangeError("open shards must be shards of the registry")
  }
  const pick = options.pick ?? randomPick
  const S = statementsFor(home.dialect)
  const locals = shards.map((driver) => SqlRegistry.make(driver))
  const homeLocal = locals[0]!
  /** A shard's rules; a shard number this registry does not have reads home, where such a name is unknown. */
  const localOf = (shard: number | undefined) => (shard === undefined ? homeLocal : (locals[shard] ?? homeLocal))

  const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, StorageUnavailable> =>
    Effect.tryPromise({ try: f, catch: () => new StorageUnavailable() })
  const driverOf = (shard: number): Effect.Effect<SqlDriver, StorageUnavailable> => {
    const driver = shards[shard]
    // A claim names a shard this configuration lacks: a shard was removed while it still held data.
    return driver === undefined ? Effect.fail(new StorageUnavailable()) : Effect.succeed(driver)
  }

  /** The statements that make `shard`'s copy of an app this state (no-ops where it has a newer one). */
  const copyStatements = (
    app: SqlRegistry.AppRow,
    version: number,
    keys: ReadonlyArray<SqlRegistry.KeyRow>
  ): ReadonlyArray<SqlStatement> => [
    sql(SS.replicaApp, app.id, app.name, app.permissions, app.created_at, app.updated_at, app.token_epoch, version),
    sql(SS.replicaKeysClear, app.id, app.id, version),
    ...keys.map((k) =>
      sql(SS.replicaKey, k.id, app.id, k.fingerprint, k.spki, k.created_at, k.not_before, app.id, version)
    )
  ]

  /** The app as home holds it now: its row and version (one statement), keys and claimed shards; none when it does not exist. */
  const readApp = (appId: number) =>
    Effect.map(
      attempt(() => home.batch([sql(SS.appState, appId), sql(S.keysOfApp, appId), sql(SS.appShards, appId)])),
      ([app, keys, claimed]) => {
        const row = rowsOf<SqlRegistry.AppRow & { version: number; replicated_version: number }>(app)[0]
        if (row === undefined) return undefined
        // Keys and claims are read after the row: as new as it or newer. Newer keys under an older
        // version only reach a copy early; the newer version's own write follows with the same keys.
        return {
          app: row,
          version: Number(row.version),
          replicated: Number(row.replicated_version),
          keys: rowsOf<SqlRegistry.KeyRow>(keys),
          shards: rowsOf<{ shard: number }>(claimed).map((r) => Number(r.shard))
        }
      }
    )

  /**
   * Brings every shard holding the app's installations to home's version of it, unless home knows
   * they have it. Fails when one cannot be written: the change is then not everywhere yet.
   */
  const converge = (appId: number): Effect.Effect<void, StorageUnavailable> =>
    Effect.gen(function* () {
      const state = yield* readApp(appId)
      if (state === undefined || state.replicated >= state.version) return
      const statements = copyStatements(state.app, state.version, state.keys)
      yield* Effect.forEach(
        state.shards,
        (shard) =>
          Effect.flatMap(driverOf(shard), (driver) =>
            withAttempts(COPY_ATTEMPTS, () => attempt(() => driver.batch(statements)))
          ),
        { concurrency: "unbounded", discard: true }
      )
      yield* attempt(() => home.run(SS.markReplicated, [state.version, appId, state.version]))
    })

  /**
   * Runs a change of an app on home, then brings its copies up to it, whatever the change answered
   * (a retried kill switch answers "no such key" on home, yet its copies may still lag): the answer
   * stands only once the copies have it; else `StorageUnavailable`.
   */
  const thenConverge = <A, E>(appId: string, change: Effect.Effect<A, E>): Effect.Effect<A, E | StorageUnavailable> => {
    const id = appRowId(appId)
    if (id === undefined) return change
    return Effect.flatMap(Effect.either(change), (result) =>
      Effect.zipRight(
        // A change that failed for want of storage keeps that answer, copies or not. Any other
        // answer — success, or "no such key" to a retry — stands only once the copies are current.
        Either.isLeft(result) && (result.left as { readonly _tag?: unknown })._tag === "StorageUnavailable"
          ? Effect.ignore(converge(id))
          : converge(id),
        result
      )
    )
  }

  /**
   * Deletes an installation on its shard, remembering its id there for good, and forgets its claim;
   * the app it belonged to when the shard still had it. `claimed`: a claim named it (so it is
   * remembered even if it never reached its shard: a late completion of that claim must not write it).
   */
  const removeInstallation = (installationId: string, claimed: boolean) =>
    Effect.gen(function* () {
      const driver = yield* driverOf(shardOfInstallation(installationId))
      const [, deleted] = yield* attempt(() =>
        driver.batch([
          sql(SS.rememberDeleted, installationId, claimed ? 1 : 0, installationId),
          sql(SS.deleteInstallation, installationId)
        ])
      )
      yield* attempt(() => home.run(SS.claimRemove, [installationId]))
      return rowsOf<{ app_id: number }>(deleted)[0]
    })

  /** One page of installations from each of `shards`, merged in listing order. */
  const mergedListing = (
    shardsToRead: ReadonlyArray<number>,
    filter: Parameters<Registry["Type"]["listInstallations"]>[0],
    page: PageStart
  ): Effect.Effect<RecordPage<InstallationRecord>, StorageUnavailable> =>
    Effect.gen(function* () {
      // Offsets count across shards: each shard gives its first offset + limit, the merge cuts the page.
      const perShard: PageStart =
        "offset" in page ? { limit: page.offset + page.limit, offset: 0 } : { limit: page.limit, after: page.after }
      const pages = yield* Effect.forEach(shardsToRead, (k) => localOf(k).listInstallations(filter, perShard), {
        concurrency: "unbounded"
      })
      const merged = pages.flatMap((p) => p.items).sort(byCreation)
      const from = "offset" in page ? page.offset : 0
      const total = pages.reduce((n, p) => n + p.total, 0)
      const shardHasMore = pages.some((p) => p.more)
      return {
        items: merged.slice(from, from + page.limit),
        more: merged.length > from + page.limit || shardHasMore,
        total
      }
    })

  const allShards = shards.map((_, i) => i)
  /** An installation token lives on its installation's shard, an app token on home. */
  const tokenShard = (token: StoredToken): number =>
    token.kind === "installation" && token.installationId !== undefined ? shardOfInstallation(token.installationId) : 0

  return {
    tokenShard,
    createApp: (app, key) => homeLocal.createApp(app, key),
    getApp: (appId) => homeLocal.getApp(appId),
    // The installation's shard holds a copy of its app as current as every acknowledged change.
    getAppWithInstallation: (appId, installationId) => {
      const shard = shardOfInstallation(installationId)
      if (shard === 0 || shards[shard] === undefined) return homeLocal.getAppWithInstallation(appId, installationId)
      return Effect.flatMap(locals[shard]!.getAppWithInstallation(appId, installationId), (read) =>
        // No installation of this app there, so perhaps no copy of the app either: the JWT is then
        // checked against home's app, so that the answer is "no such installation", as on one database.
        Option.isSome(read.installation) && read.installation.value.appId === appId
          ? Effect.succeed(read)
          : Effect.map(homeLocal.getApp(appId), (app) => ({ app, installation: read.installation }))
      )
    },
    addKey: (key) => thenConverge(key.appId, homeLocal.addKey(key)),
    deleteKey: (appId, keyId, now) => thenConverge(appId, homeLocal.deleteKey(appId, keyId, now)),
    revokeAppTokens: (appId) => thenConverge(appId, homeLocal.revokeAppTokens(appId)),

    createInstallation: (installation) =>
      Effect.gen(function* () {
        const appId = appRowId(installation.appId)
        if (appId === undefined) return yield* new AppMissing()
        const organizationId = installation.organizationId
        const permissions = encodePermissions(installation.permissions)
        for (let round = 0; round < 5; round++) {
          // A fresh id on a fresh open shard each round (the first from the id the caller made).
          const shard = open[pick(open.length)]!
          let target = { id: installationIdOn(shard, round === 0 ? installation.id : crypto.randomUUID()), shard }
          // Claim the (app, organization), or find who has it. A claim still being created is
          // completed by whoever comes next (with its own request); one being deleted, deleted first.
          const { changes } = yield* attempt(() =>
            home.run(SS.claim, [appId, organizationId, target.id, target.shard, appId, appId, organizationId])
          )
          if (changes !== 1) {
            const claim = yield* attempt(() => home.first<ClaimRow>(SS.claimOf, [appId, organizationId]))
            if (claim === undefined) {
              // No claim: an installation from before sharding has the organization, the app is
              // missing, or a claim was removed (an uninstall) since: then claim again.
              const before = yield* attempt(() => home.first(SS.installedBeforeSharding, [appId, organizationId]))
              if (before !== undefined) return yield* new AlreadyInstalled()
              if (Option.isNone(yield* homeLocal.getApp(installation.appId))) return yield* new AppMissing()
              continue
            }
            if (claim.state === "active") return yield* new AlreadyInstalled()
            if (claim.state === "deleting") {
              yield* removeInstallation(claim.installation_id, true)
              continue
            }
            target = { id: claim.installation_id, shard: Number(claim.shard) }
          }
          // The app's copy as home has it now (read after the claim: a kill switch that could miss
          // this shard finished on home before this read), with the installation, in one write.
          const state = yield* readApp(appId)
          if (state === undefined) return yield* new AppMissing()
          const driver = yield* driverOf(target.shard)
          const results = yield* attempt(() =>
            driver.batch([
              ...(target.shard === 0 ? [] : copyStatements(state.app, state.version, state.keys)),
              sql(
                SS.installationIfAbsent,
                target.id,
                organizationId,
                permissions,
                installation.createdAt,
                installation.updatedAt,
                appId,
                target.id
              )
            ])
          )
          if (results.at(-1)?.changes !== 1) {
            // Another caller completed the same claim first (the organization has its installation),
            // or it was uninstalled meanwhile (its id is remembered as deleted): then claim again.
            const exists = yield* attempt(() => driver.first(SS.installationExists, [target.id]))
            if (exists !== undefined) return yield* new AlreadyInstalled()
            continue
          }
          // Best effort: a claim left "creating" is found by the next caller, whose completion then
          // changes nothing (the installation exists) and answers AlreadyInstalled.
          yield* Effect.ignore(attempt(() => home.run(SS.claimActive, [target.id])))
          const created = yield* locals[target.shard]!.getInstallation(target.id)
          if (Option.isNone(created)) return yield* new StorageUnavailable()
          return created.value
        }
        // Five rounds lost to concurrent uninstalls of the same organization: let the caller retry.
        return yield* new StorageUnavailable()
      }),
    getInstallation: (id) => localOf(shardOfInstallation(id)).getInstallation(id),
    updateInstallation: (id, change) => localOf(shardOfInstallation(id)).updateInstallation(id, change),
    deleteInstallation: (id) =>
      Effect.gen(function* () {
        // Marked first, so that a new installation of the same organization finishes this deletion
        // rather than taking the claim while the installation still exists.
        const marked = yield* attempt(() => home.first<{ app_id: number }>(SS.claimDeleting, [id]))
        // An id naming a shard this registry does not have, and no claim: no such installation.
        if (marked === undefined && shards[shardOfInstallation(id)] === undefined)
          return yield* new InstallationMissing()
        const removed = yield* removeInstallation(id, marked !== undefined)
        const appId = removed?.app_id ?? marked?.app_id
        if (appId === undefined) return yield* new InstallationMissing()
        return { appId: String(appId) }
      }),
    revokeInstallationTokens: (id) => localOf(shardOfInstallation(id)).revokeInstallationTokens(id),
    putToken: (digest, token) => localOf(tokenShard(token)).putToken(digest, token),
    findToken: (digest, shard) =>
      shard !== undefined && shard >= shards.length ? Effect.succeed(Option.none()) : localOf(shard).findToken(digest),
    findTokenNow: (digest, shard) =>
      shard !== undefined && shard >= shards.length
        ? Promise.resolve(Option.none())
        : localOf(shard).findTokenNow!(digest),
    revokeToken: (digest, now, shard) =>
      shard !== undefined && shard >= shards.length ? Effect.void : localOf(shard).revokeToken(digest, now),
    listInstallations: (filter, page) =>
      Effect.gen(function* () {
        if (filter.appId === undefined) return yield* mergedListing(allShards, filter, page)
        const appId = appRowId(filter.appId)
        if (appId === undefined) return { items: [], more: false, total: 0 }
        const claimed = yield* attempt(() => home.all<{ shard: number }>(SS.appShards, [appId]))
        return yield* mergedListing([0, ...claimed.map((r) => Number(r.shard))], filter, page)
      }),
    listApps: (page) => homeLocal.listApps(page)
  }
}

/** The registry over `shards` (shard 0 is home), as a layer. */
export const layer = (shards: ReadonlyArray<SqlDriver>, options?: ShardOptions): Layer.Layer<Registry> =>
  Layer.sync(Registry, () => make(shards, options))
