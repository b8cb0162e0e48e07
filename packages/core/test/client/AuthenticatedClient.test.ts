/**
 * The authenticated clients (SPEC §10) against the real issuer handlers in memory and a resource
 * that checks tokens with `requireToken`, all on a TestClock: the 401 refresh (exactly one mint),
 * `Retry-After`, no retry of a POST once sent, no credential off the origin, both pagination forms,
 * and the concurrency cap under 100 concurrent calls.
 */
import { inspect } from "node:util"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import { makeFakeIssuer } from "../../../testkit/src/FakeIssuer.js"
import { AuthenticatedClient, isRetryable } from "../../src/client/AuthenticatedClient.js"
import { nextLink } from "../../src/client/Pagination.js"
import { Internal, InvalidRequest, RateLimited } from "../../src/api/Problems.js"
import { makeRequireToken } from "../../src/resource/RequireToken.js"
import { TransportError } from "../../src/sdk/Client.js"
import * as IcrApps from "../../src/sdk/IcrApps.js"
import { createIcrAppsClient, IcrAppsFailure } from "../../src/sdk/Promise.js"
import { rsaKeyPair } from "../fixtures.js"

const keys = await rsaKeyPair()
const BASE = "https://icr.test"
const org = "0b9a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"

interface Seen {
  readonly method: string
  readonly url: string
  readonly authorization: string | null
  readonly version: string | null
}
type Resource = (request: Request) => Response | Promise<Response>

const problem = (status: number, code: string, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ type: `urn:icr:problem:${code}`, title: code, status, code, detail: code }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers }
  })

/** An issuer in memory on the test clock, a resource beside it on the same origin, and every request seen. */
const harness = (resource?: (guard: ReturnType<typeof makeRequireToken>) => Resource, requests = {}, live = false) =>
  Effect.gen(function* () {
    if (!live) yield* TestClock.setTime(Date.now())
    const clock = yield* Effect.clock
    const issuer = makeFakeIssuer({ now: () => clock.unsafeCurrentTimeMillis() })
    const app = yield* Effect.promise(() => issuer.arrange.createApp({ publicKey: keys.publicPem }))
    const installation = yield* Effect.promise(() =>
      issuer.arrange.install(app.id, {
        organizationId: org,
        permissions: { organization_inventory: "REQUEST", organization_projects: "VIEW" }
      })
    )
    const guard = makeRequireToken({ issuer })
    const handler =
      resource?.(guard) ??
      guard.route({ organizationId: org, permissions: { organization_inventory: "VIEW" } }, () =>
        Response.json({ items: ["apples"] })
      )
    const seen: Array<Seen> = []
    const resourceCalls = () => seen.filter((s) => !new URL(s.url).pathname.startsWith("/app/")).length
    const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init)
      seen.push({
        method: request.method,
        url: request.url,
        authorization: request.headers.get("authorization"),
        version: request.headers.get("x-icr-api-version")
      })
      const url = new URL(request.url)
      if (url.origin === BASE && url.pathname.startsWith("/app/")) return issuer.fetch(request)
      return handler(request)
    }
    const config = { appId: app.id, privateKey: keys.privatePem, baseUrl: BASE, fetch, requests }
    return { issuer, app, installation, seen, resourceCalls, fetch, config, layer: IcrApps.layer(config) }
  })

/**
 * Waits (in real time) until a fiber sleeps on the test clock for a retry: a sleep that ends within
 * 5 s (an attempt in flight sleeps too, on its 10 s timeout, and must not count).
 */
const untilSleeping = Effect.gen(function* () {
  const retrying = (wakes: Chunk.Chunk<number>, now: number) => Chunk.some(wakes, (at) => at - now <= 5_000)
  while (!retrying(yield* TestClock.sleeps(), yield* TestClock.currentTimeMillis)) {
    yield* Effect.promise(() => new Promise((r) => setTimeout(r, 1)))
  }
})

