/**
 * Installation tokens that are always there (SPEC §7): cached by (base URL, app, installation,
 * requested permissions) until `expiresAt` minus a refresh margin (default 5 minutes), one mint in
 * flight per key per client, `refresh: true` to bypass both, `revoke` to evict. The cache is a
 * {@link TokenCache}: a bounded LRU in memory by default, or Cloudflare KV ({@link ./KvTokenCache.ts}).
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { type ErrorOf, IcrAppsClient } from "./Client.js"
import { canonical, type Permissions } from "../api/Permissions.js"
import { type CachedToken, TokenCache } from "./TokenCache.js"

/** Options of {@link InstallationTokens}. */
export interface InstallationTokensOptions {
  /** Refresh this long before `expiresAt` (default 300 s). */
  readonly refreshMarginSeconds?: number | undefined
}

/** Installation tokens, cached and refreshed ahead of expiry. */
export class InstallationTokens extends Context.Tag("@icr-apps/core/InstallationTokens")<
  InstallationTokens,
  {
    /** A valid installation token for `installationId` (narrowed to `permissions` when given). */
    readonly get: (
      installationId: string,
      options?: { readonly permissions?: Permissions | undefined; readonly refresh?: boolean | undefined }
    ) => Effect.Effect<CachedToken, ErrorOf<"createInstallationAccessToken">>
    /**
     * The token `get` would answer without any I/O, if this instance holds one that is fresh at
     * `nowMillis` — else `undefined`. Synchronous, for callers outside Effect (the Promise client).
     */
    readonly unsafePeek: (
      installationId: string,
      options: { readonly permissions?: Permissions | undefined } | undefined,
      nowMillis: number
    ) => CachedToken | undefined
    /** Revokes the cached token (if any) for that key on the server, and evicts it. */
    readonly revoke: (
      installationId: string,
      options?: { readonly permissions?: Permissions | undefined }
    ) => Effect.Effect<void, ErrorOf<"revokeAccessToken">>
  }
>() {}

/** The cache key: base URL, app, installation (lower-cased), canonical permissions. */
export const cacheKey = (baseUrl: string, appId: string, installationId: string, permissions?: Permissions): string =>
  JSON.stringify([
    baseUrl,
    appId,
    installationId.toLowerCase(),
    permissions === undefined ? null : canonical(permissions)
  ])

/** How many tokens an instance remembers in front of its cache (as the default in-memory cache). */
const LOCAL_CAPACITY = 1000

/** Builds the service over a client and a cache. */
export const make = (options: InstallationTokensOptions = {}) =>
  Effect.gen(function* () {
    const client = yield* IcrAppsClient
    const cache = yield* TokenCache
    const margin = (options.refreshMarginSeconds ?? 300) * 1000
    type MintError = ErrorOf<"createInstallationAccessToken">
    // Two single-flight tables: ordinary gets share a mint, and `refresh: true` calls share another
    // (a refresh must not be satisfied by a mint that started before it asked).
    const inFlight = new Map<string, Deferred.Deferred<CachedToken, MintError>>()
    const refreshing = new Map<string, Deferred.Deferred<CachedToken, MintError>>()
    // What this instance last got for each key, in front of the (possibly remote, e.g. KV) cache:
    // a fresh token is answered from here with no I/O and no key building. Keyed by the caller's
    // own spelling of the installation id (a second spelling only costs one cache read).
    const local = new Map<string, CachedToken>()
    const localKey = (installationId: string, permissions: Permissions | undefined) =>
      permissions === undefined ? installationId : `${installationId} ${JSON.stringify(canonical(permissions))}`
    const remember = (installationId: string, permissions: Permissions | undefined, value: CachedToken) => {
      const k = localKey(installationId, permissions)
      if (local.get(k) === value) return
      local.delete(k)
      local.set(k, value)
      if (local.size > LOCAL_CAPACITY) local.delete(local.keys().next().value!)
    }
    const fresh = (value: CachedToken | undefined, now: number): value is CachedToken =>
      value !== undefined && value.expiresAt - margin > now

    const mint = (key: string, installationId: string, permissions: Permissions | undefined) =>
      Effect.gen(function* () {
        const minted = yield* client.createInstallationAccessToken(installationId, { permissions })
        const value: CachedToken = {
          token: minted.token,
          expiresAt: DateTime.toEpochMillis(minted.expiresAt),
          permissions: minted.permissions,
          installationId: minted.installationId,
          organizationId: minted.organizationId
        }
        yield* cache.set(key, value)
        remember(installationId, permissions, value)
        return value
      })

    /** One mint per key at a time in `table`: later callers wait on the first one's result. */
    const shared = (
      table: Map<string, Deferred.Deferred<CachedToken, MintError>>,
      key: string,
      installationId: string,
      permissions: Permissions | undefined
    ) =>
      Effect.suspend(() => {
        const pending = table.get(key)
        if (pending !== undefined) return Deferred.await(pending)
        return Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const deferred = yield* Deferred.make<CachedToken, MintError>()
            table.set(key, deferred)
            const exit = yield* Effect.exit(restore(mint(key, installationId, permissions)))
            table.delete(key)
            yield* Deferred.done(deferred, exit)
            return yield* Exit.matchEffect(exit, { onFailure: Effect.failCause, onSuccess: Effect.succeed })
          })
        )
      })

    /** The cache, then a shared mint. */
    const fromCache = (installationId: string, permissions: Permissions | undefined) => {
      const key = cacheKey(client.baseUrl, client.appId, installationId, permissions)
      return Effect.flatMap(cache.get(key), (cached) =>
        Effect.clockWith((clock) => {
          if (Option.isSome(cached) && fresh(cached.value, clock.unsafeCurrentTimeMillis())) {
            remember(installationId, permissions, cached.value)
            return Effect.succeed(cached.value)
          }
          return shared(inFlight, key, installationId, permissions)
        })
      )
    }

    return InstallationTokens.of({
      get: (installationId, opts = {}) => {
        if (opts.refresh === true) {
          const key = cacheKey(client.baseUrl, client.appId, installationId, opts.permissions)
          return shared(refreshing, key, installationId, opts.permissions)
        }
        // Looked up when the effect runs (not when it is built), so a reused effect stays cheap.
        const k = localKey(installationId, opts.permissions)
        return Effect.clockWith((clock) => {
          const hit = local.get(k)
          return fresh(hit, clock.unsafeCurrentTimeMillis())
            ? Effect.succeed(hit)
            : fromCache(installationId, opts.permissions)
        })
      },
      unsafePeek: (installationId, opts = {}, now) => {
        const hit = local.get(localKey(installationId, opts.permissions))
        return fresh(hit, now) ? hit : undefined
      },
      revoke: (installationId, opts = {}) =>
        Effect.gen(function* () {
          // Every spelling of the installation id this instance remembers, for these permissions.
          const evicted = localKey(installationId, opts.permissions).toLowerCase()
          for (const k of [...local.keys()]) if (k.toLowerCase() === evicted) local.delete(k)
          const key = cacheKey(client.baseUrl, client.appId, installationId, opts.permissions)
          const cached = yield* cache.get(key)
          yield* cache.delete(key)
          if (Option.isSome(cached)) yield* client.revokeAccessToken(cached.value.token)
        })
    })
  })

/** The service as a layer. */
export const layer = (
  options: InstallationTokensOptions = {}
): Layer.Layer<InstallationTokens, never, IcrAppsClient | TokenCache> => Layer.effect(InstallationTokens, make(options))
