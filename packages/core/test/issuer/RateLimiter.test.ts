import { beforeAll, describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as AuditLog from "../../src/issuer/AuditLog.js"
import * as Entropy from "../../src/issuer/Entropy.js"
import { makeWebHandler } from "../../src/issuer/Issuer.js"
import * as RateLimiter from "../../src/issuer/RateLimiter.js"
import * as Registry from "../../src/issuer/Registry.js"
import { rsaKeyPair, signRs256 } from "../fixtures.js"

const ADMIN = "rate-limit-test-operator-token-0123456789"
const ADDRESS_LIMIT = 5
const PRINCIPAL_LIMIT = 8

/** A clock that stands still, so a fixed window cannot roll over mid-test. */
const frozenClock = (now: number): Clock.Clock => {
  const base = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.succeed(now),
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeNanos: Effect.succeed(BigInt(now) * 1_000_000n),
    sleep: (duration) => base.sleep(duration)
  }
}

/** An issuer in memory limited to 5 requests per address and 8 per principal, per minute. */
const limitedIssuer = () => {
  const now = Date.now()
  const { handler } = makeWebHandler(
    Layer.mergeAll(Registry.layerMemory, Entropy.layer, Layer.setClock(frozenClock(now))),
    {
      adminToken: Redacted.make(ADMIN),
      // Quiet: the events are asserted elsewhere (AuditLog.test.ts).
      auditLog: AuditLog.layerMemory([]),
      rateLimiter: RateLimiter.layerMemory({
        limit: ADDRESS_LIMIT,
        periodSeconds: 60,
        principal: { limit: PRINCIPAL_LIMIT, periodSeconds: 60 }
      })
    }
  )
  const call = async (
    method: string,
    path: string,
    options: { token?: string; from?: string; body?: unknown } = {}
  ) => {
    const headers = new Headers({ "content-type": "application/json" })
    if (options.token !== undefined) headers.set("authorization", `Bearer ${options.token}`)
    if (options.from !== undefined) headers.set("cf-connecting-ip", options.from)
    const res = await handler(
      new Request(`http://icr.test${path}`, {
        method,
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
      })
    )
    const text = await res.text()
    return { status: res.status, retryAfter: res.headers.get("retry-after"), json: text ? JSON.parse(text) : undefined }
  }
  const seconds = Math.floor(now / 1000)
  const newApp = async (name: string) => {
    const r = await call("POST", "/admin/apps", {
      token: ADMIN,
      body: { name, permissions: {}, publicKey: keys.publicPem }
    })
    expect(r.status).toBe(201)
    const appId: string = r.json.id
    const jwt = await signRs256(keys.privateKey, { iss: appId, iat: seconds - 60, exp: seconds + 540 })
    return { appId, jwt }
  }
  return { call, newApp }
}

let keys: Awaited<ReturnType<typeof rsaKeyPair>>
beforeAll(async () => {
  keys = await rsaKeyPair()
})