const inventory = (installationId: string) =>
  Effect.flatMap(AuthenticatedClient, (c) =>
    c.request("GET /organizations/{organizationId}/inventory", { installationId, params: { organizationId: org } })
  )

describe("refresh on 401 invalid_token", () => {
  it.effect("an operator revokeTokens between two calls: one re-mint, no error", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const id = h.installation.id
      yield* Effect.gen(function* () {
        expect(yield* inventory(id)).toEqual({ items: ["apples"] })
        expect(h.issuer.mints(id)).toBe(1)
        yield* Effect.promise(() => h.issuer.admin("POST", `/admin/installations/${id}/revokeTokens`))
        yield* TestClock.adjust("1 second")
        expect(yield* inventory(id)).toEqual({ items: ["apples"] })
        expect(h.issuer.mints(id)).toBe(2)
        expect(h.resourceCalls()).toBe(3) // ok, 401, ok after the refresh
      }).pipe(Effect.provide(h.layer))
    })
  )

  it.effect("a second 401 is the caller's typed error, after exactly one re-mint", () =>
    Effect.gen(function* () {
      const h = yield* harness(() => () => problem(401, "invalid_token"))
      const error = yield* Effect.flip(inventory(h.installation.id)).pipe(Effect.provide(h.layer))
      expect(error._tag).toBe("InvalidToken")
      expect(h.issuer.mints(h.installation.id)).toBe(2)
      expect(h.resourceCalls()).toBe(2)
      // Through the HttpClient itself: the second 401 is the answer, its body still readable.
      const response = yield* Effect.flatMap(AuthenticatedClient, (c) =>
        c.installation(h.installation.id).execute(HttpClientRequest.get("/projects"))
      ).pipe(Effect.provide(h.layer))
      expect(response.status).toBe(401)
      expect(yield* response.json).toMatchObject({ code: "invalid_token" })
    })
  )

  it.effect("concurrent 401s share one re-mint", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const id = h.installation.id
      yield* Effect.gen(function* () {
        yield* inventory(id)
        yield* Effect.promise(() => h.issuer.admin("POST", `/admin/installations/${id}/revokeTokens`))
        yield* TestClock.adjust("1 second")
        yield* Effect.all(
          Array.from({ length: 5 }, () => inventory(id)),
          { concurrency: "unbounded" }
        )
        expect(h.issuer.mints(id)).toBe(2)
      }).pipe(Effect.provide(h.layer))
    })
  )

  it.effect("revokeAccessToken evicts: the next call mints without meeting a 401", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const id = h.installation.id
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        yield* inventory(id)
        const used = h.seen
          .filter((s) => s.authorization?.startsWith("Bearer crs_"))
          .at(-1)!
          .authorization!.slice(7)
        yield* c.revokeAccessToken(used)
        yield* TestClock.adjust("1 second")
        yield* inventory(id)
        expect(h.issuer.mints(id)).toBe(2)
        expect(h.resourceCalls()).toBe(2)
      }).pipe(Effect.provide(h.layer))
    })
  )
})

