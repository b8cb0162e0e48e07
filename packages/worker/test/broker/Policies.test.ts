import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { type Caller, decide, decodePolicies, formatScope, parseScope, type Policy } from "../../src/broker/Policies.js"

const ISSUER = "https://token.actions.githubusercontent.com"
const A = "0b9d5b4e-8f1e-4a4c-9d6b-2f0e1c3a5b7d"
const B = "1c8e6a5f-9a2f-4b5d-8e7c-3a1f2d4b6c8e"

const policies = (json: unknown) => decodePolicies(JSON.stringify(json), [ISSUER])
const errorsOf = (json: unknown) => Either.getLeft(policies(json)).pipe((o) => (o._tag === "Some" ? o.value : []))

const ok = {
  name: "ci",
  identity: { issuer: ISSUER, sub: "repo:acme/app:ref:refs/heads/main" },
  installations: [A],
  permissions: { organization_info: "VIEW" }
}

describe("BROKER_POLICIES", () => {
  it("decodes the three identity forms, lower-cases ids, defaults list to false", () => {
    const decoded = Either.getOrThrow(
      policies([
        { ...ok, installations: [A.toUpperCase()] },
        { ...ok, name: "claims", identity: { issuer: ISSUER, claims: { repository: "acme/app", run_attempt: 1 } } },
        { ...ok, name: "svc", identity: { service: "inventory-sync" }, installations: "*", list: true }
      ])
    )
    expect(decoded.map((p) => [p.name, p.installations, p.list])).toEqual([
      ["ci", [A], false],
      ["claims", [A], false],
      ["svc", "*", true]
    ])
  })

  it("names the path of the first error, once per bad policy", () => {
    expect(
      errorsOf([
        ok,
        { ...ok, name: "typo", permissions: { organization_info: "WRITE" } },
        { ...ok, name: "no-sub", identity: { issuer: ISSUER, sub: "" } },
        { ...ok, name: "bad-id", installations: [A, "nope"] },
        { ...ok, name: "extra", installation: [A] },
        "not a policy"
      ])
    ).toEqual([
      'BROKER_POLICIES[1] "typo": permissions.organization_info: Expected "VIEW", actual "WRITE"',
      'BROKER_POLICIES[2] "no-sub": identity.sub: must not be empty',
      'BROKER_POLICIES[3] "bad-id": installations.1: must be a UUID',
      'BROKER_POLICIES[4] "extra": installation: is unexpected, expected: "name" | "identity" | "installations" | "permissions" | "list" | "app" | "allowAnySubject"',
      "BROKER_POLICIES[5]: must be a JSON object"
    ])
  })

  it("refuses what would grant too much or match too widely", () => {
    expect(
      errorsOf([
        { ...ok, name: "empty-grant", permissions: {} },
        { ...ok, name: "any-token", identity: { issuer: ISSUER, claims: {} } },
        { ...ok, name: "untrusted", identity: { issuer: "https://elsewhere.test", sub: "x" } },
        { ...ok, name: "no-installations", installations: [] },
        { ...ok, name: "unknown-identity", identity: { issuer: ISSUER } },
        ok,
        ok
      ])
    ).toEqual([
      'BROKER_POLICIES[0] "empty-grant": permissions: must grant at least one permission',
      'BROKER_POLICIES[1] "any-token": identity.claims: must name at least one claim',
      'BROKER_POLICIES[2] "untrusted": identity.issuer: not one of BROKER_OIDC_ISSUERS',
      'BROKER_POLICIES[3] "no-installations": installations: must be "*" or a non-empty array of installation ids',
      'BROKER_POLICIES[4] "unknown-identity": identity: must be { issuer, sub | subjectPattern | claims | claimPatterns } or { service }',
      'BROKER_POLICIES[6] "ci": name: another policy is already called that'
    ])
  })

  it("says when the document itself is wrong", () => {
    expect(Either.getLeft(decodePolicies(undefined, []))).toEqual(
      Either.getLeft(Either.left(["BROKER_POLICIES is not set"]))
    )
    expect(errorsOf({ policies: [] })).toEqual(["BROKER_POLICIES must be a JSON array of policies"])
    expect(Either.getLeft(decodePolicies("[", []))._tag).toBe("Some")
  })
})

