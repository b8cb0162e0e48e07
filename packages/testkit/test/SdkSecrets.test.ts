import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import { InstallationTokens } from "@icr-apps/core/sdk/InstallationTokens"
import { createIcrAppsClient, IcrAppsFailure } from "@icr-apps/core/sdk/Promise"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import { beforeAll } from "vitest"
import { Fault, makeFakeIssuer } from "../src/FakeIssuer.js"
import { type AppKeyPair, generateAppKeyPair } from "../src/Keys.js"
import { BASE_URL, runAdvancing, sdkLayer, setup } from "./sdk-harness.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

/** Every way an error can be turned into text. */
const renderings = (e: unknown): string =>
  [
    String(e),
    e instanceof Error ? e.message : "",
    e instanceof Error ? (e.stack ?? "") : "",
    JSON.stringify(e),
    Inspectable.format(e)
  ].join("\n")

describe("no token or key text in any error message or log line (SPEC §7)", () => {
  it.effect("across minting, failures, retries and clock-skew recovery", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      const lines: Array<string> = []
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message, annotations }) => lines.push(Inspectable.format({ message, annotations })))
      )
      const secrets: Array<string> = []
      const errors: Array<unknown> = []
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const tokens = yield* InstallationTokens
        const jwt = yield* AppJwt.AppJwt
        secrets.push(Redacted.value(yield* jwt.get))
        const token = yield* tokens.get(installations[0].id)
        secrets.push(Redacted.value(token.token))
        expect(String(token.token)).toBe("<redacted>")
        expect(JSON.stringify(token)).not.toContain(Redacted.value(token.token))
        // A revoked token used again, a refused JWT, a skew, retries, an unknown installation.
        yield* tokens.revoke(installations[0].id)
        errors.push(yield* Effect.flip(client.describeAccessToken(token.token)))
        issuer.setClockOffset(20 * 60_000)
        yield* client.createAppAccessToken()
        secrets.push(Redacted.value(yield* jwt.get))
        issuer.inject(Fault.status(503), Fault.networkError())
        yield* runAdvancing(client.createAppAccessToken())
        errors.push(yield* Effect.flip(client.getInstallation(crypto.randomUUID())))
        errors.push(yield* Effect.flip(client.describeAccessToken(`crs_${"a".repeat(48)}`)))
        secrets.push(`crs_${"a".repeat(48)}`)
      }).pipe(
        Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })),
        Effect.provide(capture),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
      errors.push(yield* Effect.flip(AppJwt.make({ appId, privateKey: keys.privatePem.slice(0, 600) })))
      expect(lines.length).toBeGreaterThan(0)
      expect(errors).toHaveLength(4)
      const text = [...lines, ...errors.map(renderings)].join("\n")
      for (const secret of secrets) {
        expect(text).not.toContain(secret)
        expect(text).not.toContain(secret.slice(-24))
      }
      const keyBody = keys.privatePem.split("\n").slice(1, -2).join("")
      for (let i = 0; i + 32 <= keyBody.length; i += 32) expect(text).not.toContain(keyBody.slice(i, i + 32))
      expect(text).not.toMatch(/BEGIN (RSA )?PRIVATE KEY/)
    })
  )
})

describe("Promise facade", () => {
  it("does what the Effect client does, with plain values and real Errors carrying tag and code", async () => {
    const issuer = makeFakeIssuer()
    const admin = (path: string, body: unknown) => issuer.admin("POST", path, body)
    const app = await admin("/admin/apps", {
      name: "promise-app",
      permissions: { organization_info: "VIEW" },
      publicKey: keys.publicPem
    })
    const inst = await admin("/admin/installations", {
      appId: app.id,
      organizationId: crypto.randomUUID(),
      permissions: { organization_info: "VIEW" }
    })
    const client = createIcrAppsClient({
      appId: app.id,
      privateKey: keys.privatePkcs1Pem,
      baseUrl: BASE_URL,
      fetch: issuer.fetch as typeof fetch
    })
    try {
      const minted = await client.createInstallationAccessToken(inst.id)
      expect(minted.token).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(minted.expiresAt).toMatch(/Z$/)
      expect(await client.describeAccessToken(minted.token)).toMatchObject({
        kind: "installation",
        installationId: inst.id
      })
      // The app token takes the same narrowing (SPEC §4); beyond the declared permissions it is refused.
      const appToken = await client.createAppAccessToken({ permissions: { organization_info: "VIEW" } })
      expect(appToken.permissions).toEqual({ organization_info: "VIEW" })
      await expect(
        client.createAppAccessToken({ permissions: { organization_inventory: "VIEW" } })
      ).rejects.toMatchObject({ _tag: "PermissionsExceedGrant", code: "permissions_exceed_grant", status: 422 })
      const cached = await client.getInstallationToken(inst.id)
      expect(await client.getInstallationToken(inst.id)).toBe(cached)
      expect((await client.allInstallations()).map((i) => i.id)).toEqual([inst.id])
      expect((await client.listInstallations({ limit: 1 })).total).toBe(1)
      await client.revokeAccessToken(minted.token)
      const failure = await client.describeAccessToken(minted.token).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(failure).toBeInstanceOf(Error)
      expect(failure).toBeInstanceOf(IcrAppsFailure)
      expect(failure).toMatchObject({ _tag: "InvalidToken", code: "invalid_token", status: 401 })
      expect(String((failure as Error).message)).not.toContain(minted.token)
    } finally {
      await client.dispose()
    }
    const broken = createIcrAppsClient({
      appId: "1",
      privateKey: "ssh-rsa AAAA",
      baseUrl: BASE_URL,
      fetch: issuer.fetch as typeof fetch
    })
    await expect(broken.createAppAccessToken()).rejects.toMatchObject({ _tag: "InvalidPrivateKey", code: undefined })
    await broken.dispose()
  })
})