describe("retries (Octokit semantics, on the test clock)", () => {
  it.effect("a 429 with Retry-After: 3 waits exactly 3 s of test time", () =>
    Effect.gen(function* () {
      let calls = 0
      const h = yield* harness(
        () => () => (++calls === 1 ? problem(429, "rate_limited", { "retry-after": "3" }) : Response.json({ ok: true }))
      )
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const fiber = yield* Effect.fork(c.request("GET /projects"))
        yield* untilSleeping
        yield* TestClock.adjust("2999 millis")
        expect(calls).toBe(1)
        yield* TestClock.adjust("1 millis")
        expect(yield* Fiber.join(fiber)).toEqual({ ok: true })
        expect(calls).toBe(2)
      }).pipe(Effect.provide(h.layer))
    })
  )

  it.effect("a POST answered 500 or 503 is not sent again (its body was sent); a GET is", () =>
    Effect.gen(function* () {
      const calls: Record<string, number> = { GET: 0, POST: 0 }
      const h = yield* harness(
        () => (request) =>
          ++calls[request.method]! === 1
            ? problem(503, "unavailable", { "retry-after": "1" })
            : Response.json({ ok: true })
      )
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const error = yield* Effect.flip(c.request("POST /things", { body: { name: "x" } }))
        expect(error._tag).toBe("Unavailable")
        expect(calls.POST).toBe(1)
        const fiber = yield* Effect.fork(c.request("GET /things"))
        yield* untilSleeping
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(fiber)).toEqual({ ok: true })
        expect(calls.GET).toBe(2)
      }).pipe(Effect.provide(h.layer))
    })
  )

  it.effect("a POST is sent again when nothing was sent (connection refused), never after a reset", () =>
    Effect.gen(function* () {
      let calls = 0
      let failure = "ECONNREFUSED"
      const h = yield* harness(() => () => {
        if (++calls % 2 === 1) throw new TypeError("fetch failed", { cause: { code: failure } })
        return Response.json({ ok: true })
      })
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const fiber = yield* Effect.fork(c.request("POST /things", { body: {} }))
        yield* untilSleeping
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(fiber)).toEqual({ ok: true })
        expect(calls).toBe(2)
        failure = "ECONNRESET"
        const error = yield* Effect.flip(c.request("POST /things", { body: {} }))
        expect(error).toBeInstanceOf(TransportError)
        expect(calls).toBe(3)
      }).pipe(Effect.provide(h.layer))
    })
  )

  it("isRetryable tells transient failures from final ones", () => {
    expect(isRetryable(new RateLimited({ detail: "d", retryAfter: 1 }))).toBe(true)
    expect(isRetryable(new Internal({ detail: "d" }))).toBe(true)
    expect(isRetryable(new TransportError({ method: "GET", url: "u", failure: "refused", cause: "x" }))).toBe(true)
    expect(isRetryable(new TransportError({ method: "GET", url: "u", failure: "tls", cause: "x" }))).toBe(false)
    expect(isRetryable(new InvalidRequest({ detail: "d" }))).toBe(false)
    expect(isRetryable(new Error("other"))).toBe(false)
  })
})

describe("credentials", () => {
  it.effect(
    "the app client: App JWT on /app/*, the app token elsewhere and on the token routes; the version header always",
    () =>
      Effect.gen(function* () {
        const h = yield* harness(() => () => Response.json([]))
        yield* Effect.gen(function* () {
          const c = yield* AuthenticatedClient
          yield* c.request("GET /projects")
          yield* c.request("GET /app/installations")
          yield* c.request("GET /app/installations/token")
        }).pipe(Effect.provide(h.layer))
        const projects = h.seen.find((s) => s.url === `${BASE}/projects`)!
        expect(projects.authorization).toMatch(/^Bearer crs_[0-9a-f]{48}$/)
        expect(projects.version).toBe("2023-06-16")
        expect(
          h.seen.find((s) => s.url.startsWith(`${BASE}/app/installations?`) || s.url === `${BASE}/app/installations`)!
            .authorization
        ).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/)
        expect(h.seen.find((s) => s.url === `${BASE}/app/installations/token`)!.authorization).toBe(
          projects.authorization
        )
      })
  )

  it.effect("no credential to another origin: an absolute URL off the base, or a redirect that leaves it", () =>
    Effect.gen(function* () {
      const h = yield* harness(() => (request) => {
        const url = new URL(request.url)
        if (url.origin !== BASE) return Response.json({ elsewhere: true })
        if (url.pathname === "/hop") return new Response(null, { status: 302, headers: { location: "/here" } })
        if (url.pathname === "/away")
          return new Response(null, { status: 302, headers: { location: "https://cdn.other.test/x" } })
        if (url.pathname === "/back") {
          return new Response(null, { status: 307, headers: { location: "https://cdn.other.test/bounce" } })
        }
        return Response.json({ here: true })
      })
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const client = c.installation(h.installation.id)
        const text = (url: string) => Effect.flatMap(client.execute(HttpClientRequest.get(url)), (r) => r.json)
        expect(yield* text("/hop")).toEqual({ here: true })
        expect(yield* text("/away")).toEqual({ elsewhere: true })
        expect(yield* text("https://cdn.other.test/direct")).toEqual({ elsewhere: true })
        expect(yield* c.request("GET /away", { installationId: h.installation.id })).toEqual({ elsewhere: true })
      }).pipe(Effect.provide(h.layer))
      const at = (url: string) => h.seen.filter((s) => s.url === url)
      expect(at(`${BASE}/hop`)[0]!.authorization).toMatch(/^Bearer crs_/)
      expect(at(`${BASE}/here`)[0]!.authorization).toMatch(/^Bearer crs_/) // a same-origin redirect keeps it
      expect(at("https://cdn.other.test/x").map((s) => s.authorization)).toEqual([null, null])
      expect(at("https://cdn.other.test/direct")[0]!.authorization).toBeNull()
    })
  )
})

