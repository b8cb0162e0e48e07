import * as Encoding from "effect/Encoding"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { makeOidcProvider, type OidcAlgorithm } from "../src/Oidc.js"

const ISSUER = "https://oidc.test/tenant"

const decodeSegment = (segment: string): Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(Either.getOrThrow(Encoding.decodeBase64Url(segment))))

/** Verifies a compact JWS against a JWKS with WebCrypto alone, as a relying party would. */
const verify = async (jwt: string, keys: ReadonlyArray<JsonWebKey & { kid: string }>) => {
  const [h, p, s] = jwt.split(".") as [string, string, string]
  const header = decodeSegment(h)
  const jwk = keys.find((k) => k.kid === header.kid)
  if (jwk === undefined) return false
  const params =
    header.alg === "ES256"
      ? { import: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } }
      : { import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } }
  const key = await crypto.subtle.importKey("jwk", jwk, params.import, false, ["verify"])
  return crypto.subtle.verify(
    params.verify,
    key,
    new Uint8Array(Either.getOrThrow(Encoding.decodeBase64Url(s))),
    new TextEncoder().encode(`${h}.${p}`)
  )
}

describe("in-memory OIDC provider", () => {
  it("serves discovery that names the issuer and its JWKS, and counts requests", async () => {
    const provider = makeOidcProvider({ issuer: ISSUER })
    const discovery = await provider.fetch(`${ISSUER}/.well-known/openid-configuration`)
    expect(discovery.status).toBe(200)
    const document = (await discovery.json()) as Record<string, unknown>
    expect(document).toMatchObject({
      issuer: ISSUER,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: ["RS256"]
    })
    const jwks = (await (await provider.fetch(String(document.jwks_uri))).json()) as { keys: Array<JsonWebKey> }
    expect(jwks.keys).toHaveLength(1)
    expect(jwks.keys[0]).toMatchObject({ kty: "RSA", alg: "RS256", use: "sig" })
    // Only public members: no private exponent, no WebCrypto export flags.
    expect(Object.keys(jwks.keys[0]!).sort()).toEqual(["alg", "e", "kid", "kty", "n", "use"])
    expect((await provider.fetch(`${ISSUER}/elsewhere`)).status).toBe(404)
    expect(provider.requests()).toEqual({ discovery: 1, jwks: 1, total: 3 })
  })

  it.each<OidcAlgorithm>(["RS256", "ES256"])("issues %s tokens that verify against its JWKS", async (alg) => {
    const provider = makeOidcProvider({ issuer: ISSUER, alg, now: () => 1_700_000_000_000 })
    const jwt = await provider.issue({ sub: "repo:acme/app:ref:refs/heads/main", aud: "icr-broker" })
    const [h, p] = jwt.split(".") as [string, string]
    expect(decodeSegment(h)).toEqual({ alg, typ: "JWT", kid: await provider.kid() })
    expect(decodeSegment(p)).toEqual({
      iss: ISSUER,
      sub: "repo:acme/app:ref:refs/heads/main",
      aud: "icr-broker",
      iat: 1_700_000_000,
      exp: 1_700_000_300
    })
    expect(await verify(jwt, (await provider.jwks()).keys)).toBe(true)
    if (alg === "ES256") expect(jwt.split(".")[2]!.length).toBe(86) // 64 raw bytes (r || s), not DER
  })

  it("takes any claims, times and audiences a test needs, however wrong", async () => {
    const provider = makeOidcProvider({ issuer: ISSUER })
    const jwt = await provider.issue({
      sub: "s",
      aud: ["a", "b"],
      issuedAt: 100,
      expiresInSeconds: -50,
      notBefore: 90,
      claims: { iss: "https://elsewhere.test", repository: "acme/app" }
    })
    expect(decodeSegment(jwt.split(".")[1]!)).toEqual({
      iss: "https://elsewhere.test",
      sub: "s",
      aud: ["a", "b"],
      iat: 100,
      exp: 50,
      nbf: 90,
      repository: "acme/app"
    })
  })

  it("rotates: new tokens carry the new kid, and the old key leaves the JWKS", async () => {
    const provider = makeOidcProvider({ issuer: ISSUER, alg: "ES256" })
    const before = await provider.issue({ sub: "s", aud: "a" })
    const oldKid = await provider.kid()
    const newKid = await provider.rotate()
    expect(newKid).not.toBe(oldKid)
    const after = await provider.issue({ sub: "s", aud: "a" })
    const { keys } = await provider.jwks()
    expect(keys.map((k) => k.kid)).toEqual([newKid])
    expect(await verify(after, keys)).toBe(true)
    expect(await verify(before, keys)).toBe(false)
  })

  it("can be made unreachable, like a provider that is down", async () => {
    const provider = makeOidcProvider({ issuer: ISSUER })
    provider.setAvailable(false)
    await expect(provider.fetch(provider.jwksUri)).rejects.toThrow(TypeError)
    provider.setAvailable(true)
    expect((await provider.fetch(provider.jwksUri)).status).toBe(200)
  })
})
