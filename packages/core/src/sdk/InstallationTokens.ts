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
import * as Redacted from "effect/Redacted"
import { InvalidRequest } from "../api/Problems.js"
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
    /**
     * A valid installation token for `installationId` (narrowed to `permissions` when given).
     * `partition` keeps tokens apart for callers that must not share one (a broker serving many
     * workloads: one of them revoking its token must not end another's).
     */
    readonly get: (
      installationId: string,
      options?: TokenOptions
    ) => Effect.Effect<CachedToken, ErrorOf<"createInstallationAccessToken">>
    /**
     * The token `get` would answer without any I/O, if this instance holds one that is fresh at
     * `nowMillis` — else `undefined`. Synchronous, for callers outside Effect (the Promise client).
     */
    readonly unsafePeek: (
      installationId: string,
      options: Omit<TokenOptions, "refresh"> | undefined,
      nowMillis: number
    ) => CachedToken | undefined
    /**
     * Forgets a token this instance holds (here and in its cache), wherever it was cached: for a
     * token revoked or refused elsewhere (SPEC §10), so the next `get` mints a fresh one.
     */
    readonly evict: (token: Redacted.Redacted<string> | string) => Effect.Effect<void>
    /** Revokes the cached token (if any) for that key on the server, and evicts it. */
    readonly revoke: (
      installationId: string,
      options?: Omit<TokenOptions, "refresh">
    ) => Effect.Effect<void, ErrorOf<"revokeAccessToken">>
  }
>() {
  /** The service as a layer (the module's `layer`, on the tag). */
  static readonly layer = (
    options: InstallationTokensOptions = {}
  ): Layer.Layer<InstallationTokens, never, IcrAppsClient | TokenCache> => layer(options)
}

/** What selects one cached installation token. */
export interface TokenOptions {
  readonly permissions?: Permissions | undefined
  /** Mint anew, bypassing the cache and any mint in flight (concurrent refreshes share one). */
  readonly refresh?: boolean | undefined
  /** Tokens of different partitions are never shared (default: one partition). */
  readonly partition?: string | undefined
}