describe("a 401 from where the credential was not sent", () => {
  it.effect("a redirect to another origin that answers 401 invalid_token evicts nothing and mints nothing", () =>
    Effect.gen(function* () {
      const h = yield* harness(() => (request) => {
        const url = new URL(request.url)
        if (url.origin !== BASE) return problem(401, "invalid_token")
        if (url.pathname === "/away")
          return new Response(null, { status: 302, headers: { location: "https://evil.test/401" } })
        return Response.json({ here: true })
      })
      const mints = () => h.seen.filter((s) => s.method === "POST" && s.url.endsWith("/accessTokens")).length
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const client = c.installation(h.installation.id)
        expect(yield* Effect.flatMap(client.execute(HttpClientRequest.get("/here")), (r) => r.json)).toEqual({
          here: true
        })
        expect(mints()).toBe(1)
        const away = yield* client.execute(HttpClientRequest.get("/away"))
        expect(away.status).toBe(401)
        yield* client.execute(HttpClientRequest.get("/here"))
      }).pipe(Effect.provide(h.layer))
      expect(mints()).toBe(1)
      const tokens = new Set(
        h.seen.filter((s) => s.url.startsWith(BASE) && !s.url.includes("/app/")).map((s) => s.authorization)
      )
      expect(tokens.size).toBe(1)
    })
  )
})

describe("pagination", () => {
  it.effect("a server that names a page already walked ends the walk instead of looping it", () =>
    Effect.gen(function* () {
      const h = yield* harness(() => (request) => {
        const page = Number(new URL(request.url).searchParams.get("page") ?? "0")
        // Page 2 names page 0 again; the Link header is otherwise well formed.
        return Response.json([`p${page}`], { headers: { link: `<${BASE}/loop?page=${(page + 1) % 3}>; rel="next"` } })
      })
      const got = yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        return Chunk.toArray(yield* Stream.runCollect(c.paginate("GET /loop?page=0")))
      }).pipe(Effect.provide(h.layer))
      expect(got).toEqual(["p0", "p1", "p2"])
    })
  )

  it.effect('follows nextCursor and Link: rel="next" alike, and walks the issuer\'s own listing', () =>
    Effect.gen(function* () {
      const h = yield* harness(() => (request) => {
        const url = new URL(request.url)
        if (url.pathname === "/cursored") {
          const at = Number(url.searchParams.get("cursor") ?? "0")
          return Response.json({ items: [at * 2, at * 2 + 1], ...(at < 2 ? { nextCursor: String(at + 1) } : {}) })
        }
        const page = Number(url.searchParams.get("page") ?? "0")
        return Response.json(page < 3 ? [`p${page}`] : [], {
          headers:
            page < 2
              ? { link: `<${BASE}/linked?page=${page + 1}>; rel="next", <${BASE}/linked?page=0>; rel="first"` }
              : {}
        })
      })
      for (let i = 0; i < 4; i++) yield* Effect.promise(() => h.issuer.arrange.install(h.app.id))
      yield* Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        expect(Chunk.toArray(yield* Stream.runCollect(c.paginate("GET /cursored")))).toEqual([0, 1, 2, 3, 4, 5])
        expect(Chunk.toArray(yield* Stream.runCollect(c.paginate("GET /linked")))).toEqual(["p0", "p1", "p2"])
        const all = yield* Stream.runCollect(c.paginate("GET /app/installations", { query: { limit: 2 } }))
        expect(Chunk.size(all)).toBe(5)
        const each = yield* Stream.runCollect(c.eachInstallation())
        expect(Chunk.size(each)).toBe(5)
      }).pipe(Effect.provide(h.layer))
      expect(h.seen.some((s) => s.url.endsWith("/cursored?cursor=2"))).toBe(true)
    })
  )

  it("reads every rel=next spelling", () => {
    expect(nextLink('<https://a/x?page=2>; rel="next"')).toBe("https://a/x?page=2")
    expect(nextLink('<https://a/p>; rel="prev", <https://a/n>; rel=next')).toBe("https://a/n")
    expect(nextLink('<https://a/n>; title="x"; rel="last next"')).toBe("https://a/n")
    expect(nextLink('<https://a/p>; rel="prev"')).toBeUndefined()
    expect(nextLink(undefined)).toBeUndefined()
    // A header past 8 KiB is not read (an unclosed "<" repeated made the scan quadratic).
    expect(nextLink(`${"<x".repeat(20_000)}`)).toBeUndefined()
    expect(nextLink(`<https://a/n>; rel="next"${" ".repeat(9000)}`)).toBeUndefined()
  })
})

