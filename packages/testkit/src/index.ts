/**
 * @icr-apps/testkit: the ICR Apps API in memory for tests — the real core handlers over in-memory
 * storage, as an Effect layer (`FakeIssuer.layer()`, with the SDK wired to it) or a Promise object
 * (`makeFakeIssuer()`), with typed arrange helpers, faults equal to the issuer's answers and a
 * request log; exact time (`runAdvancing`); fixture keys; and the conformance suites the real
 * worker also passes.
 */
export { issuerContract, type IssuerTarget } from "./Contract.js"
export {
  type Arrange,
  type CredentialKind,
  Fault,
  type FaultMatch,
  FakeIssuer,
  type FakeIssuerLayerOptions,
  type FakeIssuerOptions,
  type FakeIssuerService,
  type HttpFault,
  type InMemoryIssuer,
  type LoggedRequest,
  type MatchedRequest,
  makeFakeIssuer,
  PROBLEM_CODES,
  type ProblemClass,
  type ProblemCode,
  type ProblemFields,
  type RouteName,
  SDK_DEFAULTS
} from "./FakeIssuer.js"
export { testOnlyKeyPair } from "./Fixtures.js"
export * as Keys from "./Keys.js"
export { type AppKeyPair, appClaims, generateAppKeyPair, signRs256 } from "./Keys.js"
export { type IdentityTokenOptions, makeOidcProvider, type OidcProvider } from "./Oidc.js"
export { rateLimiterContract } from "./RateLimiterContract.js"
export { registryContract } from "./RegistryContract.js"
export { type SdkTarget, sdkContract } from "./SdkContract.js"
export type { TestRunner } from "./TestRunner.js"
export { type RunAdvancingOptions, runAdvancing, trackRealWork } from "./TestTime.js"
export { tokenCacheContract } from "./TokenCacheContract.js"
