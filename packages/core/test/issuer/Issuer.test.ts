import { afterEach, describe, expect, it, vi } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as AuditLog from "../../src/issuer/AuditLog.js"
import * as Entropy from "../../src/issuer/Entropy.js"
import { MIN_ADMIN_TOKEN_LENGTH, makeWebHandler } from "../../src/issuer/Issuer.js"
import * as Registry from "../../src/issuer/Registry.js"
import * as AdminClient from "../../src/sdk/AdminClient.js"
import * as RateLimiter from "../../src/issuer/RateLimiter.js"
import { rsaKeyPair, signRs256 } from "../fixtures.js"

const storage = Layer.mergeAll(Registry.layerMemory, Entropy.layer)

/** `GET /admin/apps` with `token`, against an issuer configured with `adminToken`. */
const listApps = async (adminToken: string | undefined, token: string) => {
  const issuer = makeWebHandler(storage, {
    adminToken: adminToken === undefined ? undefined : Redacted.make(adminToken)
  })
  try {
    const res = await issuer.handler(
      new Request("http://icr.test/admin/apps", { headers: { authorization: `Bearer ${token}` } })
    )
    return { status: res.status, body: (await res.json()) as { code?: string; detail?: string } }
  } finally {
    await issuer.dispose()
  }
}

/** Everything the issuer wrote to the console while `run` ran. */
const consoleOf = async <A>(run: () => Promise<A>): Promise<{ result: A; lines: Array<string> }> => {
  const lines: Array<string> = []
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: Array<unknown>) => {
      lines.push(args.map(String).join(" "))
    })
  }
  const result = await run()
  return { result, lines }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe("ADMIN_TOKEN shorter than 32 characters counts as not configured (SPEC §5)", () => {
  it("answers 403 admin_disabled even to the right token, and logs why without the token", async () => {
    const short = "s3cret-but-only-31-characters!!"
    expect(short).toHaveLength(MIN_ADMIN_TOKEN_LENGTH - 1)
    const { result, lines } = await consoleOf(() => listApps(short, short))
    expect(result.status).toBe(403)
    expect(result.body.code).toBe("admin_disabled")
    expect(result.body.detail).not.toContain(short)
    const why = lines.filter((line) => /ADMIN_TOKEN is shorter than 32 characters/.test(line))
    expect(why).toHaveLength(1)
    expect(lines.join("\n")).not.toContain(short)
  })
  it("serves the operator API with a token of 32 characters or more, and logs nothing about it", async () => {
    const long = "x".repeat(MIN_ADMIN_TOKEN_LENGTH)
    const { result, lines } = await consoleOf(() => listApps(long, long))
    expect(result.status).toBe(200)
    expect(lines.join("\n")).not.toMatch(/ADMIN_TOKEN/)
    expect((await listApps(long, `${long}x`)).body.code).toBe("invalid_token")
  })
  it("answers 403 admin_disabled with no token configured, as before", async () => {
    expect((await listApps(undefined, "anything")).body.code).toBe("admin_disabled")
    expect((await listApps("", "whatever")).body.code).toBe("admin_disabled")
  })
})

