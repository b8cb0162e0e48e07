/**
 * The SDK assembled: {@link AppJwt}, {@link IcrAppsClient} and {@link InstallationTokens} as one
 * layer, from options or from Effect `Config` (environment variables by default).
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as AuthenticatedClient from "../client/AuthenticatedClient.js"
import * as AppJwt from "./AppJwt.js"
import * as Client from "./Client.js"
import * as InstallationTokens from "./InstallationTokens.js"
import * as TokenCache from "./TokenCache.js"

/** Everything the SDK can be told. */
export interface IcrAppsConfig
  extends AppJwt.AppJwtOptions,
    Client.ClientOptions,
    InstallationTokens.InstallationTokensOptions {
  /** The authenticated clients' concurrency cap, retries and redirects (SPEC §10). */
  readonly requests?: AuthenticatedClient.AuthenticatedClientOptions | undefined
}

/** The SDK's services. */
export type IcrAppsServices =
  | AppJwt.AppJwt
  | Client.IcrAppsClient
  | InstallationTokens.InstallationTokens
  | AuthenticatedClient.AuthenticatedClient

/** The SDK over a given {@link Client.IcrAppsHttpClient} and `TokenCache`. Fails at construction on an unusable key or base URL. */
export const layerWith = (
  config: IcrAppsConfig
): Layer.Layer<
  IcrAppsServices,
  AppJwt.InvalidPrivateKey | Client.InvalidBaseUrl,
  Client.IcrAppsHttpClient | TokenCache.TokenCache
> =>
  AuthenticatedClient.layer({
    apiVersion: config.apiVersion,
    refreshMarginSeconds: config.refreshMarginSeconds,
    ...config.requests
  }).pipe(
    Layer.provideMerge(InstallationTokens.layer(config)),
    Layer.provideMerge(Client.layer(config)),
    Layer.provideMerge(AppJwt.layer(config))
  )

/** How the SDK reaches the network and where it caches tokens; each defaults to what most apps want. */
export interface IcrAppsTransport {
  /** The `fetch` to send with (default `globalThis.fetch`). */
  readonly fetch?: typeof globalThis.fetch | undefined
  /** Or a whole `HttpClient` for the SDK alone (wins over `fetch`). */
  readonly httpClient?: HttpClient.HttpClient | undefined
  /** The token cache (default: an in-memory LRU of 1,000 entries; `KvTokenCache.layer(kv)` on Workers). */
  readonly cache?: Layer.Layer<TokenCache.TokenCache> | undefined
}

const transportLayers = (transport: IcrAppsTransport) =>
  Layer.mergeAll(
    transport.httpClient !== undefined
      ? Client.layerHttpClient(transport.httpClient)
      : Client.layerFetch(transport.fetch),
    transport.cache ?? TokenCache.layerMemoryCache()
  )

/** The SDK: `fetch` (or the given one) and an in-memory LRU token cache unless told otherwise. */
export const layer = (
  config: IcrAppsConfig & IcrAppsTransport
): Layer.Layer<IcrAppsServices, AppJwt.InvalidPrivateKey | Client.InvalidBaseUrl> =>
  layerWith(config).pipe(Layer.provide(transportLayers(config)))

/**
 * Reads the configuration through Effect `Config`: `ICR_APP_ID`, `ICR_PRIVATE_KEY` (redacted),
 * and optionally `ICR_BASE_URL`, `ICR_API_VERSION`.
 */
export const config: Config.Config<IcrAppsConfig> = Config.all({
  appId: Config.string("ICR_APP_ID"),
  privateKey: Config.redacted("ICR_PRIVATE_KEY"),
  baseUrl: Config.string("ICR_BASE_URL").pipe(Config.withDefault(Client.DEFAULT_BASE_URL)),
  apiVersion: Config.option(Config.string("ICR_API_VERSION")).pipe(
    Config.map((v) => (v._tag === "Some" ? v.value : undefined))
  )
})

/** {@link layer} from {@link config} (or another `Config` of the same shape), with the given transport and cache. */
export const layerConfig = (
  from: Config.Config<IcrAppsConfig> = config,
  transport: IcrAppsTransport = {}
): Layer.Layer<IcrAppsServices, AppJwt.InvalidPrivateKey | Client.InvalidBaseUrl | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(from, (c) => layer({ ...c, ...transport })))
