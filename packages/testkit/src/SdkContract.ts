/**
 * The SDK's conformance suite (SPEC §7): every SPEC §6 problem an issuer sends reaches the app as
 * its own typed error — with `code`, `status` and, for `invalid_jwt`, `reason` — through the
 * Effect API, the Promise client and the operator client; and a clock 10 minutes off either way
 * is learned and recovered from. It runs unchanged against the in-memory issuer (Node) and the
 * real worker (workerd, D1).
 *
 * Problems no request of a well-behaved client can provoke (`method_not_allowed`,
 * `payload_too_large`, a malformed path) are provoked by a fetch that tampers with one request on
 * its way out; `rate_limited`, `internal` and `unavailable`, which an issuer sends only when it is
 * overloaded or broken, are answered by the fetch itself with the problem document the issuer
 * would send. (`forbidden` is in SPEC §6 but no endpoint sends it, so no endpoint declares it.)
 */
import {
  AnyProblem,
  codeOf,
  Internal,
  isProblem,
  type Problem,
  RateLimited,
  Unavailable
} from "@icr-apps/core/api/Problems"
import * as AdminClient from "@icr-apps/core/sdk/AdminClient"
import { AppJwt } from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import { InstallationTokens } from "@icr-apps/core/sdk/InstallationTokens"
import { createIcrAppsClient, IcrAppsFailure } from "@icr-apps/core/sdk/Promise"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { TestRunner } from "./TestRunner.js"
import { type AppKeyPair, generateAppKeyPair } from "./Keys.js"

/** What the suite needs of an issuer. */
export interface SdkTarget {
  /** Sends a request to the issuer under test. */
  readonly fetch: (request: Request) => Promise<Response>
  /** The same issuer with no ADMIN_TOKEN configured. */
  readonly fetchWithoutAdmin: (request: Request) => Promise<Response>
  /** The configured ADMIN_TOKEN. */
  readonly adminToken: string
}

const BASE = "http://icr.test"

/** A clock `offsetMillis` away from the real one: the app's machine, when its clock is wrong. */
const shiftedClock = (offsetMillis: number): Clock.Clock => {
  const base = Clock.make()
  const nanos = BigInt(offsetMillis) * 1_000_000n
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + offsetMillis,
    currentTimeMillis: Effect.sync(() => base.unsafeCurrentTimeMillis() + offsetMillis),
    unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos() + nanos,
    currentTimeNanos: Effect.sync(() => base.unsafeCurrentTimeNanos() + nanos),
    sleep: (duration) => base.sleep(duration)
  }
}

/** The problem document an issuer sends for `problem`, as a response. */
const cannedProblem = (problem: Problem): Response => {
  const document = Schema.encodeSync(AnyProblem)(problem)
  return new Response(JSON.stringify(document), {
    status: document.status,
    headers: { "content-type": "application/problem+json", "retry-after": "1" }
  })
}