describe("the kill-switch endpoints are in the one definition (SPEC §5)", () => {
  it("so the derived AdminClient reaches them: 204, and 404 as typed errors", async () => {
    const admin = "x".repeat(MIN_ADMIN_TOKEN_LENGTH)
    const issuer = makeWebHandler(storage, { adminToken: Redacted.make(admin), auditLog: AuditLog.layerMemory([]) })
    const keys = await rsaKeyPair()
    const program = Effect.gen(function* () {
      const client = yield* AdminClient.AdminClient
      const app = yield* client.createApp({ payload: { name: "killable", permissions: {}, publicKey: keys.publicPem } })
      const installation = yield* client.createInstallation({
        payload: { appId: app.id, organizationId: crypto.randomUUID(), permissions: {} }
      })
      yield* client.revokeInstallationTokens({ path: { installationId: installation.id } })
      yield* client.revokeAppTokens({ path: { appId: app.id } })
      const noInstallation = yield* Effect.flip(
        client.revokeInstallationTokens({ path: { installationId: crypto.randomUUID() } })
      )
      const noApp = yield* Effect.flip(client.revokeAppTokens({ path: { appId: "987654321" } }))
      return [noInstallation._tag, noApp._tag]
    })
    const tags = await Effect.runPromise(
      program.pipe(
        Effect.provide(
          AdminClient.layer({
            baseUrl: "http://icr.test",
            adminToken: admin,
            fetch: ((input: RequestInfo | URL, init?: RequestInit) =>
              issuer.handler(new Request(input, init))) as typeof fetch
          })
        )
      )
    )
    await issuer.dispose()
    expect(tags).toEqual(["InstallationNotFound", "AppNotFound"])
  })
})