describe("concurrency cap", () => {
  it.effect("holds under 100 concurrent calls: never more than the cap in flight per token, all answered", () =>
    Effect.gen(function* () {
      let inFlight = 0
      let most = 0
      const h = yield* harness(
        () => async () => {
          most = Math.max(most, ++inFlight)
          await new Promise((r) => setTimeout(r, 1))
          inFlight--
          return Response.json({ ok: true })
        },
        { concurrency: 10 }
      )
      const results = yield* Effect.all(
        Array.from({ length: 100 }, () =>
          Effect.flatMap(AuthenticatedClient, (c) => c.request("GET /projects", { installationId: h.installation.id }))
        ),
        { concurrency: "unbounded" }
      ).pipe(Effect.provide(h.layer))
      expect(results).toHaveLength(100)
      expect(most).toBe(10)
      expect(h.issuer.mints(h.installation.id)).toBe(1)
    })
  )
})

describe("the Promise facade", () => {
  it("request resolves to the JSON body, or rejects with IcrAppsFailure (code, status); paginate and eachInstallation iterate", async () => {
    const h = await Effect.runPromise(
      harness(
        (guard) => (request) => {
          const url = new URL(request.url)
          if (url.pathname === "/projects") return guard.route({}, () => Response.json({ items: ["p1"] }))(request)
          return guard.route(
            {
              organizationId: org,
              permissions: { organization_inventory: request.method === "POST" ? "REQUEST" : "VIEW" }
            },
            () => Response.json({ items: ["apples"] })
          )(request)
        },
        {},
        true
      )
    )
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    const route = "GET /organizations/{org}/inventory"
    expect(await icr.request(route, { installationId: id, params: { org } })).toEqual({ items: ["apples"] })
    const narrowed = { installationId: id, params: { org }, permissions: { organization_inventory: "VIEW" as const } }
    expect(await icr.request(route, narrowed)).toEqual({ items: ["apples"] })
    const refused = await icr.request("POST /organizations/{org}/inventory", narrowed).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(IcrAppsFailure)
    expect(refused).toMatchObject({ _tag: "InsufficientPermissions", code: "insufficient_permissions", status: 403 })
    const items: Array<unknown> = []
    for await (const item of icr.paginate("GET /projects")) items.push(item)
    expect(items).toEqual(["p1"])
    const orgs: Array<unknown> = []
    for await (const { installation, request } of icr.eachInstallation()) {
      orgs.push(installation.organizationId, await request("GET /projects"))
    }
    expect(orgs).toEqual([org, { items: ["p1"] }])
    // The token is revoked at the issuer and forgotten here: the next call mints instead of meeting a 401.
    const token = await icr.getInstallationToken(id)
    const [calls, mints] = [h.resourceCalls(), h.issuer.mints(id)]
    await icr.revokeAccessToken(token)
    expect(await icr.request("GET /projects", { installationId: id })).toEqual({ items: ["p1"] })
    expect([h.resourceCalls() - calls, h.issuer.mints(id) - mints]).toEqual([1, 1])
    await icr.dispose()
  })
})

