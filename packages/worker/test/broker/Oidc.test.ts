import { makeOidcProvider } from "@icr-apps/testkit/Oidc"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import { describe, expect, it } from "vitest"
import * as Oidc from "../../src/broker/Oidc.js"
import { isAllowedUrl } from "../../src/broker/Oidc.js"
import { AUDIENCE, exchangeParams, OIDC_ISSUER, setup, subjectPolicy, tokenRequest } from "./harness.js"

const SUB = "repo:acme/inventory:ref:refs/heads/main"
const POLICY = { organization_info: "VIEW" } as const
const now = () => Math.floor(Date.now() / 1000)

const allowed = () => setup({ policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)] })

/** The problem a subject token earns. */
const outcome = async (t: Awaited<ReturnType<typeof allowed>>, subjectToken: string) => {
  const response = await t.fetch(tokenRequest(exchangeParams(subjectToken, t.app.installations[0]!)))
  const body = (await response.json()) as { code?: string; detail?: string }
  return { status: response.status, code: body.code, detail: body.detail }
}

describe("identity tokens: what is refused with invalid_grant", () => {
  it.each([
    ["expired beyond the 60 s skew", { issuedAt: now() - 600, expiresInSeconds: 500 }, "has expired"],
    ["for another audience", { aud: "https://someone-else.test" }, "another audience"],
    ["not valid yet (nbf beyond the skew)", { notBefore: now() + 300 }, "not valid yet"],
    ["issued in the future (iat beyond the skew)", { issuedAt: now() + 300 }, "issued in the future"],
    ["without a subject", { sub: "" }, "subject"]
  ])("a token %s", async (_, extra, detail) => {
    const t = await allowed()
    const token = await t.oidc.issue({ sub: SUB, aud: AUDIENCE, ...extra })
    const result = await outcome(t, token)
    expect(result).toMatchObject({ status: 400, code: "invalid_grant" })
    expect(result.detail).toContain(detail)
    expect(t.issuer.mints()).toBe(0)
  })

  it("accepts tokens within the 60 s skew (just expired, nbf and iat just ahead)", async () => {
    const t = await allowed()
    for (const extra of [
      { issuedAt: now() - 330, expiresInSeconds: 300 },
      { notBefore: now() + 30 },
      { issuedAt: now() + 30 }
    ]) {
      expect((await outcome(t, await t.oidc.issue({ sub: SUB, aud: AUDIENCE, ...extra }))).status).toBe(200)
    }
  })

  it("accepts an audience array that contains the broker's audience", async () => {
    const t = await allowed()
    expect((await outcome(t, await t.oidc.issue({ sub: SUB, aud: ["other", AUDIENCE] }))).status).toBe(200)
  })

  it("refuses a token whose issuer is not configured, without fetching anything from it", async () => {
    const t = await allowed()
    const stranger = makeOidcProvider({ issuer: "https://stranger.test" })
    const token = await stranger.issue({ sub: SUB, aud: AUDIENCE })
    expect(await outcome(t, token)).toMatchObject({ code: "invalid_grant", detail: expect.stringContaining("issuer") })
    expect(stranger.requests().total).toBe(0)
    expect(t.oidc.requests().total).toBe(0)
  })

  it("refuses a token that claims the configured issuer but is signed by another key", async () => {
    const t = await allowed()
    const impostor = makeOidcProvider({ issuer: OIDC_ISSUER })
    const result = await outcome(t, await impostor.issue({ sub: SUB, aud: AUDIENCE }))
    expect(result).toMatchObject({ code: "invalid_grant", detail: expect.stringContaining("key") })
  })

  it("refuses a forged signature, alg none and HS256, and garbage", async () => {
    const t = await allowed()
    const genuine = await t.idToken(SUB)
    const [h, p, s] = genuine.split(".") as [string, string, string]
    const claims = JSON.parse(new TextDecoder().decode(Either.getOrThrow(Encoding.decodeBase64Url(p))))
    const payload = Encoding.encodeBase64Url(JSON.stringify({ ...claims, sub: "someone-else" }))
    expect(await outcome(t, `${h}.${payload}.${s}`)).toMatchObject({ code: "invalid_grant" })
    const header = (alg: string) => Encoding.encodeBase64Url(JSON.stringify({ alg, typ: "JWT" }))
    expect(await outcome(t, `${header("none")}.${p}.`)).toMatchObject({
      code: "invalid_grant",
      detail: "The subject token must be signed with RS256 or ES256"
    })
    expect(await outcome(t, `${header("HS256")}.${p}.${s}`)).toMatchObject({ code: "invalid_grant" })
    expect(await outcome(t, "not-a-jwt")).toMatchObject({ code: "invalid_grant" })
  })
})