describe("decide", () => {
  const decoded = Either.getOrThrow(
    policies([
      { ...ok, name: "narrow" },
      {
        ...ok,
        name: "wide",
        installations: [A, B],
        permissions: { organization_info: "VIEW", organization_inventory: "WRITE" }
      },
      { ...ok, name: "claims", identity: { issuer: ISSUER, claims: { repository: "acme/app" } }, installations: "*" }
    ])
  ) as ReadonlyArray<Policy>
  const caller = (sub: string, claims: Record<string, unknown> = {}): Caller => ({
    kind: "oidc",
    issuer: ISSUER,
    sub,
    claims: { sub, ...claims }
  })
  const main = caller("repo:acme/app:ref:refs/heads/main")

  it("denies by default", () => {
    expect(decide(decoded, caller("repo:other/app"), A, undefined)).toEqual(Either.left({ _tag: "NoPolicy" }))
    expect(decide(decoded, { kind: "service", service: "ci" }, A, undefined)).toEqual(Either.left({ _tag: "NoPolicy" }))
  })

  it("gives the first policy's permissions when no scope is asked for", () => {
    expect(Either.getOrThrow(decide(decoded, main, A, undefined)).policy.name).toBe("narrow")
    expect(Either.getOrThrow(decide(decoded, main, B, undefined)).policy.name).toBe("wide")
  })

  it("gives exactly the request when a policy covers it, and refuses it otherwise", () => {
    const grant = Either.getOrThrow(decide(decoded, main, A, { organization_inventory: "REQUEST" }))
    expect([grant.policy.name, grant.permissions]).toEqual(["wide", { organization_inventory: "REQUEST" }])
    expect(decide(decoded, main, A, { organization_members: "VIEW" })).toEqual(
      Either.left({ _tag: "BeyondPolicy", exceeding: ["organization_members"] })
    )
  })

  it("refuses installations no policy of the caller reaches", () => {
    expect(decide(decoded, main, "2d9f7b6a-0b3a-4c6e-9f8d-4b2a3e5c7d9f", undefined)).toEqual(
      Either.left({ _tag: "NotReachable" })
    )
  })

  it("matches claims exactly, type included", () => {
    expect(Either.isRight(decide(decoded, caller("x", { repository: "acme/app" }), B, undefined))).toBe(true)
    expect(decide(decoded, caller("x", { repository: "acme/app2" }), B, undefined)._tag).toBe("Left")
    expect(decide(decoded, caller("x", { repository: ["acme/app"] }), B, undefined)._tag).toBe("Left")
  })
})

