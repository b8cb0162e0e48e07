import { afterEach, describe, expect, it, vi } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as AuditLog from "../../src/issuer/AuditLog.js"
import * as Entropy from "../../src/issuer/Entropy.js"
import { makeWebHandler } from "../../src/issuer/Issuer.js"
import * as Registry from "../../src/issuer/Registry.js"
import { rsaKeyPair, signRs256 } from "../fixtures.js"

afterEach(() => {
  vi.restoreAllMocks()
})

const event: AuditLog.AuditEvent = {
  time: "2026-01-01T00:00:00.000Z",
  action: "installation_token.mint",
  requestId: "req-1",
  appId: "7",
  installationId: "123e4567-e89b-12d3-a456-426614174000",
  tokenId: "223e4567-e89b-12d3-a456-426614174000",
  actor: "app",
  outcome: "success"
}

describe("AuditLog.layerConsole", () => {
  it("writes one JSON line per event, marked as audit, with the event's fields and nothing else", async () => {
    const lines: Array<string> = []
    vi.spyOn(console, "log").mockImplementation(
      (...args: Array<unknown>) => void lines.push(args.map(String).join(" "))
    )
    const smuggled = { ...event, token: "crs_secret", jwt: "a.b.c" } as AuditLog.AuditEvent
    await Effect.runPromise(
      Effect.flatMap(AuditLog.AuditLog, (log) => Effect.zipRight(log.emit(event), log.emit(smuggled))).pipe(
        Effect.provide(AuditLog.layerConsole)
      )
    )
    // emitNow (the direct path's) writes what emit writes, and filters the same way.
    AuditLog.toConsole.emitNow!(smuggled)
    const memory: Array<AuditLog.AuditEvent> = []
    await Effect.runPromise(
      Effect.flatMap(AuditLog.AuditLog, (log) => Effect.sync(() => log.emitNow!(smuggled))).pipe(
        Effect.provide(AuditLog.layerMemory(memory))
      )
    )
    expect(memory).toEqual([event])
    expect(lines).toHaveLength(3)
    expect(JSON.parse(lines[0]!)).toEqual({ audit: true, ...event })
    expect(lines[1]).toBe(lines[0])
    expect(lines[2]).toBe(lines[0])
    expect(AuditLog.fromLogLines(["not json", '{"level":"info"}', ...lines])).toEqual([event, event, event])
  })
})

