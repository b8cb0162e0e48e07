import { describe, expect, it } from "@effect/vitest"
import { allowedMethods, healthzBeforeRouter, redactSecrets } from "../../src/issuer/Http.js"

describe("redactSecrets", () => {
  it("masks access tokens, JWTs and PEM blocks in client-controlled text", () => {
    const token = `crs_${"ab12".repeat(12)}`
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    const pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"
    const text = redactSecrets(`a ${token} b ${jwt} c ${pem} d`)
    expect(text).toBe("a crs_… b <jwt> c <key> d")
    expect(redactSecrets("permissions.organization_info: is unexpected")).toBe(
      "permissions.organization_info: is unexpected"
    )
  })
})

describe("allowedMethods", () => {
  it("lists the methods of a path from the API definition, HEAD with GET, case-insensitively", () => {
    expect(allowedMethods("/app/installations/token")).toEqual(["DELETE", "GET", "HEAD"])
    expect(allowedMethods("/APP/ACCESSTOKENS")).toEqual(["POST"])
    expect(allowedMethods("/admin/installations/abc")).toEqual(["DELETE", "PATCH"])
    expect(allowedMethods("/nope")).toEqual([])
  })
})

describe("healthzBeforeRouter", () => {
  const at = (path: string, init: RequestInit = {}) =>
    healthzBeforeRouter(new Request(`http://issuer.test${path}`, init))

  it("answers GET and HEAD /healthz with the SPEC §1 headers and a newline-terminated body", async () => {
    const get = at("/healthz", { headers: { "x-request-id": "req-1.a", "x-icr-api-version": "2023-06-16" } })!
    expect(get.status).toBe(200)
    expect(await get.text()).toBe('{"status":"ok"}\n')
    expect(get.headers.get("content-length")).toBe("16")
    expect(get.headers.get("content-type")).toBe("application/json")
    expect(get.headers.get("x-icr-api-version")).toBe("2023-06-16")
    expect(get.headers.get("x-request-id")).toBe("req-1.a")
    expect(get.headers.get("x-content-type-options")).toBe("nosniff")
    expect(Number.isNaN(Date.parse(get.headers.get("date") ?? ""))).toBe(false)
    const head = at("/healthz", { method: "HEAD", headers: { "x-request-id": "<script>" } })!
    expect(await head.text()).toBe("")
    expect(head.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("leaves to the router whatever the router answers differently or refuses", () => {
    expect(at("/healthz", { method: "POST" })).toBeUndefined()
    expect(at("/healthz/")).toBeUndefined()
    expect(at("/HEALTHZ")).toBeUndefined()
    expect(at("/healthzz")).toBeUndefined()
    expect(at("/healthz", { headers: { "x-icr-api-version": "2022-11-28" } })).toBeUndefined()
    expect(at("/healthz", { headers: { authorization: `Bearer ${"a".repeat(8 * 1024)}` } })).toBeUndefined()
    expect(at("/healthz", { headers: { "content-length": "16385" } })).toBeUndefined()
  })
})
