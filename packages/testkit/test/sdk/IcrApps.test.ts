import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import { createIcrAppsClient, IcrAppsFailure } from "@icr-apps/core/sdk/Promise"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import { beforeAll } from "vitest"
import { type AppKeyPair, generateAppKeyPair } from "../../src/Keys.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

describe("configuration through Effect Config", () => {
  it.effect("reads ICR_APP_ID, ICR_PRIVATE_KEY (escaped newlines too) and ICR_BASE_URL", () =>
    Effect.gen(function* () {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["ICR_APP_ID", "4242"],
          ["ICR_PRIVATE_KEY", keys.privatePem.replace(/\n/g, "\\n")],
          ["ICR_BASE_URL", "http://icr.test/"]
        ])
      )
      const [appId, baseUrl] = yield* Effect.all([
        Effect.map(AppJwt.AppJwt, (j) => j.appId),
        Effect.map(IcrAppsClient, (c) => c.baseUrl)
      ]).pipe(Effect.provide(IcrApps.layerConfig()), Effect.withConfigProvider(provider))
      expect({ appId, baseUrl }).toEqual({ appId: "4242", baseUrl: "http://icr.test" })
      const missing = yield* Effect.flip(
        Effect.provide(AppJwt.AppJwt, IcrApps.layerConfig()).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["ICR_APP_ID", "1"]])))
        )
      )
      expect(String(missing)).toContain("ICR_PRIVATE_KEY")
    })
  )
})

describe("the base URL", () => {
  it.effect("without a scheme (or with another one) is refused when the layer is built, saying what to write", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string]> = [
        [
          "127.0.0.1:8787",
          'Invalid base URL "127.0.0.1:8787": it has no scheme; write it with one, e.g. http://127.0.0.1:8787'
        ],
        [
          "localhost:8787/",
          'Invalid base URL "localhost:8787": it has no scheme; write it with one, e.g. http://localhost:8787'
        ],
        [
          "api.carbonregistry.com",
          'Invalid base URL "api.carbonregistry.com": it has no scheme; write it with one, e.g. https://api.carbonregistry.com'
        ],
        ["ftp://icr.test", 'Invalid base URL "ftp://icr.test": the scheme must be http:// or https://, not ftp://'],
        [
          "https://user:secret@icr.test",
          'Invalid base URL "https://…@icr.test": it must not carry a user name or password (user:password@); the SDK sends its own credentials'
        ],
        [
          "http//user:secret@icr.test",
          'Invalid base URL "…@icr.test": it has no scheme; write it with one, e.g. https://…@icr.test'
        ],
        [
          "https://icr.test/?token=secret",
          'Invalid base URL "https://icr.test/": it must not carry a query or a fragment'
        ]
      ]
      for (const [baseUrl, message] of cases) {
        expect(message).not.toContain("secret")
        const built = yield* Effect.either(
          Effect.provide(IcrAppsClient, IcrApps.layer({ appId: "1", privateKey: keys.privatePem, baseUrl }))
        )
        expect(built._tag === "Left" && built.left._tag).toBe("InvalidBaseUrl")
        expect(built._tag === "Left" && built.left.message).toBe(message)
        // The Promise client refuses it at once, before any call.
        let thrown: unknown
        try {
          createIcrAppsClient({ appId: "1", privateKey: keys.privatePem, baseUrl })
        } catch (e) {
          thrown = e
        }
        expect(thrown).toBeInstanceOf(IcrAppsFailure)
        expect(thrown).toMatchObject({ _tag: "InvalidBaseUrl", message })
      }
      const hidden = yield* Effect.flip(
        Effect.provide(
          IcrAppsClient,
          IcrApps.layer({ appId: "1", privateKey: keys.privatePem, baseUrl: "user:pw@icr.test" })
        )
      )
      expect(hidden.message).not.toContain("pw")
    })
  )
})