describe("addressKey: IPv4 as is, IPv6 by /64 (SPEC §1)", () => {
  it("groups every address of one /64, in any spelling, and nothing beyond it", () => {
    const key = RateLimiter.addressKey("2001:db8:abcd:12::1")
    expect(key).toBe("ip6:2001:db8:abcd:12::/64")
    for (const same of [
      "2001:0db8:abcd:0012:ffff:ffff:ffff:ffff",
      "2001:DB8:ABCD:12:1:2:3:4",
      "[2001:db8:abcd:12::9]",
      "2001:db8:abcd:12::1%eth0",
      " 2001:db8:abcd:12:0:0:192.0.2.1 "
    ]) {
      expect(RateLimiter.addressKey(same), same).toBe(key)
    }
    expect(RateLimiter.addressKey("2001:db8:abcd:13::1")).not.toBe(key)
    expect(RateLimiter.addressKey("::1")).toBe("ip6:0:0:0:0::/64")
  })
  it("an address with a port (as some proxies write x-forwarded-for) is the address: no budget per port", () => {
    // Azure's gateways, among others, append the client's source port; a client opens a connection
    // from a fresh port at will, so a key per port would be a fresh budget per connection.
    expect(RateLimiter.addressKey("192.0.2.1:51234")).toBe("ip4:192.0.2.1")
    expect(RateLimiter.addressKey("[2001:db8:abcd:12::9]:443")).toBe("ip6:2001:db8:abcd:12::/64")
    expect(RateLimiter.addressKey("[::ffff:192.0.2.1]:8080")).toBe("ip4:192.0.2.1")
    // A bare IPv6 address keeps its last group: it is no port.
    expect(RateLimiter.addressKey("2001:db8:abcd:12::443")).toBe("ip6:2001:db8:abcd:12::/64")
    for (const odd of ["192.0.2.1:", "192.0.2.1:99999", "192.0.2.1:8a", "[2001:db8::1]:", "[2001:db8::1]x"]) {
      expect(RateLimiter.addressKey(odd), odd).toMatch(/^addr:/)
    }
  })
  it("keeps IPv4 addresses apart, IPv4-mapped IPv6 as the IPv4 address, and anything else as its own key", () => {
    expect(RateLimiter.addressKey("192.0.2.1")).toBe("ip4:192.0.2.1")
    expect(RateLimiter.addressKey("192.0.2.2")).not.toBe(RateLimiter.addressKey("192.0.2.1"))
    expect(RateLimiter.addressKey("::ffff:192.0.2.1")).toBe("ip4:192.0.2.1")
    expect(RateLimiter.addressKey("::ffff:c000:201")).toBe("ip4:192.0.2.1")
    for (const odd of ["", "999.1.1.1", "1:2:3", "1::2::3", "1:2:3:4:5:6:7:8:9", "not an address"]) {
      expect(RateLimiter.addressKey(odd), odd).toMatch(/^addr:/)
    }
  })
})

describe("RateLimiter.layerMemory under many addresses", () => {
  it("forgets finished windows at most once per second: never a sweep of every window per new address", () => {
    // 12,000 distinct addresses in one window (an IPv6 /48 has 65,536 /64s). Past 10,000 windows,
    // each new one swept them all — none finished, none removed — so the work grew with the square
    // of the addresses a client controls.
    const limiter = Effect.runSync(
      Effect.provide(RateLimiter.RateLimiter, RateLimiter.layerMemory({ limit: 5, periodSeconds: 60 }))
    )
    const clock = frozenClock(1_700_000_000_000)
    const iterate = Map.prototype[Symbol.iterator]
    let sweeps = 0
    Map.prototype[Symbol.iterator] = function (this: Map<unknown, unknown>) {
      // The limiter's windows: the only map this big (the runtime's own are small).
      if (this.size >= 10_000) sweeps++
      return iterate.call(this)
    }
    try {
      for (let i = 0; i < 12_000; i++) {
        const address = `2001:db8:${(i >> 8).toString(16)}:${(i & 255).toString(16)}::1`
        Effect.runSync(Effect.withClock(limiter.check("address", RateLimiter.addressKey(address)), clock))
      }
    } finally {
      Map.prototype[Symbol.iterator] = iterate
    }
    expect(sweeps).toBeLessThanOrEqual(1)
    // And each address still has its own budget.
    const again = Effect.runSync(
      Effect.withClock(limiter.check("address", RateLimiter.addressKey("2001:db8:0:1::9")), clock)
    )
    expect(again).toEqual({ allowed: true, retryAfterSeconds: 0 })
  })
})

