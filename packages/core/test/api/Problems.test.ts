import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import * as P from "../../src/api/Problems.js"

// SPEC §6, row by row.
const table: ReadonlyArray<readonly [number, string, P.Problem]> = [
  [400, "invalid_request", new P.InvalidRequest({ detail: "d" })],
  [400, "unsupported_api_version", new P.UnsupportedApiVersion({ detail: "d" })],
  [401, "missing_credentials", new P.MissingCredentials({ detail: "d" })],
  [401, "invalid_jwt", new P.InvalidJwt({ detail: "d", reason: "expired" })],
  [401, "invalid_token", new P.InvalidToken({ detail: "d" })],
  [403, "installation_suspended", new P.InstallationSuspended({ detail: "d" })],
  [403, "admin_disabled", new P.AdminDisabled({ detail: "d" })],
  [403, "forbidden", new P.Forbidden({ detail: "d" })],
  [
    403,
    "insufficient_permissions",
    new P.InsufficientPermissions({ detail: "d", permission: "organization_inventory", level: "REQUEST" })
  ],
  [404, "not_found", new P.NotFound({ detail: "d" })],
  [404, "installation_not_found", new P.InstallationNotFound({ detail: "d" })],
  [404, "app_not_found", new P.AppNotFound({ detail: "d" })],
  [405, "method_not_allowed", new P.MethodNotAllowed({ detail: "d", allow: ["GET"] })],
  [409, "conflict", new P.Conflict({ detail: "d" })],
  [413, "payload_too_large", new P.PayloadTooLarge({ detail: "d" })],
  [422, "permissions_exceed_grant", new P.PermissionsExceedGrant({ detail: "d", permissions: ["organization_info"] })],
  [422, "invalid_public_key", new P.InvalidPublicKey({ detail: "d" })],
  [422, "invalid_permissions", new P.InvalidPermissions({ detail: "d" })],
  [429, "rate_limited", new P.RateLimited({ detail: "d", retryAfter: 3 })],
  [500, "internal", new P.Internal({ detail: "d" })],
  [503, "unavailable", new P.Unavailable({ detail: "d", retryAfter: 1 })]
]

describe("problem documents (SPEC §6)", () => {
  it("covers every code of the table", () => {
    expect(Object.keys(P.Problems)).toHaveLength(table.length)
  })
  for (const [status, code, error] of table) {
    it(`${code} is ${status} and round-trips by code, without _tag on the wire`, () => {
      const document = Schema.encodeSync(P.AnyProblem)(error)
      expect(document).toMatchObject({ type: P.problemType(code), status, code, detail: "d" })
      expect(typeof document.title).toBe("string")
      expect("_tag" in document).toBe(false)
      const decoded = Schema.decodeUnknownSync(P.AnyProblem)(document)
      expect(decoded._tag).toBe(error._tag)
      expect(decoded).toEqual(error)
      expect(P.codeOf(error)).toEqual({ code, status })
      expect([error.code, error.status, decoded.code, decoded.status]).toEqual([code, status, code, status])
      expect(Object.keys(error)).not.toContain("code") // read from the class, never a wire field
      expect(error.message).toBe("d")
    })
  }
  it("carries the reason of invalid_jwt", () => {
    const doc = Schema.encodeSync(P.AnyProblem)(new P.InvalidJwt({ detail: "x", reason: "exp_too_far" }))
    expect(doc.reason).toBe("exp_too_far")
    expect(() => Schema.decodeUnknownSync(P.AnyProblem)({ ...doc, reason: "bogus" })).toThrow()
  })
  it("decodes a problem document from another server, which never heard of _tag", () => {
    const e = Schema.decodeUnknownSync(P.AnyProblem)({
      type: "https://example.com/probs/x",
      title: "Suspended",
      status: 403,
      code: "installation_suspended",
      detail: "the installation is suspended"
    })
    expect(e).toBeInstanceOf(P.InstallationSuspended)
  })
})