describe("spans", () => {
  it.effect("icr.request names method, route template, status and installation; no span carries a token or JWT", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const live = yield* Effect.tracer
      const spans: Array<Tracer.Span> = []
      const recording = Tracer.make({
        span: (...args: Parameters<Tracer.Tracer["span"]>) => {
          const span = live.span(...args)
          spans.push(span)
          return span
        },
        context: live.context
      })
      yield* inventory(h.installation.id).pipe(Effect.provide(h.layer), Effect.withTracer(recording))
      const request = spans.find((s) => s.name === "icr.request")!
      expect(Object.fromEntries(request.attributes)).toMatchObject({
        "http.request.method": "GET",
        "icr.route": "GET /organizations/{id}/inventory",
        "http.response.status_code": 200,
        "icr.installation_id": h.installation.id
      })
      expect(spans.some((s) => s.name === "icr.token")).toBe(true)
      const everything = JSON.stringify(spans.map((s) => [s.name, Object.fromEntries(s.attributes)]))
      expect(everything).not.toMatch(/crs_[0-9a-f]{8}|eyJ[\w-]+\.[\w-]+/)
    })
  )
})

describe("the Promise facade's fast path (a cached token, GET, no fiber)", () => {
  it("shares the concurrency cap with the Effect path, and carries on from a 429 or a 401 it got", async () => {
    let inFlight = 0
    let most = 0
    let script: Array<(request: Request) => Response | Promise<Response>> = []
    const h = await Effect.runPromise(
      harness(
        (guard) => async (request) => {
          most = Math.max(most, ++inFlight)
          await new Promise((r) => setTimeout(r, 1))
          inFlight--
          const next = script.shift()
          if (next !== undefined) return next(request)
          return guard.route({}, () => Response.json({ ok: true }))(request)
        },
        { concurrency: 10 },
        true
      )
    )
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.request("GET /projects", { installationId: id }) // mints, and builds the clients
    const results = await Promise.all(
      Array.from({ length: 100 }, () => icr.request("GET /projects", { installationId: id }))
    )
    expect(results.every((r) => JSON.stringify(r) === '{"ok":true}')).toBe(true)
    expect(most).toBe(10)

    // A 429 answered to the fast path: waited out (Retry-After: 1) and sent once more, not twice.
    const before = h.resourceCalls()
    script = [() => problem(429, "rate_limited", { "retry-after": "1" })]
    const started = Date.now()
    expect(await icr.request("GET /projects", { installationId: id })).toEqual({ ok: true })
    expect(Date.now() - started).toBeGreaterThanOrEqual(950)
    expect(h.resourceCalls() - before).toBe(2)

    // An operator revokeTokens: the fast path's 401 leads to one re-mint and one more call.
    const mints = h.issuer.mints(id)
    await h.issuer.admin("POST", `/admin/installations/${id}/revokeTokens`)
    await new Promise((r) => setTimeout(r, 5))
    expect(await icr.request("GET /projects", { installationId: id })).toEqual({ ok: true })
    expect(h.issuer.mints(id) - mints).toBe(1)
    await icr.dispose()
  })
})

