import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsClient } from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import * as Chunk from "effect/Chunk"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { createServer } from "node:net"
import { beforeAll } from "vitest"
import { Fault, makeFakeIssuer } from "../../src/FakeIssuer.js"
import { type AppKeyPair, generateAppKeyPair } from "../../src/Keys.js"
import { countRequests, runAdvancing, sdkLayer, setup, T0 } from "../sdk-harness.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

const MINT = /^\/app\/installations\/[^/]+\/accessTokens$/

/** A loopback port nothing listens on (bound, then released). */
const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

describe("IcrAppsClient against the in-memory issuer", () => {
  it.effect("mints, describes, lists, gets and revokes", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      const id = installations[0].id
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const appToken = yield* client.createAppAccessToken()
        expect(appToken.appId).toBe(appId)
        const token = yield* client.createInstallationAccessToken(id, { permissions: { organization_info: "VIEW" } })
        expect(token.permissions).toEqual({ organization_info: "VIEW" })
        expect((yield* client.describeAccessToken(token.token)).kind).toBe("installation")
        expect((yield* client.listInstallations({ limit: 5 })).total).toBe(1)
        expect((yield* client.getInstallation(id.toUpperCase())).id).toBe(id)
        yield* client.revokeAccessToken(token.token)
        const error = yield* Effect.flip(client.describeAccessToken(token.token))
        expect(error._tag).toBe("InvalidToken")
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("narrows an app token as it narrows an installation token, and refuses an empty grant before sending", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const narrowed = yield* client.createAppAccessToken({ permissions: { organization_inventory: "REQUEST" } })
        expect(narrowed.permissions).toEqual({ organization_inventory: "REQUEST" })
        const described = yield* client.describeAccessToken(narrowed.token)
        expect(described).toMatchObject({ kind: "app", permissions: { organization_inventory: "REQUEST" } })
        expect(Object.keys((yield* client.createAppAccessToken()).permissions)).toHaveLength(5)
        const before = countRequests(issuer, "POST", /^\/app\//)
        const emptyApp = yield* Effect.flip(client.createAppAccessToken({ permissions: {} }))
        const emptyInstallation = yield* Effect.flip(
          client.createInstallationAccessToken(installations[0].id, { permissions: {} })
        )
        expect([emptyApp._tag, emptyInstallation._tag]).toEqual(["InvalidPermissions", "InvalidPermissions"])
        expect(countRequests(issuer, "POST", /^\/app\//)).toBe(before)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("delivers every SPEC §6 error as its own tagged error, without retrying 4xx", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations, admin } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const before = countRequests(issuer, "POST", MINT)
        // Checked before sending, failing as the server would.
        const unknown = yield* Effect.flip(
          client.createInstallationAccessToken(installations[0].id, {
            permissions: { organization_secrets: "VIEW" } as never
          })
        )
        expect(unknown._tag).toBe("InvalidPermissions")
        expect((yield* Effect.flip(client.getInstallation("nope")))._tag).toBe("InvalidRequest")
        expect(countRequests(issuer, "POST", MINT)).toBe(before)
        // Answered by the server.
        expect((yield* Effect.flip(client.getInstallation(crypto.randomUUID())))._tag).toBe("InstallationNotFound")
        yield* Effect.promise(() => admin("PATCH", `/admin/installations/${installations[0].id}`, { suspended: true }))
        const suspended = yield* Effect.flip(client.createInstallationAccessToken(installations[0].id))
        expect(suspended._tag).toBe("InstallationSuspended")
        issuer.inject(Fault.status(400, { code: "invalid_request" }))
        expect((yield* Effect.flip(client.createInstallationAccessToken(installations[0].id)))._tag).toBe(
          "InvalidRequest"
        )
        issuer.inject(Fault.status(418))
        expect((yield* Effect.flip(client.createAppAccessToken()))._tag).toBe("UnexpectedResponse")
        // 4xx are final: one request each.
        expect(countRequests(issuer, "POST", MINT) - before).toBe(2)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("honours Retry-After in seconds and as an HTTP-date", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.status(429, { retryAfter: "7" }))
        const seconds = yield* runAdvancing(client.createAppAccessToken())
        expect(seconds.slept).toEqual([7000])
        issuer.inject(Fault.status(503, { retryAfter: new Date(T0 + 7000 + 12_000).toUTCString() }))
        const date = yield* runAdvancing(client.createAppAccessToken())
        // An HTTP-date has whole seconds: the wait is the 12 s asked for, less the sub-second part of now.
        expect(date.slept).toHaveLength(1)
        expect(date.slept[0]).toBeGreaterThan(11_000)
        expect(date.slept[0]).toBeLessThanOrEqual(12_000)
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(4)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("retries network errors and 5xx with growing, capped, bounded backoff", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.networkError(), Fault.status(502), Fault.status(504))
        const recovered = yield* runAdvancing(client.createAppAccessToken())
        expect(recovered.slept).toHaveLength(3)
        const [a, b, c] = recovered.slept as [number, number, number]
        // 250 ms doubling, each with ±20 % jitter.
        expect(a).toBeGreaterThanOrEqual(200)
        expect(a).toBeLessThanOrEqual(300)
        expect(b).toBeGreaterThanOrEqual(400)
        expect(c).toBeGreaterThanOrEqual(800)
        issuer.inject(...Array.from({ length: 10 }, () => Fault.status(503, { retryAfter: "1" })))
        const before = countRequests(issuer, "POST", /^\/app\/accessTokens$/)
        const exhausted = yield* runAdvancing(Effect.flip(client.createAppAccessToken()))
        expect(exhausted.result._tag).toBe("Unavailable")
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/) - before).toBe(4)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  // On the real clock: a TestClock cannot tell an attempt's timeout from a request still in flight.
  it.live("times out a hung attempt and retries it", () =>
    Effect.gen(function* () {
      const issuer = makeFakeIssuer()
      const { id: appId } = yield* Effect.promise(() =>
        issuer.admin("POST", "/admin/apps", { name: "slow", permissions: {}, publicKey: keys.publicPem })
      )
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(Fault.delay(5_000))
        const started = Date.now()
        expect((yield* client.createAppAccessToken()).appId).toBe(appId)
        expect(Date.now() - started).toBeLessThan(4_000)
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(2)
      }).pipe(
        Effect.provide(
          sdkLayer(issuer, {
            appId,
            privateKey: keys.privatePem,
            retry: { attemptTimeout: "1 second", baseDelay: "10 millis" }
          })
        )
      )
    })
  )
  it.effect("a network failure that outlasts every attempt is a TransportError", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        issuer.inject(...Array.from({ length: 4 }, () => Fault.networkError()))
        const { result } = yield* runAdvancing(Effect.flip(client.createAppAccessToken()))
        expect(result._tag).toBe("TransportError")
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.live("a refused connection is a TransportError naming the method, the full URL and ECONNREFUSED", () =>
    Effect.gen(function* () {
      const closed = yield* Effect.promise(freePort)
      const error = yield* Effect.flip(
        Effect.flatMap(IcrAppsClient, (c) => c.listInstallations({ limit: 5 })).pipe(
          Effect.provide(
            IcrApps.layer({
              appId: "1",
              privateKey: keys.privatePem,
              baseUrl: `http://127.0.0.1:${closed}`,
              retry: { maxAttempts: 1 }
            })
          )
        )
      )
      expect(error).toMatchObject({
        _tag: "TransportError",
        method: "GET",
        url: `http://127.0.0.1:${closed}/app/installations?limit=5`,
        failure: "refused",
        cause: "ECONNREFUSED"
      })
      expect(error.message).toBe(
        `GET http://127.0.0.1:${closed}/app/installations?limit=5: connection refused (ECONNREFUSED)`
      )
    })
  )
  // `https://` against a plain-http port: Node's TLS fails at once, workerd (wrangler dev) never answers
  // the TLS hello. Either way the SDK asks the port once in plain HTTP, says so and stops retrying.
  // A TLS server's own answer to plain HTTP on its port (nginx: 400) is no such sign.
  it.live(
    "https:// against a plain-http server is a TLS failure that says to try http://, after one attempt",
    () =>
      Effect.gen(function* () {
        for (const server of ["node", "workerd", "tls"] as const) {
          let plainRequests = 0
          const listener = createServer((socket) => {
            socket.once("data", (bytes) => {
              // A TLS ClientHello: a Node http server answers 400 and closes; workerd (and a slow TLS server) say nothing.
              if (bytes[0] === 0x16) {
                if (server === "node") socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
              }
              plainRequests++
              socket.end(
                server === "tls"
                  ? "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                  : "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
              )
            })
            socket.on("error", () => {})
          })
          const port = yield* Effect.promise(
            () =>
              new Promise<number>((resolve) =>
                listener.listen(0, "127.0.0.1", () => resolve((listener.address() as { port: number }).port))
              )
          )
          const started = Date.now()
          const error = yield* Effect.flip(
            Effect.flatMap(IcrAppsClient, (c) => c.listInstallations()).pipe(
              Effect.provide(
                IcrApps.layer({
                  appId: "1",
                  privateKey: keys.privatePem,
                  baseUrl: `https://127.0.0.1:${port}`,
                  retry: { attemptTimeout: "1500 millis", baseDelay: "10 millis", maxAttempts: 2 }
                })
              )
            )
          )
          const elapsed = Date.now() - started
          listener.close()
          if (server === "tls") {
            // Not plain HTTP: both attempts time out, as they would have without the question.
            expect(error).toMatchObject({ _tag: "TransportError", failure: "timeout" })
            continue
          }
          expect(error).toMatchObject({ _tag: "TransportError", failure: "tls" })
          expect(error.message).toBe(
            `GET https://127.0.0.1:${port}/app/installations: TLS failure (the server answers plain HTTP, not TLS: ` +
              `is the server plain http? try http://127.0.0.1:${port})`
          )
          // One attempt and one plain-HTTP question (workerd's silence: within a second), never a retry.
          expect(plainRequests).toBe(1)
          expect(elapsed).toBeLessThan(server === "workerd" ? 1_400 : 700)
        }
      }),
    15_000
  )
  it.effect("sends through its own HttpClient: an app's middleware on HttpClient.HttpClient never reaches it", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      const seen: Array<string | null> = []
      const spying: typeof fetch = (input, init) => {
        seen.push(new Request(input, init).headers.get("x-app-wide"))
        return issuer.fetch(input as Request, init)
      }
      const appWide = Layer.succeed(
        HttpClient.HttpClient,
        HttpClient.make(() => Effect.die("the app-wide client must not be used")).pipe(
          HttpClient.mapRequest(HttpClientRequest.setHeader("x-app-wide", "leaked"))
        )
      )
      yield* Effect.flatMap(IcrAppsClient, (c) => c.createAppAccessToken()).pipe(
        Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem, fetch: spying })),
        Effect.provide(appWide)
      )
      expect(seen).toEqual([null])
    })
  )
  it.effect("learns a server clock 5 minutes ahead once, keeps it, and every later call succeeds first time", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      issuer.setClockOffset(5 * 60_000)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const jwt = yield* AppJwt.AppJwt
        const refusals = () => countRequests(issuer, "POST", /^\/app\/accessTokens$/) - calls
        let calls = 0
        // Every 30 s for 20 minutes: the JWT signed on the local clock would expire on the server's.
        for (let i = 0; i < 40; i++) {
          yield* client.createAppAccessToken()
          calls++
          yield* TestClock.adjust("30 seconds")
        }
        expect(refusals()).toBe(1)
        // The Date header has whole seconds, so the learned offset is exact to within one.
        expect(Math.abs((yield* jwt.clockOffset) - 5 * 60_000)).toBeLessThan(1000)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("learns a server clock 10 minutes behind (iat_in_future) and retries once", () =>
    Effect.gen(function* () {
      const { issuer, appId } = yield* setup(keys)
      issuer.setClockOffset(-10 * 60_000)
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        yield* client.createAppAccessToken()
        yield* client.listInstallations()
        expect(countRequests(issuer, "POST", /^\/app\/accessTokens$/)).toBe(2)
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(1)
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
  it.effect("streams every installation once by cursor, stopping at the page without nextCursor", () =>
    Effect.gen(function* () {
      const { issuer, appId, installations } = yield* setup(keys, { installations: 25 })
      yield* Effect.gen(function* () {
        const client = yield* IcrAppsClient
        const all = yield* Stream.runCollect(client.installations({ pageSize: 10 }))
        expect(Chunk.toReadonlyArray(all).map((i) => i.id)).toEqual(installations.map((i) => i.id))
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(3)
        const exact = yield* Stream.runCollect(client.installations({ pageSize: 5 }))
        expect(exact.length).toBe(25)
        // A full last page carries no nextCursor, so no empty page is asked for.
        expect(countRequests(issuer, "GET", /^\/app\/installations$/)).toBe(3 + 5)
        const urls = issuer.requests({ route: "listInstallations" }).map((r) => new URL(r.url).searchParams)
        expect(urls.map((q) => [q.has("page"), q.has("cursor")])).toEqual([
          [false, false],
          [false, true],
          [false, true],
          ...Array.from({ length: 5 }, (_, i) => [false, i > 0])
        ])
      }).pipe(Effect.provide(sdkLayer(issuer, { appId, privateKey: keys.privatePem })))
    })
  )
})
