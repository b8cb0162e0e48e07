import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import { Fault, makeFakeIssuer } from "../src/FakeIssuer.js"
import { appClaims, generateAppKeyPair, signRs256 } from "../src/Keys.js"

const BASE = "http://icr.test"

describe("fake issuer fault injection", () => {
  it("answers a storage failure with 503 unavailable and Retry-After, and recovers", async () => {
    const issuer = makeFakeIssuer()
    issuer.failStorage(1)
    const failed = await issuer.fetch(`${BASE}/admin/apps/1`, {
      headers: { authorization: `Bearer ${issuer.adminToken}` }
    })
    expect(failed.status).toBe(503)
    expect(failed.headers.get("retry-after")).toBe("1")
    expect(((await failed.json()) as { code: string }).code).toBe("unavailable")
    const after = await issuer.fetch(`${BASE}/admin/apps/1`, {
      headers: { authorization: `Bearer ${issuer.adminToken}` }
    })
    expect(after.status).toBe(404)
  })
  it("refuses a mint with 503 when storage fails, writing nothing, and mints once storage is back", async () => {
    const issuer = makeFakeIssuer()
    const keys = await generateAppKeyPair()
    const { id } = await issuer.admin("POST", "/admin/apps", {
      name: "faulty",
      permissions: {},
      publicKey: keys.publicPem
    })
    const jwt = await signRs256(keys.privateKey, appClaims(id))
    const writesBefore = issuer.storageWrites().length
    issuer.failStorage(1)
    const refused = await issuer.fetch(`${BASE}/app/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` }
    })
    expect(refused.status).toBe(503)
    expect(issuer.storageWrites().length).toBe(writesBefore)
    const ok = await issuer.fetch(`${BASE}/app/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` }
    })
    expect(ok.status).toBe(200)
  })
  it("replays queued HTTP faults in order, then reaches the issuer", async () => {
    const issuer = makeFakeIssuer()
    issuer.inject(Fault.status(429, { retryAfter: "3" }), Fault.networkError())
    const limited = await issuer.fetch(`${BASE}/healthz`)
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).toBe("3")
    await expect(issuer.fetch(`${BASE}/healthz`)).rejects.toThrow(TypeError)
    expect((await issuer.fetch(`${BASE}/healthz`)).status).toBe(200)
    expect(issuer.requests().map((r) => r.path)).toEqual(["/healthz", "/healthz", "/healthz"])
  })
  it("aims faults by route, app and count; arrange calls meet no fault and stay out of the log", async () => {
    const issuer = makeFakeIssuer()
    const keys = await generateAppKeyPair()
    const [mine, other] = [
      await issuer.arrange.createApp({ publicKey: keys.publicPem }),
      await issuer.arrange.createApp({ publicKey: keys.publicPem })
    ]
    issuer.inject(Fault.status(500))
    issuer.fault({ route: "createAppAccessToken", appId: mine.id, skip: 1, times: 2 }, Fault.status(429))
    const installed = await issuer.arrange.install(mine.id) // the queued 500 is not for arrange calls
    expect(installed.appId).toBe(mine.id)
    const mint = async (appId: string) =>
      (
        await issuer.fetch(`${BASE}/app/accessTokens`, {
          method: "POST",
          headers: { authorization: `Bearer ${await signRs256(keys.privateKey, appClaims(appId))}` }
        })
      ).status
    expect(await mint(other.id)).toBe(500) // the queue meets whatever comes first
    expect([
      await mint(other.id),
      await mint(mine.id),
      await mint(mine.id),
      await mint(mine.id),
      await mint(mine.id)
    ]).toEqual([200, 200, 429, 429, 200])
    expect(
      issuer.requests({ route: "createAppAccessToken" }).map((r) => [r.appId === mine.id, r.status, r.fault])
    ).toEqual([
      [false, 500, "Response"],
      [false, 200, undefined],
      [true, 200, undefined],
      [true, 429, "Response"],
      [true, 429, "Response"],
      [true, 200, undefined]
    ])
    expect(issuer.requests().every((r) => r.credential === "app_jwt" && r.route === "createAppAccessToken")).toBe(true)
  })
  it("mints the same tokens from the same seed", async () => {
    const mint = async () => {
      const issuer = makeFakeIssuer({ seed: 7 })
      const keys = await generateAppKeyPair()
      const { id } = await issuer.admin("POST", "/admin/apps", {
        name: "seeded",
        permissions: {},
        publicKey: keys.publicPem
      })
      const jwt = await signRs256(keys.privateKey, appClaims(id))
      const res = await issuer.fetch(`${BASE}/app/accessTokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${jwt}` }
      })
      return ((await res.json()) as { token: string }).token
    }
    expect(await mint()).toBe(await Effect.runPromise(Effect.promise(mint)))
  })
})

describe("rate limiting per client", () => {
  it("answers 429 rate_limited with Retry-After past the limit, per client address, never on /healthz", async () => {
    // A frozen clock, so the fixed window cannot roll over mid-test.
    const issuer = makeFakeIssuer({
      rateLimit: { limit: 3, periodSeconds: 60 },
      now: () => Date.UTC(2026, 0, 1, 12, 0, 30)
    })
    const from = (ip: string, path = "/app/installations/token") =>
      issuer.fetch(`${BASE}${path}`, { headers: { "cf-connecting-ip": ip } })
    for (let i = 0; i < 3; i++) expect((await from("203.0.113.7")).status).toBe(401)
    const limited = await from("203.0.113.7")
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0)
    expect(((await limited.json()) as { code: string }).code).toBe("rate_limited")
    expect((await from("198.51.100.1")).status).toBe(401)
    expect((await from("203.0.113.7", "/healthz")).status).toBe(200)
    // Without a client address (local dev, tests) nothing is limited.
    for (let i = 0; i < 5; i++) expect((await issuer.fetch(`${BASE}/app/installations/token`)).status).toBe(401)
  })
})