describe("the Effect request's fast path", () => {
  it("is taken only when nothing records spans: with a tracer installed, every call has its icr.request span", async () => {
    const h = await Effect.runPromise(harness(undefined, {}, true))
    const spans: Array<string> = []
    const program = Effect.gen(function* () {
      const live = yield* Effect.tracer
      const recording = Tracer.make({
        span: (...args: Parameters<Tracer.Tracer["span"]>) => {
          spans.push(args[0])
          return live.span(...args)
        },
        context: live.context
      })
      const c = yield* AuthenticatedClient
      const call = c.request("GET /organizations/{organizationId}/inventory", {
        installationId: h.installation.id,
        params: { organizationId: org }
      })
      expect(yield* call).toEqual({ items: ["apples"] }) // untraced: mints, then may go fast
      expect(yield* call).toEqual({ items: ["apples"] })
      yield* Effect.withTracer(Effect.zip(call, call), recording)
    })
    await Effect.runPromise(program.pipe(Effect.provide(h.layer)))
    expect(spans.filter((name) => name === "icr.request")).toHaveLength(2)
  })
})

describe("the fast path's fallbacks and what a request may name", () => {
  it("a 401 to concurrent fast-path GETs refreshes the token they sent: one re-mint, not one per late 401", async () => {
    const h = await Effect.runPromise(
      harness(
        (guard) => async (request) => {
          await new Promise((r) => setTimeout(r, 20))
          return guard.route({}, () => Response.json({ ok: true }))(request)
        },
        { concurrency: 100 },
        true
      )
    )
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.request("GET /projects", { installationId: id }) // mints, and builds the clients
    const mints = h.issuer.mints(id)
    await h.issuer.admin("POST", `/admin/installations/${id}/revokeTokens`)
    await new Promise((r) => setTimeout(r, 5))
    const results = await Promise.all(
      Array.from({ length: 20 }, () => icr.request("GET /projects", { installationId: id }))
    )
    expect(results.every((r) => JSON.stringify(r) === '{"ok":true}')).toBe(true)
    expect(h.issuer.mints(id) - mints).toBe(1)
    await icr.dispose()
  })

  it("a redirect answered to the fast path is sent once more through the Effect path, not twice more", async () => {
    const h = await Effect.runPromise(
      harness(
        (guard) => (request) =>
          new URL(request.url).pathname === "/hop"
            ? new Response(null, { status: 302, headers: { location: "https://elsewhere.test/landing" } })
            : new URL(request.url).origin === BASE
              ? guard.route({}, () => Response.json({ ok: true }))(request)
              : Response.json({ landed: true }),
        {},
        true
      )
    )
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.request("GET /projects", { installationId: id })
    const from = h.seen.length
    expect(await icr.request("GET /hop", { installationId: id })).toEqual({ landed: true })
    const sent = h.seen.slice(from)
    expect(sent.map((s) => s.url)).toEqual([`${BASE}/hop`, `${BASE}/hop`, "https://elsewhere.test/landing"])
    expect(sent[2]!.authorization).toBeNull()
    await icr.dispose()
  })

  it("a path parameter . or .. (however escaped) is a typed InvalidRequestArgument, sent nowhere", async () => {
    const h = await Effect.runPromise(harness(undefined, {}, true))
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.request("GET /organizations/{organizationId}/inventory", {
      installationId: id,
      params: { organizationId: org }
    })
    const from = h.seen.length
    for (const value of ["..", ".", "%2e%2e", "%2E", ".%2e"]) {
      const failure = await icr
        .request("GET /organizations/{organizationId}/inventory", {
          installationId: id,
          params: { organizationId: value }
        })
        .catch((e: unknown) => e)
      expect(failure).toBeInstanceOf(IcrAppsFailure)
      expect([value, (failure as IcrAppsFailure)._tag]).toEqual([value, "InvalidRequestArgument"])
    }
    // The app's credential too (no installation), and the Effect API: request and paginate.
    const appCall = await icr
      .request("GET /{a}/{b}/app/installations", { params: { a: "..", b: ".." } })
      .catch((e) => e)
    expect((appCall as IcrAppsFailure)._tag).toBe("InvalidRequestArgument")
    const effect = await Effect.runPromise(
      Effect.gen(function* () {
        const c = yield* AuthenticatedClient
        const opts = { installationId: id, params: { organizationId: ".." } }
        return [
          yield* Effect.flip(c.request("GET /organizations/{organizationId}/inventory", opts)),
          yield* Effect.flip(Stream.runCollect(c.paginate("GET /organizations/{organizationId}/inventory", opts)))
        ]
      }).pipe(Effect.provide(h.layer))
    )
    expect(effect.map((e) => e._tag)).toEqual(["InvalidRequestArgument", "InvalidRequestArgument"])
    expect(h.seen.slice(from)).toEqual([])
    // Legitimate values with dots pass.
    const dotted = await icr
      .request("GET /organizations/{organizationId}/inventory", {
        installationId: id,
        params: { organizationId: "a..b" }
      })
      .catch((e: unknown) => e)
    expect((dotted as IcrAppsFailure)._tag).not.toBe("InvalidRequestArgument")
    await icr.dispose()
  })

  it("the fast path decides the App JWT on the path as sent: /x/../app/installations carries the JWT, not a token", async () => {
    const h = await Effect.runPromise(harness(undefined, {}, true))
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.request("GET /organizations/{organizationId}/inventory", {
      installationId: id,
      params: { organizationId: org }
    }) // a cached installation token: the fast path would qualify
    const from = h.seen.length
    await icr.request("GET /x/../app/installations", { installationId: id })
    const sent = h.seen.slice(from).filter((s) => new URL(s.url).pathname === "/app/installations")
    expect(sent).toHaveLength(1)
    expect(sent[0]!.authorization).toMatch(/^Bearer eyJ/)
    await icr.dispose()
  })

  it("a custom fetch's error text quoting the credential is redacted in the TransportError, on both paths", async () => {
    const h = await Effect.runPromise(
      harness(
        () => (request) => {
          throw new TypeError(
            `fetch failed for ${request.url} with ${request.headers.get("authorization")} (crs_0123abcd, eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln)`
          )
        },
        { maxAttempts: 1 },
        true
      )
    )
    const icr = createIcrAppsClient(h.config)
    const id = h.installation.id
    await icr.getInstallationToken(id) // cached: the Promise call takes the fast path first
    const promise = await icr.request("GET /projects", { installationId: id }).catch((e: unknown) => e)
    expect((promise as IcrAppsFailure)._tag).toBe("TransportError")
    const effect = await Effect.runPromise(
      Effect.flatMap(AuthenticatedClient, (c) => Effect.flip(c.request("GET /projects", { installationId: id }))).pipe(
        Effect.provide(h.layer)
      )
    )
    expect(effect._tag).toBe("TransportError")
    for (const failure of [promise, effect]) {
      const all = `${inspect(failure, { depth: 10, showHidden: true })}${JSON.stringify(failure)}${String((failure as Error).message)}`
      expect(all).toContain("fetch failed for")
      expect(all).not.toMatch(/crs_[0-9a-f]{4}|eyJ[\w-]+\.[\w-]+|Bearer (?!\[redacted\])/)
    }
    await icr.dispose()
  })

  it("the SDK's own calls redact it too: a custom fetch quoting the App JWT of a mint", async () => {
    const h = await Effect.runPromise(harness(undefined, {}, true))
    const icr = createIcrAppsClient({
      ...h.config,
      fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
        const request = new Request(input, init)
        throw new TypeError(`fetch failed with ${request.headers.get("authorization")}`)
      }
    })
    const failure = await icr.createAppAccessToken().catch((e: unknown) => e)
    expect((failure as IcrAppsFailure)._tag).toBe("TransportError")
    const all = `${inspect(failure, { depth: 10, showHidden: true })}${JSON.stringify(failure)}${String((failure as Error).message)}`
    expect(all).toContain("fetch failed with")
    expect(all).not.toMatch(/eyJ[\w-]+\.[\w-]+|Bearer (?!\[redacted\])/)
    await icr.dispose()
  })
})