/** The cache key: base URL, app, installation (lower-cased), canonical permissions, and the partition if any. */
export const cacheKey = (
  baseUrl: string,
  appId: string,
  installationId: string,
  permissions?: Permissions,
  partition?: string
): string =>
  JSON.stringify([
    baseUrl,
    appId,
    installationId.toLowerCase(),
    permissions === undefined ? null : canonical(permissions),
    ...(partition === undefined ? [] : [partition])
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
    /** `<partition>\n<permissions>\n<installation id>`: the id last, as the caller spelt it. */
    const scopeOf = (opts: TokenOptions) =>
      opts.permissions === undefined && opts.partition === undefined
        ? ""
        : `${opts.partition ?? ""}\n${opts.permissions === undefined ? "" : JSON.stringify(canonical(opts.permissions))}\n`
    const localKey = (installationId: string, opts: TokenOptions) => scopeOf(opts) + installationId
    // Which cache entry holds each token this instance got, so a token can be evicted by its value.
    const byToken = new Map<string, { readonly local: string; readonly key: string }>()
    const remember = (installationId: string, opts: TokenOptions, value: CachedToken) => {
      const k = localKey(installationId, opts)
      byToken.set(Redacted.value(value.token), { local: k, key: keyOf(installationId, opts) })
      if (byToken.size > LOCAL_CAPACITY) byToken.delete(byToken.keys().next().value!)
      if (local.get(k) === value) return
      local.delete(k)
      local.set(k, value)
      if (local.size > LOCAL_CAPACITY) local.delete(local.keys().next().value!)
    }
    const fresh = (value: CachedToken | undefined, now: number): value is CachedToken =>
      value !== undefined && DateTime.toEpochMillis(value.expiresAt) - margin > now

    const mint = (key: string, installationId: string, opts: TokenOptions) =>
      Effect.gen(function* () {
        const minted = yield* client.createInstallationAccessToken(installationId, { permissions: opts.permissions })
        const value: CachedToken = {
          token: minted.token,
          expiresAt: minted.expiresAt,
          permissions: minted.permissions,
          installationId: minted.installationId,
          organizationId: minted.organizationId
        }
        yield* cache.set(key, value)
        remember(installationId, opts, value)
        return value
      })

    /** One mint per key at a time in `table`: later callers wait on the first one's result. */
    const shared = (
      table: Map<string, Deferred.Deferred<CachedToken, MintError>>,
      key: string,
      installationId: string,
      opts: TokenOptions
    ) =>
      Effect.suspend(() => {
        const pending = table.get(key)
        if (pending !== undefined) return Deferred.await(pending)
        return Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const deferred = yield* Deferred.make<CachedToken, MintError>()
            table.set(key, deferred)
            const exit = yield* Effect.exit(restore(mint(key, installationId, opts)))
            table.delete(key)
            yield* Deferred.done(deferred, exit)
            return yield* Exit.matchEffect(exit, { onFailure: Effect.failCause, onSuccess: Effect.succeed })
          })
        )
      })

    /** The cache, then a shared mint. */
    const keyOf = (installationId: string, opts: TokenOptions) =>
      cacheKey(client.baseUrl, client.appId, installationId, opts.permissions, opts.partition)
    const fromCache = (installationId: string, opts: TokenOptions) => {
      const key = keyOf(installationId, opts)
      return Effect.flatMap(cache.get(key), (cached) =>
        Effect.clockWith((clock) => {
          if (Option.isSome(cached) && fresh(cached.value, clock.unsafeCurrentTimeMillis())) {
            remember(installationId, opts, cached.value)
            return Effect.succeed(cached.value)
          }
          return shared(inFlight, key, installationId, opts)
        })
      )
    }

    return InstallationTokens.of({
      get: (installationId, opts = {}) => {
        // From JavaScript, an unset variable (process.env.ICR_INSTALLATION_ID) arrives here as undefined.
        if (typeof installationId !== "string" || installationId.trim() === "")
          return missingInstallationId(installationId)
        if (opts.refresh === true) return shared(refreshing, keyOf(installationId, opts), installationId, opts)
        // Looked up when the effect runs (not when it is built), so a reused effect stays cheap.
        const k = localKey(installationId, opts)
        return Effect.clockWith((clock) => {
          const hit = local.get(k)
          return fresh(hit, clock.unsafeCurrentTimeMillis()) ? Effect.succeed(hit) : fromCache(installationId, opts)
        })
      },
      evict: (token) =>
        Effect.suspend(() => {
          const value = Redacted.isRedacted(token) ? Redacted.value(token) : token
          const where = byToken.get(value)
          if (where === undefined) return Effect.void
          byToken.delete(value)
          if (local.get(where.local) !== undefined && Redacted.value(local.get(where.local)!.token) === value) {
            local.delete(where.local)
          }
          return Effect.flatMap(cache.get(where.key), (cached) =>
            Option.isSome(cached) && Redacted.value(cached.value.token) === value
              ? cache.delete(where.key)
              : Effect.void
          )
        }),
      unsafePeek: (installationId, opts = {}, now) => {
        if (typeof installationId !== "string") return undefined
        const hit = local.get(localKey(installationId, opts))
        return fresh(hit, now) ? hit : undefined
      },
      revoke: (installationId, opts = {}) =>
        Effect.gen(function* () {
          // Every spelling of the installation id this instance remembers, for this partition and permissions.
          const scope = scopeOf(opts)
          const id = installationId.toLowerCase()
          for (const k of [...local.keys()]) {
            if (
              k.startsWith(scope) &&
              k.slice(scope.length).toLowerCase() === id &&
              !k.slice(scope.length).includes("\n")
            )
              local.delete(k)
          }
          const key = keyOf(installationId, opts)
          const cached = yield* cache.get(key)
          yield* cache.delete(key)
          if (Option.isSome(cached)) yield* client.revokeAccessToken(cached.value.token)
        })
    })
  })

/** `get` without an installation id: said plainly, where it once died on `undefined.toLowerCase()`. */
const missingInstallationId = (given: unknown) =>
  Effect.fail(
    new InvalidRequest({
      detail: `an installation id is required (a UUID string); got ${given === undefined ? "undefined" : JSON.stringify(given)}`
    })
  )

/** The service as a layer. */
export const layer = (
  options: InstallationTokensOptions = {}
): Layer.Layer<InstallationTokens, never, IcrAppsClient | TokenCache> => Layer.effect(InstallationTokens, make(options))