describe("rate limits per principal (SPEC §1)", () => {
  it("two apps behind one address do not starve each other; each has its own budget", async () => {
    const { call, newApp } = limitedIssuer()
    const shared = "198.51.100.7"
    const [a, b] = [await newApp("app-a"), await newApp("app-b")]
    // App A spends its whole budget, from the address both apps share, and more than the address's own budget.
    for (let i = 0; i < PRINCIPAL_LIMIT; i++) {
      expect((await call("POST", "/app/accessTokens", { token: a.jwt, from: shared })).status).toBe(200)
    }
    const limited = await call("POST", "/app/accessTokens", { token: a.jwt, from: shared })
    expect(limited.status).toBe(429)
    expect(limited.json.code).toBe("rate_limited")
    expect(Number(limited.retryAfter)).toBeGreaterThan(0)
    // App B, from the same address, is untouched.
    for (let i = 0; i < PRINCIPAL_LIMIT; i++) {
      expect((await call("POST", "/app/accessTokens", { token: b.jwt, from: shared })).status).toBe(200)
    }
    // Failed attempts from that address spend the address's budget, never an app's...
    for (let i = 0; i < ADDRESS_LIMIT; i++) {
      expect((await call("POST", "/app/accessTokens", { token: "not.a.jwt", from: shared })).status).toBe(401)
    }
    expect((await call("POST", "/app/accessTokens", { token: "not.a.jwt", from: shared })).status).toBe(429)
    expect((await call("GET", "/openapi.json", { from: shared })).status).toBe(429)
    // ...so an app that authenticates is still served from an address whose failures are limited.
    const c = await newApp("app-c")
    expect((await call("POST", "/app/accessTokens", { token: c.jwt, from: shared })).status).toBe(200)
  })
  it("an IPv6 client rotating through its /64 is limited; its neighbour /64 is not", async () => {
    const { call } = limitedIssuer()
    const rotate = () =>
      `2001:db8:77:1:${Array.from({ length: 4 }, () => Math.floor(Math.random() * 0x10000).toString(16)).join(":")}`
    for (let i = 0; i < ADDRESS_LIMIT; i++) {
      expect((await call("GET", "/app/installations/token", { from: rotate() })).status).toBe(401)
    }
    const limited = await call("GET", "/app/installations/token", { from: rotate() })
    expect(limited.status).toBe(429)
    expect(limited.json.code).toBe("rate_limited")
    expect((await call("GET", "/app/installations/token", { from: "2001:db8:77:2::1" })).status).toBe(401)
    expect((await call("GET", "/healthz", { from: rotate() })).status).toBe(200)
  })
  it("never limits a liveness check, but limits anything else sent to /healthz like any unauthenticated request", async () => {
    const { call } = limitedIssuer()
    const from = "198.51.100.40"
    for (let i = 0; i < ADDRESS_LIMIT; i++) expect((await call("POST", "/healthz", { from })).status).toBe(405)
    expect((await call("POST", "/healthz", { from })).status).toBe(429)
    expect((await call("DELETE", "/healthz", { from })).status).toBe(429)
    for (let i = 0; i < 3; i++) {
      expect((await call("GET", "/healthz", { from })).status).toBe(200)
      expect((await call("HEAD", "/healthz", { from })).status).toBe(200)
    }
  })
  it("limits installation tokens per installation, app tokens per app; the operator not at all", async () => {
    const { call, newApp } = limitedIssuer()
    const { appId, jwt } = await newApp("app-tokens")
    const installations: Array<string> = []
    for (let i = 0; i < 2; i++) {
      const r = await call("POST", "/admin/installations", {
        token: ADMIN,
        body: { appId, organizationId: crypto.randomUUID(), permissions: {} }
      })
      expect(r.status).toBe(201)
      installations.push(r.json.id)
    }
    // Two mints and one app token: three of the app's eight.
    const [one, two] = await Promise.all(
      installations.map(
        async (id) => (await call("POST", `/app/installations/${id}/accessTokens`, { token: jwt })).json.token
      )
    )
    const appToken = (await call("POST", "/app/accessTokens", { token: jwt })).json.token
    const use = (token: string) => call("GET", "/app/installations/token", { token })
    for (let i = 0; i < PRINCIPAL_LIMIT; i++) expect((await use(one)).status).toBe(200)
    expect((await use(one)).status).toBe(429)
    expect((await use(two)).status).toBe(200)
    // The installation tokens' uses did not spend the app's budget: five of it are left.
    for (let i = 0; i < PRINCIPAL_LIMIT - 3; i++) expect((await use(appToken)).status).toBe(200)
    expect((await use(appToken)).status).toBe(429)
    expect((await call("POST", "/app/accessTokens", { token: jwt })).status).toBe(429)
    for (let i = 0; i < 3 * PRINCIPAL_LIMIT; i++) {
      expect((await call("GET", `/admin/apps/${appId}`, { token: ADMIN, from: "198.51.100.9" })).status).toBe(200)
    }
  })
})