describe("JWKS: discovered from the configured issuer, cached, refreshed on rotation", () => {
  it("fetches discovery and keys once, then verifies from the cache", async () => {
    const t = await allowed()
    for (let i = 0; i < 3; i++) expect((await outcome(t, await t.idToken(SUB))).status).toBe(200)
    expect(t.oidc.requests()).toEqual({ discovery: 1, jwks: 1, total: 2 })
  })

  it("refetches the JWKS when the issuer rotates its key, then serves the new tokens", async () => {
    const t = await allowed()
    expect((await outcome(t, await t.idToken(SUB))).status).toBe(200)
    await t.oidc.rotate()
    expect((await outcome(t, await t.idToken(SUB))).status).toBe(200)
    expect(t.oidc.requests().jwks).toBe(2)
  })

  it("asks again for an unknown kid at most once per cool-down, so forged kids cannot hammer the issuer", async () => {
    const t = await allowed()
    expect((await outcome(t, await t.idToken(SUB))).status).toBe(200)
    const impostor = makeOidcProvider({ issuer: OIDC_ISSUER })
    // The first unknown kid is worth asking about (a rotation); the next ones, within the cool-down, are not.
    for (let i = 0; i < 5; i++)
      expect((await outcome(t, await impostor.issue({ sub: SUB, aud: AUDIENCE }))).code).toBe("invalid_grant")
    expect(t.oidc.requests().jwks).toBe(2)
    // And a real rotation inside the cool-down waits for it to pass: refused, not fetched.
    await t.oidc.rotate()
    expect((await outcome(t, await t.idToken(SUB))).code).toBe("invalid_grant")
    expect(t.oidc.requests().jwks).toBe(2)
  })

  it("answers 503 unavailable when the identity provider cannot be reached and nothing is cached", async () => {
    const t = await allowed()
    t.oidc.setAvailable(false)
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(503)
    expect(response.headers.get("retry-after")).toBe("5")
    expect(((await response.json()) as { code: string }).code).toBe("unavailable")
  })

  it("keeps the last good keys through failed refreshes (unreachable or malformed), for twice their max age only", async () => {
    const oidc = makeOidcProvider({ issuer: OIDC_ISSUER })
    let serving: "keys" | "down" | "malformed" = "keys"
    let jwksFetches = 0
    const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = String(input instanceof Request ? input.url : input)
      if (url.endsWith("/jwks.json")) {
        jwksFetches++
        if (serving === "down") throw new TypeError("fetch failed")
        if (serving === "malformed") return Response.json({ keys: [1] })
      }
      return oidc.fetch(input, init)
    }) as typeof globalThis.fetch
    const verifier = Oidc.make({ issuers: [OIDC_ISSUER], audience: AUDIENCE, fetch, jwksMaxAgeMillis: 10 * 60_000 })
    // The broker's clock, moved ahead of the tokens' (which are issued now and live two hours).
    let ahead = 0
    const base = Clock.make()
    const clock: Clock.Clock = {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => Date.now() + ahead,
      currentTimeMillis: Effect.sync(() => Date.now() + ahead),
      unsafeCurrentTimeNanos: () => BigInt(Date.now() + ahead) * 1_000_000n,
      currentTimeNanos: Effect.sync(() => BigInt(Date.now() + ahead) * 1_000_000n),
      sleep: (duration) => base.sleep(duration)
    }
    const verify = async () =>
      Effect.runPromise(
        Effect.either(
          Effect.withClock(
            verifier.verify(await oidc.issue({ sub: SUB, aud: AUDIENCE, expiresInSeconds: 7200 })),
            clock
          )
        )
      )
    const tagOf = (result: Awaited<ReturnType<typeof verify>>) => (Either.isLeft(result) ? result.left._tag : "ok")

    expect(tagOf(await verify())).toBe("ok")
    for (const failure of ["down", "malformed"] as const) {
      serving = failure
      ahead += 11 * 60_000 // the keys are due for a refresh, which fails: the last good set still serves
      expect(tagOf(await verify())).toBe("ok")
      const fetched = jwksFetches
      expect(tagOf(await verify())).toBe("ok") // a failed refresh is not retried within 5 s
      expect(jwksFetches).toBe(fetched)
      ahead += 10 * 60_000 // 21 minutes after the last good fetch: beyond twice the max age
      expect(tagOf(await verify())).toBe("Unavailable")
      serving = "keys"
      ahead += 5_000
      expect(tagOf(await verify())).toBe("ok") // back: fetched again after the 5 s back-off
    }
  })

  it("never fetches from a URL that is not https (or http on loopback)", () => {
    expect(isAllowedUrl("https://token.actions.githubusercontent.com")).toBe(true)
    expect(isAllowedUrl("http://127.0.0.1:8789")).toBe(true)
    expect(isAllowedUrl("http://localhost:8789/x")).toBe(true)
    expect(isAllowedUrl("http://[::1]:8789")).toBe(true)
    expect(isAllowedUrl("http://oidc.example.com")).toBe(false)
    expect(isAllowedUrl("http://127.0.0.1.nip.io")).toBe(false)
    expect(isAllowedUrl("https://user:pass@oidc.example.com")).toBe(false)
    expect(isAllowedUrl("ftp://oidc.example.com")).toBe(false)
    expect(isAllowedUrl("not a url")).toBe(false)
  })
})