describe("patterns (RE2 syntax, fully anchored, linear time)", () => {
  const caller = (sub: string, claims: Record<string, unknown> = {}): Caller => ({
    kind: "oidc",
    issuer: ISSUER,
    sub,
    claims: { sub, ...claims }
  })
  const decodedWith = (identity: Record<string, unknown>) =>
    Either.getOrThrow(policies([{ ...ok, identity: { issuer: ISSUER, ...identity } }])) as ReadonlyArray<Policy>
  const allows = (ps: ReadonlyArray<Policy>, c: Caller) => Either.isRight(decide(ps, c, A, undefined))

  it("matches sub by subjectPattern over the whole value, never a part of it", () => {
    const ps = decodedWith({ subjectPattern: "repo:acme/[a-z-]+:ref:refs/heads/(main|release-.*)" })
    expect(allows(ps, caller("repo:acme/app:ref:refs/heads/main"))).toBe(true)
    expect(allows(ps, caller("repo:acme/app:ref:refs/heads/release-1.2"))).toBe(true)
    expect(allows(ps, caller("repo:acme/app:ref:refs/heads/feature"))).toBe(false)
    expect(allows(ps, caller("xrepo:acme/app:ref:refs/heads/main"))).toBe(false)
    expect(allows(ps, caller("repo:acme/app:ref:refs/heads/mainx"))).toBe(false)
    // An alternation is anchored as a whole: neither branch matches a part of the value.
    const alternation = decodedWith({ subjectPattern: "a|b" })
    expect(allows(alternation, caller("a"))).toBe(true)
    expect(allows(alternation, caller("ab"))).toBe(false)
    expect(allows(alternation, caller("xb"))).toBe(false)
  })

  it("matches claims by claimPatterns (ids as decimal text), every one given, with exact claims too", () => {
    const ps = decodedWith({
      claims: { repository_owner_id: "42" },
      claimPatterns: { repository_id: "1[0-9]{2}", workflow_ref: "acme/app/\\.github/workflows/deploy\\.yml@.*" }
    })
    const claims = {
      repository_owner_id: "42",
      repository_id: 123,
      workflow_ref: "acme/app/.github/workflows/deploy.yml@refs/heads/main"
    }
    expect(allows(ps, caller("x", claims))).toBe(true)
    expect(allows(ps, caller("x", { ...claims, repository_id: "1234" }))).toBe(false)
    expect(allows(ps, caller("x", { ...claims, repository_id: [123] }))).toBe(false)
    expect(allows(ps, caller("x", { ...claims, repository_owner_id: "43" }))).toBe(false)
    expect(allows(ps, caller("x", { ...claims, workflow_ref: "acme/app/.github/workflows/deployXyml@x" }))).toBe(false)
    const { repository_id: _, ...without } = claims
    expect(allows(ps, caller("x", without))).toBe(false)
  })

  it("takes time linear in the value: a pattern that backtracks catastrophically in RegExp does not here", () => {
    const ps = decodedWith({ subjectPattern: "(a+)+b" })
    const started = performance.now()
    expect(allows(ps, caller(`${"a".repeat(50_000)}c`))).toBe(false)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it("refuses patterns that are not RE2 (backreferences, lookaround, unbalanced groups), and sub with subjectPattern", () => {
    expect(
      errorsOf([
        { ...ok, name: "backref", identity: { issuer: ISSUER, subjectPattern: "(a)\\1" } },
        { ...ok, name: "lookahead", identity: { issuer: ISSUER, claimPatterns: { repository: "(?=acme).*" } } },
        { ...ok, name: "escape", identity: { issuer: ISSUER, subjectPattern: "a)|(.*" } },
        { ...ok, name: "both", identity: { issuer: ISSUER, sub: "a", subjectPattern: "a" } },
        { ...ok, name: "empty", identity: { issuer: ISSUER, claimPatterns: {} } }
      ])
    ).toEqual([
      'BROKER_POLICIES[0] "backref": identity.subjectPattern: is not a valid RE2 pattern',
      'BROKER_POLICIES[1] "lookahead": identity.claimPatterns.repository: is not a valid RE2 pattern',
      'BROKER_POLICIES[2] "escape": identity.subjectPattern: is not a valid RE2 pattern',
      'BROKER_POLICIES[3] "both": identity: sub and subjectPattern cannot both be given',
      'BROKER_POLICIES[4] "empty": identity.claimPatterns: must name at least one claim'
    ])
  })
})

describe("a subjectPattern that matches any subject", () => {
  it('is refused unless the policy says "allowAnySubject": true', () => {
    const wide = [".*", ".+", "(?s).*", "[^/]*", "(repo:acme/app)?", "(?:.|\\n)*", "x|.*"]
    expect(
      errorsOf(
        wide.map((subjectPattern, i) => ({ ...ok, name: `p${i}`, identity: { issuer: ISSUER, subjectPattern } }))
      )
    ).toEqual(
      wide.map(
        (_, i) =>
          `BROKER_POLICIES[${i}] "p${i}": identity.subjectPattern: matches any subject; narrow it, or say "allowAnySubject": true`
      )
    )
    const allowed = Either.getOrThrow(
      policies([{ ...ok, name: "everyone", identity: { issuer: ISSUER, subjectPattern: ".*" }, allowAnySubject: true }])
    )
    expect(allowed.map((p) => [p.name, p.allowAnySubject])).toEqual([["everyone", true]])
    // Narrow patterns are as before, and say nothing.
    const narrow = Either.getOrThrow(
      policies([
        { ...ok, name: "repo", identity: { issuer: ISSUER, subjectPattern: "repo:acme/[a-z-]+:ref:refs/heads/.*" } },
        { ...ok, name: "ids", identity: { issuer: ISSUER, subjectPattern: "[a-z0-9]{32}" } }
      ])
    )
    expect(narrow.map((p) => p.allowAnySubject)).toEqual([false, false])
  })
})

describe("scope", () => {
  it("parses space-separated name:LEVEL and prints it in catalog order", () => {
    const parsed = Either.getOrThrow(parseScope(" organization_inventory:WRITE  organization_info:VIEW "))
    expect(formatScope(parsed)).toBe("organization_info:VIEW organization_inventory:WRITE")
  })
  it.each([
    ["", "scope is empty; omit it to get the policy's permissions"],
    ["organization_info", 'scope: "organization_info" is not name:LEVEL'],
    ["organization_info:VIEW organization_info:VIEW", "scope: organization_info is named twice"],
    ["organization_info:WRITE", 'scope: organization_info: Expected "VIEW", actual "WRITE"'],
    ["admin:WRITE", "scope: admin: is unexpected"]
  ])("refuses %j", (scope, message) => {
    expect(Either.getLeft(parseScope(scope)).pipe((o) => (o._tag === "Some" ? o.value : ""))).toContain(message)
  })
})
