/**
 * The issuer's conformance suite: every row of SPEC §1, §2, §4, §5 and §6 as a black-box test over
 * `fetch`. It runs unchanged against the in-memory issuer (Node), the real worker (workerd and D1)
 * and served issuers over HTTP, so all are held to the same contract. One area per file under
 * `contract/`; {@link issuerContract} registers them all.
 */
import { generateAppKeyPair } from "./Keys.js"
import { auditTrail } from "./contract/Audit.js"
import { commonRules } from "./contract/Common.js"
import { type IssuerTarget, makeContext } from "./contract/Context.js"
import { installations } from "./contract/Installations.js"
import { appJwts } from "./contract/Jwt.js"
import { killSwitches } from "./contract/KillSwitches.js"
import { operatorApi } from "./contract/Operator.js"
import { accessTokens } from "./contract/Tokens.js"
import type { TestRunner } from "./TestRunner.js"

export { ALL_PERMISSIONS, type IssuerTarget, publicOnlyKey } from "./contract/Context.js"

/** Registers the suite under `name`, against the issuer `makeTarget` makes (once, before the first test). */
export const issuerContract = (
  name: string,
  makeTarget: () => IssuerTarget | Promise<IssuerTarget>,
  runner: TestRunner
) =>
  runner.describe(`issuer contract: ${name}`, () => {
    const c = makeContext(runner)
    runner.beforeAll(async () => {
      c.target = await makeTarget()
      ;[c.keys, c.otherKeys] = await Promise.all([generateAppKeyPair(), generateAppKeyPair()])
    }, 60_000)
    commonRules(c)
    appJwts(c)
    accessTokens(c)
    installations(c)
    killSwitches(c)
    auditTrail(c)
    operatorApi(c)
  })
