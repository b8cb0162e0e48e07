/**
 * @icr-apps/testkit: the ICR Apps API in memory for tests — a fake issuer running the real core
 * handlers, fixture keys, fault injection, and the conformance suite the real worker also passes.
 */
export * as Keys from "./Keys.js"
export * as FakeIssuer from "./FakeIssuer.js"
export { Fault, makeFakeIssuer } from "./FakeIssuer.js"
export { appClaims, generateAppKeyPair, signRs256 } from "./Keys.js"
