import { env } from "cloudflare:test"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import { generateAppKeyPair } from "@icr-apps/testkit/Keys"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import { expect, it } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

// SPEC §7 in workerd: PKCS#1 is converted in pure TypeScript, so both PEM forms sign the same JWT here too,
// and the worker's own verifier accepts it.
it("signs identical, verifiable JWTs from PKCS#1 and PKCS#8 keys inside workerd", async () => {
  const keys = await generateAppKeyPair()
  const created = await worker.fetch(
    new Request("http://icr.test/admin/apps", {
      method: "POST",
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "workerd-jwt", permissions: {}, publicKey: keys.publicPem })
    }) as IncomingRequest,
    env
  )
  const appId = ((await created.json()) as { id: string }).id
  const now = Math.floor(Date.now() / 1000) * 1000
  const sign = (privateKey: string) =>
    Effect.runPromise(
      Effect.gen(function* () {
        yield* TestClock.setTime(now)
        const jwt = yield* AppJwt.make({ appId, privateKey })
        return Redacted.value(yield* jwt.get)
      }).pipe(Effect.provide(TestContext.TestContext))
    )
  const [pkcs8, pkcs1] = await Promise.all([sign(keys.privatePem), sign(keys.privatePkcs1Pem)])
  expect(pkcs1).toBe(pkcs8)
  const minted = await worker.fetch(
    new Request("http://icr.test/app/accessTokens", {
      method: "POST",
      headers: { authorization: `Bearer ${pkcs1}` }
    }) as IncomingRequest,
    env
  )
  expect(minted.status).toBe(200)
})
