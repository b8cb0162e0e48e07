import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as AdminClient from "@icr-apps/core/sdk/AdminClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { makeFakeIssuer } from "../src/FakeIssuer.js"
import { generateAppKeyPair } from "../src/Keys.js"

describe("AdminClient (derived from the HttpApi definition)", () => {
  it.effect("creates, reads, keys, installs, suspends and uninstalls, with SPEC §6 errors as tagged errors", () =>
    Effect.gen(function* () {
      const issuer = makeFakeIssuer()
      const [keys, other] = yield* Effect.promise(() => Promise.all([generateAppKeyPair(), generateAppKeyPair()]))
      const program = Effect.gen(function* () {
        const admin = yield* AdminClient.AdminClient
        const app = yield* admin.createApp({
          payload: { name: "typed", permissions: { organization_info: "VIEW" }, publicKey: keys.publicPem }
        })
        expect((yield* admin.getApp({ path: { appId: app.id } })).appNameId).toBe("typed")
        // The app's own key again (as a JWK: the same fingerprint) is a conflict (SPEC §5).
        const same = yield* Effect.flip(
          admin.addAppKey({ path: { appId: app.id }, payload: { publicKey: keys.publicJwk as never } })
        )
        expect(same._tag).toBe("Conflict")
        const key = yield* admin.addAppKey({
          path: { appId: app.id },
          payload: { publicKey: other.publicJwk as never }
        })
        expect(key.fingerprint).not.toBe(app.keys[0]!.fingerprint)
        yield* admin.deleteAppKey({ path: { appId: app.id, keyId: key.id } })
        const installation = yield* admin.createInstallation({
          payload: { appId: app.id, organizationId: crypto.randomUUID(), permissions: { organization_info: "VIEW" } }
        })
        const suspended = yield* admin.updateInstallation({
          path: { installationId: installation.id },
          payload: { suspended: true }
        })
        expect(suspended.suspendedAt).not.toBeNull()
        yield* admin.deleteInstallation({ path: { installationId: installation.id } })
        const gone = yield* Effect.flip(admin.deleteInstallation({ path: { installationId: installation.id } }))
        expect(gone._tag).toBe("InstallationNotFound")
        const taken = yield* Effect.flip(
          admin.createApp({ payload: { name: "typed", permissions: {}, publicKey: keys.publicPem } })
        )
        expect(taken._tag).toBe("Conflict")
      })
      yield* program.pipe(
        Effect.provide(
          Layer.effect(
            AdminClient.AdminClient,
            AdminClient.make({ baseUrl: "http://icr.test", adminToken: issuer.adminToken })
          ).pipe(
            Layer.provide(FetchHttpClient.layer),
            Layer.provide(Layer.succeed(FetchHttpClient.Fetch, issuer.fetch as typeof fetch))
          )
        )
      )
      const wrong = yield* Effect.flip(
        Effect.flatMap(AdminClient.AdminClient, (admin) => admin.getApp({ path: { appId: "1" } })).pipe(
          Effect.provide(
            Layer.effect(
              AdminClient.AdminClient,
              AdminClient.make({ baseUrl: "http://icr.test", adminToken: "wrong" })
            ).pipe(
              Layer.provide(FetchHttpClient.layer),
              Layer.provide(Layer.succeed(FetchHttpClient.Fetch, issuer.fetch as typeof fetch))
            )
          )
        )
      )
      expect(wrong._tag).toBe("InvalidToken")
    })
  )
})
