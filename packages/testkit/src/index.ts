/**
 * @icr-apps/testkit: the ICR Apps API in memory for tests — the real core handlers over in-memory
 * storage, as an Effect layer (`FakeIssuer.layer()`, with the SDK wired to it) or a Promise object
 * (`makeFakeIssuer()`), with typed arrange helpers, aimed faults and a request log; fixture keys;
 * and the conformance suites the real worker also passes.
 */
export {
  type Arrange,
  type CredentialKind,
  Fault,
  type FaultMatch,
  FakeIssuer,
  type FakeIssuerLayerOptions,
  type FakeIssuerOptions,
  type HttpFault,
  type InMemoryIssuer,
  type LoggedRequest,
  makeFakeIssuer,
  type RouteName
} from "./FakeIssuer.js"
export * as Keys from "./Keys.js"
export { type IdentityTokenOptions, makeOidcProvider, type OidcProvider } from "./Oidc.js"
export { type AppKeyPair, appClaims, generateAppKeyPair, signRs256 } from "./Keys.js"
export { runAdvancing } from "./TestTime.js"
