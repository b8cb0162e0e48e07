import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
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