describe("an identity provider that is down says so: 503 unavailable, never invalid_grant", () => {
  it("answers an unknown kid with 503 and Retry-After while the provider cannot be reached, within the cool-down too", async () => {
    const t = await allowed()
    expect((await outcome(t, await t.idToken(SUB))).status).toBe(200)
    t.oidc.setAvailable(false)
    // The provider rotated while it is unreachable: the new kid cannot be checked, which is not the caller's fault.
    await t.oidc.rotate()
    const response = await t.fetch(tokenRequest(exchangeParams(await t.idToken(SUB), t.app.installations[0]!)))
    expect(response.status).toBe(503)
    expect(response.headers.get("retry-after")).toBe("5")
    expect(((await response.json()) as { code: string }).code).toBe("unavailable")
    // Again within the cool-down: still 503 (the last fetch failed), not a 400 that clients never retry.
    expect((await outcome(t, await t.idToken(SUB))).status).toBe(503)
    expect(t.audit.at(-1)).toMatchObject({ code: "unavailable", reason: "identity_provider_unavailable" })
  })

  it("answers 503 when discovery fails with a server error", async () => {
    const t = await setup({
      policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)],
      deps: {
        oidcFetch: (async (input: RequestInfo | URL) =>
          String(input instanceof Request ? input.url : input).includes("openid-configuration")
            ? new Response("oops", { status: 500 })
            : new Response("{}")) as typeof globalThis.fetch
      }
    })
    const result = await outcome(t, await t.idToken(SUB))
    expect(result).toMatchObject({ status: 503, code: "unavailable" })
  })

  it("verifies against a static JWKS (BROKER_OIDC_JWKS) without fetching anything", async () => {
    const provider = makeOidcProvider({ issuer: OIDC_ISSUER })
    let fetched = 0
    const t = await setup({
      policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)],
      vars: { BROKER_OIDC_JWKS: JSON.stringify({ [OIDC_ISSUER]: await provider.jwks() }) },
      deps: {
        oidcFetch: (async () => {
          fetched++
          throw new TypeError("fetch failed")
        }) as typeof globalThis.fetch
      }
    })
    expect((await outcome(t, await provider.issue({ sub: SUB, aud: AUDIENCE }))).status).toBe(200)
    // Another key is simply unknown: nothing to ask, so invalid_grant.
    const other = makeOidcProvider({ issuer: OIDC_ISSUER })
    expect(await outcome(t, await other.issue({ sub: SUB, aud: AUDIENCE }))).toMatchObject({
      status: 400,
      code: "invalid_grant"
    })
    expect(fetched).toBe(0)
  })

  it("refuses a BROKER_OIDC_JWKS that is not a key set or names an untrusted issuer", async () => {
    for (const value of [
      "[]",
      JSON.stringify({ [OIDC_ISSUER]: { keys: [] } }),
      JSON.stringify({ "https://x.test": { keys: [{ kty: "RSA" }] } })
    ]) {
      const t = await setup({ vars: { BROKER_OIDC_JWKS: value } })
      const health = await t.fetch(new Request("https://broker.test/healthz"))
      expect(health.status).toBe(503)
      expect(JSON.stringify(await health.json())).toContain("BROKER_OIDC_JWKS")
    }
  })
})

