/**
 * The issuer contract: SPEC §2, App JWTs: what is accepted, and every way a JWT is refused (with its `reason`).
 */
import * as Encoding from "effect/Encoding"
import { appClaims, jsonSegment, signRs256 } from "../Keys.js"
import type { ContractContext, Json } from "./Context.js"

/** Registers the area's tests. */
export const appJwts = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, admin, problem, now, newApp } = c

  describe("§2 App JWT", () => {
    it("accepts a well-formed JWT, with iss as a string or as an equal integer", async () => {
      const { appId, jwt } = await newApp()
      expect((await api("POST", "/app/accessTokens", { token: await jwt() })).res.status).toBe(200)
      expect((await api("POST", "/app/accessTokens", { token: await jwt({ iss: Number(appId) }) })).res.status).toBe(
        200
      )
    })
    it("selects the key by kid (key id or fingerprint) and otherwise tries every active key", async () => {
      const { app, appId } = await newApp()
      const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      expect(added.res.status).toBe(201)
      const claims = appClaims(appId)
      const byOther = await signRs256(c.otherKeys.privateKey, claims)
      expect((await api("POST", "/app/accessTokens", { token: byOther })).res.status).toBe(200)
      const byId = await signRs256(c.otherKeys.privateKey, claims, { alg: "RS256", typ: "JWT", kid: added.json.id })
      expect((await api("POST", "/app/accessTokens", { token: byId })).res.status).toBe(200)
      const byFingerprint = await signRs256(c.otherKeys.privateKey, claims, {
        alg: "RS256",
        kid: added.json.fingerprint
      })
      expect((await api("POST", "/app/accessTokens", { token: byFingerprint })).res.status).toBe(200)
      // A kid naming the first key while the signature is by the second: refused.
      const wrongKid = await signRs256(c.otherKeys.privateKey, claims, { alg: "RS256", kid: app.keys[0].id })
      expect(problem(await api("POST", "/app/accessTokens", { token: wrongKid }), 401, "invalid_jwt").reason).toBe(
        "invalid_signature"
      )
    })

    const attacks: ReadonlyArray<
      readonly [
        string,
        string,
        (ctx: { appId: string; jwt: (c?: Json, h?: Json) => Promise<string> }) => Promise<string>
      ]
    > = [
      [
        "alg none",
        "unsupported_algorithm",
        async ({ appId }) => `${jsonSegment({ alg: "none", typ: "JWT" })}.${jsonSegment(appClaims(appId))}.`
      ],
      [
        "alg none (capitalised)",
        "unsupported_algorithm",
        async ({ appId }) => `${jsonSegment({ alg: "None" })}.${jsonSegment(appClaims(appId))}.`
      ],
      [
        "HS256 keyed with the public key PEM",
        "unsupported_algorithm",
        async ({ appId }) => {
          const input = `${jsonSegment({ alg: "HS256", typ: "JWT" })}.${jsonSegment(appClaims(appId))}`
          const key = await crypto.subtle.importKey(
            "raw",
            new TextEncoder().encode(c.keys.publicPem),
            { name: "HMAC", hash: "SHA-256" },
            false,
            ["sign"]
          )
          const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))
          return `${input}.${Encoding.encodeBase64Url(new Uint8Array(mac))}`
        }
      ],
      [
        "ES256",
        "unsupported_algorithm",
        async ({ appId }) => {
          const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
            "sign"
          ])) as CryptoKeyPair
          const input = `${jsonSegment({ alg: "ES256" })}.${jsonSegment(appClaims(appId))}`
          const sig = await crypto.subtle.sign(
            { name: "ECDSA", hash: "SHA-256" },
            ec.privateKey,
            new TextEncoder().encode(input)
          )
          return `${input}.${Encoding.encodeBase64Url(new Uint8Array(sig))}`
        }
      ],
      [
        "PS256 with the app's own modulus",
        "unsupported_algorithm",
        async ({ appId }) => {
          const pss = await crypto.subtle.importKey(
            "jwk",
            { ...c.keys.privateJwk, alg: "PS256" },
            { name: "RSA-PSS", hash: "SHA-256" },
            false,
            ["sign"]
          )
          const input = `${jsonSegment({ alg: "PS256" })}.${jsonSegment(appClaims(appId))}`
          const sig = await crypto.subtle.sign(
            { name: "RSA-PSS", saltLength: 32 },
            pss,
            new TextEncoder().encode(input)
          )
          return `${input}.${Encoding.encodeBase64Url(new Uint8Array(sig))}`
        }
      ],
      ["RS512", "unsupported_algorithm", async ({ jwt }) => jwt({}, { alg: "RS512" })],
      ["expired", "expired", async ({ jwt }) => jwt({ iat: now() - 600, exp: now() - 1 })],
      ["iat in the future", "iat_in_future", async ({ jwt }) => jwt({ iat: now() + 120, exp: now() + 500 })],
      ["exp too far", "exp_too_far", async ({ jwt }) => jwt({ iat: now(), exp: now() + 700 })],
      ["lifetime over 660 s", "exp_too_far", async ({ jwt }) => jwt({ iat: now() - 700, exp: now() + 30 })],
      ["exp before iat", "malformed", async ({ jwt }) => jwt({ iat: now() + 50, exp: now() + 40 })],
      ["missing iss", "missing_claim", async ({ jwt }) => jwt({ iss: undefined })],
      ["missing iat", "missing_claim", async ({ jwt }) => jwt({ iat: undefined })],
      ["missing exp", "missing_claim", async ({ jwt }) => jwt({ exp: undefined })],
      ["non-numeric iat", "malformed", async ({ jwt }) => jwt({ iat: String(now()) })],
      ["non-numeric exp", "malformed", async ({ jwt }) => jwt({ exp: "soon" })],
      ["iss of the wrong type", "malformed", async ({ jwt }) => jwt({ iss: { id: 1 } })],
      ["unknown app", "invalid_signature", async () => signRs256(c.keys.privateKey, appClaims("999999999"))],
      ["foreign key", "invalid_signature", async ({ appId }) => signRs256(c.otherKeys.privateKey, appClaims(appId))],
      [
        "tampered payload",
        "invalid_signature",
        async ({ appId, jwt }) => {
          const [h, , s] = (await jwt()).split(".")
          return `${h}.${jsonSegment({ ...appClaims(appId), exp: now() + 600 })}.${s}`
        }
      ],
      [
        "stripped signature",
        "invalid_signature",
        async ({ jwt }) => `${(await jwt()).split(".").slice(0, 2).join(".")}.`
      ],
      ["truncated signature", "invalid_signature", async ({ jwt }) => (await jwt()).slice(0, -12)],
      [
        "embedded jwk header",
        "malformed",
        async ({ jwt }) => jwt({}, { alg: "RS256", jwk: { kty: "RSA", n: c.keys.publicJwk.n, e: c.keys.publicJwk.e } })
      ],
      ["jku header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", jku: "http://127.0.0.1:9/keys" })],
      ["x5u header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", x5u: "http://127.0.0.1:9/cert" })],
      ["crit header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", crit: ["exp"] })],
      ["typ other than JWT", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", typ: "at+jwt" })],
      ["oversized token", "malformed", async ({ jwt }) => jwt({ pad: "x".repeat(5000) })],
      ["two segments", "malformed", async ({ jwt }) => (await jwt()).split(".").slice(0, 2).join(".")],
      ["garbage", "malformed", async () => "not-a-jwt"]
    ]
    for (const [label, reason, make] of attacks) {
      it(`refuses ${label}: 401 invalid_jwt (${reason})`, async () => {
        const ctx = await newApp()
        const token = await make(ctx)
        const r = await api("POST", "/app/accessTokens", { token })
        expect(problem(r, 401, "invalid_jwt").reason).toBe(reason)
      })
    }
    it("makes an unknown app and a bad signature indistinguishable", async () => {
      const { appId } = await newApp()
      const unknown = await api("POST", "/app/accessTokens", {
        token: await signRs256(c.keys.privateKey, appClaims("424242424"))
      })
      const foreign = await api("POST", "/app/accessTokens", {
        token: await signRs256(c.otherKeys.privateKey, appClaims(appId))
      })
      expect(unknown.json).toEqual(foreign.json)
    })
    it("answers an endpoint wanting a JWT that gets an access token with a detail naming the JWT", async () => {
      const { jwt } = await newApp()
      const minted = await api("POST", "/app/accessTokens", { token: await jwt() })
      const r = await api("GET", "/app/installations", { token: minted.json.token })
      expect(problem(r, 401, "invalid_jwt").detail).toMatch(/App JWT/)
    })
    it("answers a missing or non-Bearer credential with 401 missing_credentials", async () => {
      problem(await api("POST", "/app/accessTokens"), 401, "missing_credentials")
      problem(
        await api("POST", "/app/accessTokens", { headers: { authorization: "Basic dXNlcjpwYXNz" } }),
        401,
        "missing_credentials"
      )
    })
  })
}