describe("the issuer's audit trail, in memory (SPEC §5)", () => {
  it("records mints, failures and kill switches under the request id, and never a secret", async () => {
    const admin = "audit-test-operator-token-0123456789abcdef"
    const sink: Array<AuditLog.AuditEvent> = []
    const { handler, dispose } = makeWebHandler(Layer.mergeAll(Registry.layerMemory, Entropy.layer), {
      adminToken: Redacted.make(admin),
      auditLog: AuditLog.layerMemory(sink)
    })
    const lines: Array<string> = []
    vi.spyOn(console, "log").mockImplementation(
      (...args: Array<unknown>) => void lines.push(args.map(String).join(" "))
    )
    const call = async (method: string, path: string, token: string, requestId: string, body?: unknown) => {
      const res = await handler(
        new Request(`http://icr.test${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-request-id": requestId },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        })
      )
      const text = await res.text()
      return { status: res.status, json: text === "" ? undefined : JSON.parse(text) }
    }
    const keys = await rsaKeyPair()
    const app = await call("POST", "/admin/apps", admin, "r1", {
      name: "audited",
      permissions: { organization_info: "VIEW" },
      publicKey: keys.publicPem
    })
    const installation = await call("POST", "/admin/installations", admin, "r2", {
      appId: app.json.id,
      organizationId: crypto.randomUUID(),
      permissions: { organization_info: "VIEW" }
    })
    const now = Math.floor(Date.now() / 1000)
    const jwt = await signRs256(keys.privateKey, { iss: app.json.id, iat: now - 60, exp: now + 540 })
    const minted = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt, "r3")
    expect(minted.status).toBe(200)
    const tooMuch = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt, "r4", {
      permissions: { organization_inventory: "WRITE" }
    })
    expect(tooMuch.status).toBe(422)
    expect(
      (await call("PATCH", `/admin/installations/${installation.json.id}`, admin, "r5", { permissions: {} })).status
    ).toBe(200)
    await dispose()

    const byRequest = (id: string) => sink.filter((e) => e.requestId === id).map((e) => `${e.action} ${e.outcome}`)
    expect(byRequest("r1")).toEqual(["app.create success"])
    expect(byRequest("r2")).toEqual(["installation.create success"])
    expect(sink.find((e) => e.requestId === "r3")).toMatchObject({
      action: "installation_token.mint",
      actor: "app",
      appId: app.json.id,
      installationId: installation.json.id,
      tokenId: minted.json.id,
      outcome: "success"
    })
    expect(sink.find((e) => e.requestId === "r4")).toMatchObject({
      outcome: "failure",
      code: "permissions_exceed_grant"
    })
    expect(byRequest("r5")).toEqual(["installation.update success", "installation.tokens_revoked success"])
    expect(sink).toHaveLength(6)
    // The memory sink replaced the console one; and neither holds a secret.
    expect(lines.filter((line) => line.includes('"audit":true'))).toEqual([])
    const text = JSON.stringify(sink)
    for (const secret of [minted.json.token, jwt, admin, keys.publicPem.split("\n")[1]!])
      expect(text).not.toContain(secret)
  })
})

describe("failed authentications are audited at a bounded rate (SPEC §5)", () => {
  it.effect("at most one event per address per second; the next one counts those in between", () =>
    Effect.gen(function* () {
      const sink: Array<AuditLog.AuditEvent> = []
      const record = AuditLog.failedAuthentications({ emit: (e) => Effect.sync(() => void sink.push(e)) })
      const fail = (address: string | undefined, code = "invalid_token") =>
        record({ action: "operator.authenticate" }, code, address)
      yield* fail("203.0.113.1")
      yield* TestClock.adjust("500 millis")
      yield* fail("203.0.113.1")
      yield* fail("203.0.113.1", "missing_credentials")
      // IPv6 by /64, as the rate limits count addresses: one budget for both.
      yield* fail("2001:db8:0:1::1")
      yield* fail("2001:db8:0:1::2")
      // No known address: one budget shared by all such requests.
      yield* fail(undefined)
      yield* fail(undefined)
      yield* TestClock.adjust("499 millis")
      yield* fail("203.0.113.1")
      yield* TestClock.adjust("1 millis")
      yield* fail("203.0.113.1")
      yield* fail("203.0.113.1")
      yield* TestClock.adjust("5 seconds")
      yield* fail("2001:db8:0:1::3")
      expect(sink.map((e) => [e.time.slice(17), e.clientAddress, e.code, e.suppressed])).toEqual([
        ["00.000Z", "203.0.113.1", "invalid_token", undefined],
        ["00.500Z", "2001:db8:0:1::1", "invalid_token", undefined],
        ["00.500Z", undefined, "invalid_token", undefined],
        ["01.000Z", "203.0.113.1", "invalid_token", 3],
        ["06.000Z", "2001:db8:0:1::3", "invalid_token", 1]
      ])
      expect(sink[0]).toEqual({
        time: "1970-01-01T00:00:00.000Z",
        action: "operator.authenticate",
        requestId: "",
        actor: "unauthenticated",
        outcome: "failure",
        code: "invalid_token",
        clientAddress: "203.0.113.1"
      })
    })
  )
  it.effect(
    "addresses beyond those it tracks share one budget: a scan from many addresses floods neither log nor memory",
    () =>
      Effect.gen(function* () {
        // An IPv6 /48 is 65,536 addresses of their own (/64s): without a bound, each new one was an
        // event, an entry kept up to an hour, and — past 10,000 entries — a sweep of them all.
        const sink: Array<AuditLog.AuditEvent> = []
        const record = AuditLog.failedAuthentications({ emit: (e) => Effect.sync(() => void sink.push(e)) }, 2)
        const fail = (address: string) => record({ action: "operator.authenticate" }, "invalid_token", address)
        yield* fail("192.0.2.1")
        yield* fail("192.0.2.2")
        // Two addresses tracked: the third is recorded under the shared budget, the fourth counted in it.
        yield* fail("192.0.2.3")
        yield* fail("192.0.2.4")
        yield* fail("192.0.2.1")
        yield* TestClock.adjust("1 second")
        // A second on: quiet addresses are forgotten (192.0.2.2), the others still have counts to report.
        yield* fail("192.0.2.5")
        yield* fail("192.0.2.6")
        yield* fail("192.0.2.1")
        expect(sink.map((e) => [e.time.slice(17), e.clientAddress, e.suppressed])).toEqual([
          ["00.000Z", "192.0.2.1", undefined],
          ["00.000Z", "192.0.2.2", undefined],
          ["00.000Z", "192.0.2.3", undefined],
          ["01.000Z", "192.0.2.5", 1],
          ["01.000Z", "192.0.2.1", 1]
        ])
      })
  )
})