describe("the maximum identity-token age (by iat)", () => {
  it("refuses a token issued over an hour ago, however far its exp (default 3600 s)", async () => {
    const t = await allowed()
    const old = await t.oidc.issue({
      sub: SUB,
      aud: AUDIENCE,
      issuedAt: now() - 3700,
      expiresInSeconds: 10 * 365 * 86400
    })
    const result = await outcome(t, old)
    expect(result).toMatchObject({ status: 400, code: "invalid_grant" })
    expect(result.detail).toContain("older than 3600 s")
    expect(t.audit.at(-1)).toMatchObject({ code: "invalid_grant", reason: "too_old" })
    const recent = await t.oidc.issue({ sub: SUB, aud: AUDIENCE, issuedAt: now() - 3500, expiresInSeconds: 3600 })
    expect((await outcome(t, recent)).status).toBe(200)
  })

  it("takes BROKER_MAX_TOKEN_AGE_SECONDS", async () => {
    const t = await setup({
      policies: ([a]) => [subjectPolicy("ci", SUB, [a!], POLICY)],
      vars: { BROKER_MAX_TOKEN_AGE_SECONDS: "300" }
    })
    const token = await t.oidc.issue({ sub: SUB, aud: AUDIENCE, issuedAt: now() - 400, expiresInSeconds: 3600 })
    expect((await outcome(t, token)).code).toBe("invalid_grant")
  })
})

describe("refusals name their reason in the audit line", () => {
  it("expired, audience, issuer, unknown_kid, malformed, no_policy, not_reachable, beyond_policy", async () => {
    const t = await allowed()
    const impostor = makeOidcProvider({ issuer: OIDC_ISSUER })
    const stranger = makeOidcProvider({ issuer: "https://stranger.test" })
    const cases: ReadonlyArray<[string, string, (string | undefined)?, string?]> = [
      ["expired", await t.oidc.issue({ sub: SUB, aud: AUDIENCE, issuedAt: now() - 600, expiresInSeconds: 500 })],
      ["audience", await t.oidc.issue({ sub: SUB, aud: "https://else.test" })],
      ["issuer", await stranger.issue({ sub: SUB, aud: AUDIENCE })],
      ["unknown_kid", await impostor.issue({ sub: SUB, aud: AUDIENCE })],
      ["malformed", "not.a.token"],
      ["no_policy", await t.oidc.issue({ sub: "someone-else", aud: AUDIENCE })],
      ["not_reachable", await t.idToken(SUB), crypto.randomUUID()],
      ["beyond_policy", await t.idToken(SUB), undefined, "organization_inventory:WRITE"]
    ]
    for (const [reason, subjectToken, installation, scope] of cases) {
      await t.fetch(tokenRequest(exchangeParams(subjectToken, installation ?? t.app.installations[0]!, scope)))
      expect(t.audit.at(-1)).toMatchObject({ outcome: "refused", reason })
    }
  })
})
