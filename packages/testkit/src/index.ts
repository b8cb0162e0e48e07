/**
 * @icr-apps/testkit: the ICR Apps API in memory for tests — a fake issuer running the real core
 * handlers, fixture keys, fault injection, and the conformance suites the real worker also passes.
 */
export * as FakeIssuer from "./FakeIssuer.js"
export { Fault, makeFakeIssuer } from "./FakeIssuer.js"
export * as Keys from "./Keys.js"
export { appClaims, generateAppKeyPair, signRs256 } from "./Keys.js"
