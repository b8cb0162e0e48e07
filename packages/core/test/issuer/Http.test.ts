import { describe, expect, it } from "@effect/vitest"
import { allowedMethods, redactSecrets } from "../../src/issuer/Http.js"

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
