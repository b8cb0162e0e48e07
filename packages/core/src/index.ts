/**
 * @icr-apps/core: the app side of the ICR Apps API (the SDK) and the one `HttpApi` definition it
 * shares with the issuer. Effect users compose the service tags and `IcrApps.layer`; everyone else
 * calls `createIcrAppsClient`. The issuer's modules are under `@icr-apps/core/issuer/*`.
 */
export { IcrAppsApi } from "./api/Api.js"
export { App, AppKey } from "./api/Apps.js"
export { Installation, InstallationPage } from "./api/Installations.js"
export { Permissions } from "./api/Permissions.js"
export * as Problems from "./api/Problems.js"
export { AccessToken, InstallationAccessToken, TokenDescription } from "./api/Tokens.js"
export {
  AuthenticatedClient,
  type AuthenticatedClientOptions,
  InvalidRequestArgument,
  isRetryable,
  type RequestError,
  type RequestOptions
} from "./client/AuthenticatedClient.js"
export * as RequireToken from "./resource/RequireToken.js"
export * as TokenStanding from "./resource/TokenStanding.js"
export { AdminClient } from "./sdk/AdminClient.js"
export { AppJwt, InvalidPrivateKey, type JwtSigner, JwtSigningFailed, type PrivateKeyInput } from "./sdk/AppJwt.js"
export {
  type ErrorOf,
  type IcrAppsError,
  IcrAppsClient,
  IcrAppsHttpClient,
  InvalidBaseUrl,
  type RetryOptions,
  type TransportFailure,
  TransportError,
  UnexpectedResponse
} from "./sdk/Client.js"
export * as IcrApps from "./sdk/IcrApps.js"
export { InstallationTokens } from "./sdk/InstallationTokens.js"
export * as KvTokenCache from "./sdk/KvTokenCache.js"
export { createIcrAppsClient, IcrAppsFailure, type IcrAppsPromiseClient } from "./sdk/Promise.js"
export { type CachedToken, TokenCache } from "./sdk/TokenCache.js"