describe("the apps router and the one built on demand answer as one router (issue 12)", () => {
  const admin = "y".repeat(MIN_ADMIN_TOKEN_LENGTH)
  const call = async (
    handler: (request: Request) => Promise<Response>,
    method: string,
    path: string,
    token?: string
  ) => {
    const res = await handler(
      new Request(`http://icr.test${path}`, {
        method,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` }
      })
    )
    const text = await res.text()
    return { status: res.status, allow: res.headers.get("allow"), code: text ? JSON.parse(text).code : undefined }
  }

  it("reaches the operator API and /openapi.json however the path is spelt, first request or not", async () => {
    for (const first of ["/%61dmin/apps", "/ADMIN/apps", "//admin/apps", "/app/installations/token"]) {
      const issuer = makeWebHandler(storage, { adminToken: Redacted.make(admin) })
      const at = (method: string, path: string, token?: string) => call(issuer.handler, method, path, token)
      await at("GET", first, admin)
      expect((await at("GET", "/%61dmin/apps", admin)).status).toBe(200)
      expect((await at("GET", "/ADMIN/apps", admin)).status).toBe(200)
      expect((await at("GET", "//admin/apps/", admin)).status).toBe(200)
      expect((await at("GET", "/admin/apps")).code).toBe("missing_credentials")
      expect((await at("GET", "/OPENAPI.JSON")).status).toBe(200)
      expect((await at("GET", "/open%61pi.json")).status).toBe(200)
      expect((await at("HEAD", "/admin/apps", admin)).status).toBe(200)
      expect((await at("GET", "/healthz/")).status).toBe(200)
      await issuer.dispose()
    }
  })

  it("answers 404 and 405 with Allow across both route sets", async () => {
    const issuer = makeWebHandler(storage, { adminToken: Redacted.make(admin) })
    const at = (method: string, path: string) => call(issuer.handler, method, path)
    expect(await at("POST", "/healthz")).toEqual({ status: 405, allow: "GET, HEAD", code: "method_not_allowed" })
    expect(await at("PUT", "/admin/apps")).toEqual({
      status: 405,
      allow: "GET, HEAD, POST",
      code: "method_not_allowed"
    })
    expect(await at("GET", "/app/accessTokens")).toEqual({ status: 405, allow: "POST", code: "method_not_allowed" })
    expect(await at("GET", "/administrator")).toEqual({ status: 404, allow: null, code: "not_found" })
    expect(await at("GET", "/nowhere%20")).toEqual({ status: 404, allow: null, code: "not_found" })
    await issuer.dispose()
  })
})

describe("what a 404, a request id and a failed start say (security review, new-user trial)", () => {
  it("a 404 does not repeat the path, which may hold a secret in any encoding", async () => {
    const admin = "a-very-secret-admin-token-0123456789abcdef"
    const issuer = makeWebHandler(storage, { adminToken: Redacted.make(admin) })
    const hex = "ab".repeat(24)
    for (const path of [`/x/crs_${hex}`, `/x%2Fcrs%5f${hex}`, `/x/%2563rs_${hex}`, `/x/${admin}`]) {
      const res = await issuer.handler(new Request(`http://icr.test${path}`))
      const text = await res.text()
      expect(res.status, path).toBe(404)
      expect(JSON.parse(text).detail).toBe("No route for GET at this path")
      expect(text, path).not.toContain(hex)
      expect(text, path).not.toContain(admin)
    }
    await issuer.dispose()
  })
  it("never echoes or audits an x-request-id that looks like a credential; keeps a sane one", async () => {
    const issuer = makeWebHandler(storage)
    const idOf = async (given: string) =>
      (
        await issuer.handler(new Request("http://icr.test/nowhere", { headers: { "x-request-id": given } }))
      ).headers.get("x-request-id")
    expect(await idOf("build-42.step:7")).toBe("build-42.step:7")
    for (const credential of [`crs_${"ab".repeat(24)}`, "trace-CRS_0123", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"]) {
      const echoed = await idOf(credential)
      expect(echoed).not.toBe(credential)
      expect(echoed).toMatch(/^[0-9a-f-]{36}$/)
    }
    await issuer.dispose()
  })
  it("refuses a declared body over 16 KiB with 413 whatever the method, before reading it", async () => {
    const issuer = makeWebHandler(storage)
    for (const method of ["GET", "DELETE", "POST"]) {
      const res = await issuer.handler(
        new Request("http://icr.test/app/installations", { method, headers: { "content-length": "16385" } })
      )
      expect(res.status, method).toBe(413)
      expect(((await res.json()) as { code: string }).code).toBe("payload_too_large")
    }
    await issuer.dispose()
  })
  it("answers 500 internal when the issuer cannot be built, logs only the failure's class, and tries again", async () => {
    let attempts = 0
    const flaky = Layer.mergeAll(
      Layer.effect(
        Registry.Registry,
        Effect.suspend(() =>
          attempts++ === 0
            ? Effect.die(new Error("secret-configuration-value"))
            : Effect.provide(Registry.Registry, Registry.layerMemory)
        )
      ),
      Entropy.layer
    )
    const issuer = makeWebHandler(flaky as typeof storage)
    const { result, lines } = await consoleOf(async () => {
      const res = await issuer.handler(new Request("http://icr.test/app/installations/token"))
      return { status: res.status, body: await res.text() }
    })
    expect(result.status).toBe(500)
    expect(JSON.parse(result.body)).toMatchObject({ code: "internal", detail: "Internal error" })
    expect(lines.join("\n")).not.toContain("secret-configuration-value")
    expect(lines.join("\n")).toContain("could not be built")
    // The next request builds again, and this time the issuer answers.
    expect((await issuer.handler(new Request("http://icr.test/app/installations/token"))).status).toBe(401)
    expect(attempts).toBe(2)
    await issuer.dispose()
  })
})

describe("a mint reads its installation with the app's keys, in one registry read (issue 16)", () => {
  it("for the route's installationId as the router decoded it; a malformed one is not read", async () => {
    const calls: Array<string> = []
    const counted = Layer.effect(
      Registry.Registry,
      Effect.map(Registry.Registry, (inner) => {
        const wrapped: Record<string, unknown> = {}
        for (const [name, f] of Object.entries(inner)) {
          wrapped[name] = (...args: Array<unknown>) => {
            // Counted: storage reads and writes (where a token will be stored is neither).
            if (name !== "tokenShard") calls.push(name)
            return (f as (...a: Array<unknown>) => unknown)(...args)
          }
        }
        return wrapped as unknown as typeof inner
      })
    ).pipe(Layer.provide(Registry.layerMemory))
    const admin = "z".repeat(MIN_ADMIN_TOKEN_LENGTH)
    const issuer = makeWebHandler(Layer.mergeAll(counted, Entropy.layer), {
      adminToken: Redacted.make(admin),
      auditLog: AuditLog.layerMemory([])
    })
    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await issuer.handler(
        new Request(`http://icr.test${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        })
      )
      return { status: res.status, json: (await res.json()) as Record<string, any> }
    }
    const keys = await rsaKeyPair()
    const grant = { organization_info: "VIEW" }
    const mine = await call("POST", "/admin/apps", admin, {
      name: "reads",
      permissions: grant,
      publicKey: keys.publicPem
    })
    const other = await call("POST", "/admin/apps", admin, {
      name: "other",
      permissions: grant,
      publicKey: keys.publicPem
    })
    const installation = (
      await call("POST", "/admin/installations", admin, {
        appId: mine.json.id,
        organizationId: crypto.randomUUID(),
        permissions: grant
      })
    ).json.id as string
    const now = Math.floor(Date.now() / 1000)
    const jwt = await signRs256(keys.privateKey, { iss: mine.json.id, iat: now - 60, exp: now + 540 })
    const otherJwt = await signRs256(keys.privateKey, { iss: other.json.id, iat: now - 60, exp: now + 540 })
    const readsOf = async (method: string, path: string, token: string, status: number) => {
      calls.length = 0
      expect((await call(method, path, token)).status, `${method} ${path}`).toBe(status)
      return [...calls]
    }
    const mint = `/app/installations/${installation}/accessTokens`
    expect(await readsOf("POST", mint, jwt, 200)).toEqual(["getAppWithInstallation", "putToken"])
    expect(await readsOf("POST", `/app/installations/${installation.toUpperCase()}/accessTokens`, jwt, 200)).toEqual([
      "getAppWithInstallation",
      "putToken"
    ])
    expect(
      await readsOf("POST", `/app/installations/${installation.replace(/-/g, "%2D")}/accessTokens`, jwt, 200)
    ).toEqual(["getAppWithInstallation", "putToken"])
    expect(await readsOf("GET", `/app/installations/${installation}`, jwt, 200)).toEqual(["getAppWithInstallation"])
    // Another app's installation: read the same way, answered as a missing one.
    expect(await readsOf("POST", mint, otherJwt, 404)).toEqual(["getAppWithInstallation"])
    expect(await readsOf("POST", "/app/installations/not-a-uuid/accessTokens", jwt, 400)).toEqual(["getApp"])
    expect(await readsOf("POST", "/app/accessTokens", jwt, 200)).toEqual(["getApp", "putToken"])
    await issuer.dispose()
  })
})

describe("makeWebHandler names the optional services it uses (issue 16)", () => {
  it("takes the audit log and the rate limiter in its options; its type refuses them in the storage layer", async () => {
    const sink: Array<AuditLog.AuditEvent> = []
    const storageOnly = Layer.mergeAll(Registry.layerMemory, Entropy.layer)
    const limited = makeWebHandler(storageOnly, {
      auditLog: AuditLog.layerMemory(sink),
      rateLimiter: RateLimiter.layerMemory({ limit: 1, periodSeconds: 60 })
    })
    const from = { headers: { "cf-connecting-ip": "203.0.113.9" } }
    expect((await limited.handler(new Request("http://icr.test/nowhere", from))).status).toBe(404)
    expect((await limited.handler(new Request("http://icr.test/nowhere", from))).status).toBe(429)
    await limited.dispose()
    const wrong = () =>
      makeWebHandler(
        // @ts-expect-error: an audit log in the storage layer would never be used; it goes in the options.
        Layer.mergeAll(storageOnly, AuditLog.layerMemory(sink))
      )
    const alsoWrong = () =>
      makeWebHandler(
        // @ts-expect-error: so does a rate limiter.
        Layer.mergeAll(storageOnly, RateLimiter.layerMemory({ limit: 1, periodSeconds: 60 }))
      )
    // @ts-expect-error: and the storage layer must provide the registry and entropy.
    const missing = () => makeWebHandler(Registry.layerMemory)
    expect([wrong, alsoWrong, missing].every((f) => typeof f === "function")).toBe(true)
  })
})
