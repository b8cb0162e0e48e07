/** Shared set-up for the SDK tests: a fake issuer on the test's clock, an app, an installation. */
import type * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import type * as Client from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { ALL_PERMISSIONS } from "../src/Contract.js"
import { type InMemoryIssuer, makeFakeIssuer } from "../src/FakeIssuer.js"
import type { AppKeyPair } from "../src/Keys.js"

/** The epoch the tests start at. */
export const T0 = Date.UTC(2026, 0, 1, 12, 0, 0)
/** The base URL the fake issuer is addressed by. */
export const BASE_URL = "http://icr.test"

/** A retry policy whose attempt timeout never fires unless a test means it to. */
export const testRetry: Client.RetryOptions = { attemptTimeout: "1 hour" }

/** A fake issuer that reads the test's clock, with an app (the given keys) installed once. */
export const setup = (keys: AppKeyPair, options: { readonly installations?: number } = {}) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(T0)
    const clock = yield* Effect.clock
    const issuer = makeFakeIssuer({ now: () => clock.unsafeCurrentTimeMillis() })
    const app = yield* Effect.promise(() =>
      issuer.admin("POST", "/admin/apps", {
        name: `app-${Math.random().toString(36).slice(2, 10)}`,
        permissions: ALL_PERMISSIONS,
        publicKey: keys.publicPem
      })
    )
    const installations: Array<any> = []
    for (let i = 0; i < (options.installations ?? 1); i++) {
      yield* TestClock.adjust("1 millis")
      installations.push(
        yield* Effect.promise(() =>
          issuer.admin("POST", "/admin/installations", {
            appId: app.id,
            organizationId: crypto.randomUUID(),
            permissions: ALL_PERMISSIONS
          })
        )
      )
    }
    return {
      issuer,
      appId: app.id as string,
      installations,
      admin: issuer.admin
    }
  })

/** The SDK's layers over the fake issuer's `fetch`. */
export const sdkLayer = (
  issuer: InMemoryIssuer,
  config: Partial<IcrApps.IcrAppsConfig & IcrApps.IcrAppsTransport> & Pick<IcrApps.IcrAppsConfig, "appId">
): Layer.Layer<IcrApps.IcrAppsServices, AppJwt.InvalidPrivateKey | Client.InvalidBaseUrl> =>
  IcrApps.layer({ baseUrl: BASE_URL, retry: testRetry, fetch: issuer.fetch as typeof fetch, ...config })

export { runAdvancing } from "../src/TestTime.js"

/** How many requests reached `path` (faults included), by method. */
export const countRequests = (issuer: InMemoryIssuer, method: string, pathPattern: RegExp) =>
  issuer.requests().filter((r) => r.method === method && pathPattern.test(r.path)).length
