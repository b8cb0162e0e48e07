/**
 * Test fixtures for core's own tests: the testkit's, by path (the testkit depends on core, so core
 * cannot depend on it as a package), so key generation and hand-made JWTs live in one place.
 */
export { generateAppKeyPair as rsaKeyPair, signRs256 } from "../../testkit/src/Keys.js"