/** Registers the suite under `name` with the given test runner's functions. */
export const sdkContract = (
  name: string,
  makeTarget: () => SdkTarget | Promise<SdkTarget>,
  { beforeAll, describe, expect, it }: TestRunner
) =>
  describe(`SDK contract: ${name}`, () => {
    let target: SdkTarget
    let keys: AppKeyPair
    let otherKeys: AppKeyPair
    let appId: string
    let appName: string
    let installationId: string
    let suspendedId: string
    /** Rewrites the next request on its way out (once). */
    let tamper: ((request: Request) => Request | Response) | undefined

    const fetchOf =
      (send: (request: Request) => Promise<Response>): typeof globalThis.fetch =>
      async (input, init) => {
        let request: Request | Response = new Request(input, init)
        if (tamper !== undefined) {
          const once = tamper
          tamper = undefined
          request = once(request)
        }
        return request instanceof Response ? request : send(request)
      }

    const admin = <A, E>(f: (client: AdminClient.AdminClient["Type"]) => Effect.Effect<A, E>, withAdmin = true) =>
      Effect.flatMap(AdminClient.AdminClient, f).pipe(
        Effect.provide(
          AdminClient.layer({
            baseUrl: BASE,
            adminToken: target.adminToken,
            fetch: fetchOf(withAdmin ? target.fetch : target.fetchWithoutAdmin)
          })
        )
      )

    /** The SDK for the suite's app, no retries (a problem must arrive as itself, at once). */
    const sdk = (config: Partial<IcrApps.IcrAppsConfig> = {}) =>
      IcrApps.layer({
        appId,
        privateKey: keys.privatePem,
        baseUrl: BASE,
        retry: { maxAttempts: 1 },
        fetch: fetchOf(target.fetch),
        ...config
      })

    beforeAll(async () => {
      target = await makeTarget()
      ;[keys, otherKeys] = await Promise.all([generateAppKeyPair(), generateAppKeyPair()])
      appName = `sdk-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`
      await Effect.runPromise(
        admin((client) =>
          Effect.gen(function* () {
            const app = yield* client.createApp({
              payload: { name: appName, permissions: { organization_info: "VIEW" }, publicKey: keys.publicPem }
            })
            appId = app.id
            const install = () =>
              client.createInstallation({
                payload: { appId, organizationId: crypto.randomUUID(), permissions: { organization_info: "VIEW" } }
              })
            installationId = (yield* install()).id
            suspendedId = (yield* install()).id
            yield* client.updateInstallation({ path: { installationId: suspendedId }, payload: { suspended: true } })
          })
        )
      )
    }, 60_000)

    /** Runs `effect`, expects it to fail with the problem `code`, and returns the error. */
    const expectProblem = async (effect: Effect.Effect<unknown, unknown>, code: string) => {
      const error = await Effect.runPromise(Effect.flip(effect))
      expect(isProblem(error)).toBe(true)
      const problem = error as Problem
      expect(codeOf(problem).code).toBe(code)
      expect([problem.code, problem.status]).toEqual([code, codeOf(problem).status])
      expect(problem.message.length).toBeGreaterThan(0)
      return problem
    }

    const calls: ReadonlyArray<
      readonly [code: string, tag: string, run: () => Effect.Effect<unknown, unknown>, tampering?: typeof tamper]
    > = [
      [
        "invalid_request",
        "InvalidRequest",
        () => Effect.flatMap(IcrAppsClient, (c) => c.getInstallation(installationId)).pipe(Effect.provide(sdk())),
        (r) => new Request(r.url.replace(/[0-9a-f-]{36}$/, "not-a-uuid"), r)
      ],
      [
        "unsupported_api_version",
        "UnsupportedApiVersion",
        () =>
          Effect.flatMap(IcrAppsClient, (c) => c.createAppAccessToken()).pipe(
            Effect.provide(sdk({ apiVersion: "1999-01-01" }))
          )
      ],
      [
        "missing_credentials",
        "MissingCredentials",
        () => Effect.flatMap(IcrAppsClient, (c) => c.describeAccessToken("")).pipe(Effect.provide(sdk()))
      ],
      [
        "invalid_token",
        "InvalidToken",
        () =>
          Effect.flatMap(IcrAppsClient, (c) => c.describeAccessToken(`crs_${"0".repeat(48)}`)).pipe(
            Effect.provide(sdk())
          )
      ],
      [
        "installation_suspended",
        "InstallationSuspended",
        () => Effect.flatMap(InstallationTokens, (t) => t.get(suspendedId)).pipe(Effect.provide(sdk()))
      ],
      ["admin_disabled", "AdminDisabled", () => admin((c) => c.getApp({ path: { appId } }), false)],
      ["not_found", "NotFound", () => admin((c) => c.deleteAppKey({ path: { appId, keyId: crypto.randomUUID() } }))],
      [
        "installation_not_found",
        "InstallationNotFound",
        () => Effect.flatMap(IcrAppsClient, (c) => c.getInstallation(crypto.randomUUID())).pipe(Effect.provide(sdk()))
      ],
      ["app_not_found", "AppNotFound", () => admin((c) => c.getApp({ path: { appId: "no-such-app" } }))],
      [
        "method_not_allowed",
        "MethodNotAllowed",
        () =>
          Effect.flatMap(IcrAppsClient, (c) => c.describeAccessToken(`crs_${"0".repeat(48)}`)).pipe(
            Effect.provide(sdk())
          ),
        (r) => new Request(r.url, { method: "PUT", headers: r.headers })
      ],
      [
        "conflict",
        "Conflict",
        () =>
          admin((c) =>
            c.createApp({
              payload: { name: appName, permissions: { organization_info: "VIEW" }, publicKey: otherKeys.publicPem }
            })
          )
      ],
      [
        "payload_too_large",
        "PayloadTooLarge",
        () => Effect.flatMap(InstallationTokens, (t) => t.get(installationId)).pipe(Effect.provide(sdk())),
        (r) =>
          new Request(r.url, {
            method: r.method,
            headers: r.headers,
            body: JSON.stringify({ permissions: {}, padding: "x".repeat(17 * 1024) })
          })
      ],
      [
        "permissions_exceed_grant",
        "PermissionsExceedGrant",
        () =>
          Effect.flatMap(InstallationTokens, (t) =>
            t.get(installationId, { permissions: { organization_inventory: "WRITE" } })
          ).pipe(Effect.provide(sdk()))
      ],
      [
        "invalid_public_key",
        "InvalidPublicKey",
        () =>
          admin((c) =>
            c.addAppKey({
              path: { appId },
              payload: { publicKey: "-----BEGIN PUBLIC KEY-----\nMAoGCCqGSM49AwEH\n-----END PUBLIC KEY-----" }
            })
          )
      ],
      [
        "invalid_permissions",
        "InvalidPermissions",
        () =>
          admin((c) =>
            c.createInstallation({
              payload: { appId, organizationId: crypto.randomUUID(), permissions: { organization_warehouse: "WRITE" } }
            })
          )
      ]
    ]

    for (const [code, tag, run, tampering] of calls) {
      it(`the issuer's ${code} arrives as ${tag}`, async () => {
        tamper = tampering
        const problem = await expectProblem(run(), code)
        expect(problem._tag).toBe(tag)
        expect(tamper).toBeUndefined()
      })
    }

    it("a wrong key arrives as InvalidJwt (invalid_signature): Effect, Promise client and typed reason", async () => {
      const problem = await expectProblem(
        Effect.flatMap(InstallationTokens, (t) => t.get(installationId)).pipe(
          Effect.provide(sdk({ privateKey: otherKeys.privatePem }))
        ),
        "invalid_jwt"
      )
      expect(problem).toMatchObject({ _tag: "InvalidJwt", reason: "invalid_signature" })

      const client = createIcrAppsClient({
        appId,
        privateKey: otherKeys.privatePem,
        baseUrl: BASE,
        fetch: fetchOf(target.fetch)
      })
      const failure = await client.getInstallationToken(installationId).then(
        () => undefined,
        (e: unknown) => e
      )
      await client.dispose()
      expect(failure).toBeInstanceOf(IcrAppsFailure)
      expect(failure).toMatchObject({
        _tag: "InvalidJwt",
        code: "invalid_jwt",
        status: 401,
        reason: "invalid_signature"
      })
    })

    for (const [code, problem] of [
      ["rate_limited", new RateLimited({ detail: "Slow down", retryAfter: 1 })],
      ["internal", new Internal({ detail: "Internal error" })],
      ["unavailable", new Unavailable({ detail: "Storage is unavailable", retryAfter: 1 })]
    ] as const)
      it(`an issuer's ${code} problem document arrives as its typed error`, async () => {
        tamper = () => cannedProblem(problem)
        const error = await expectProblem(
          Effect.flatMap(IcrAppsClient, (c) => c.describeAccessToken(`crs_${"0".repeat(48)}`)).pipe(
            Effect.provide(sdk())
          ),
          code
        )
        expect(error._tag).toBe(problem._tag)
      })

    for (const [label, skew] of [
      ["10 minutes behind the issuer (the JWT looks expired)", -600_000],
      ["10 minutes ahead of the issuer (iat in the future)", 600_000]
    ] as const)
      it(`an app clock ${label} is learned once and every call succeeds`, async () => {
        const offset = await Effect.runPromise(
          Effect.gen(function* () {
            const client = yield* IcrAppsClient
            yield* client.createAppAccessToken()
            const page = yield* client.listInstallations({ limit: 1 })
            expect(page.items.length).toBe(1)
            return yield* Effect.flatMap(AppJwt, (j) => j.clockOffset)
          }).pipe(Effect.provide(sdk()), Effect.withClock(shiftedClock(skew)))
        )
        // The learned offset undoes the skew, to within the Date header's one-second resolution.
        expect(Math.abs(offset + skew)).toBeLessThan(2_000)
      })
  })
