/**
 * An OpenID Connect identity provider in memory, for tests of code that accepts identity tokens
 * (the broker of SPEC §8): it serves discovery and its JWKS through a `fetch`, signs identity
 * tokens (RS256 or ES256) with any claims — including the wrong ones a test needs — and rotates
 * its signing key. WebCrypto only, so it runs unchanged in Node and in workerd.
 */
import * as Encoding from "effect/Encoding"

/** The signing algorithms the provider can use. */
export type OidcAlgorithm = "RS256" | "ES256"

/** Options of {@link makeOidcProvider}. */
export interface OidcProviderOptions {
  /** The issuer identifier (`iss`), e.g. `https://token.actions.example`; discovery is served beneath it. */
  readonly issuer: string
  /** The signing algorithm (default `RS256`). */
  readonly alg?: OidcAlgorithm | undefined
  /** "Now" in epoch milliseconds (default `Date.now`): `iat` and `exp` are computed from it. */
  readonly now?: (() => number) | undefined
}

/** What one identity token says. Times are epoch seconds. */
export interface IdentityTokenOptions {
  readonly sub: string
  /** `aud`: one audience or several. */
  readonly aud: string | ReadonlyArray<string>
  /** More claims, merged last: they may override `iss`, `sub`, `aud`, `iat`, `exp`, `nbf`. */
  readonly claims?: Readonly<Record<string, unknown>> | undefined
  /** `exp` - `iat` in seconds (default 300; negative for a token that has already expired). */
  readonly expiresInSeconds?: number | undefined
  /** `nbf` (absent unless given). */
  readonly notBefore?: number | undefined
  /** `iat` (default: now). */
  readonly issuedAt?: number | undefined
}

/** A JSON Web Key Set as served at `jwks_uri`. */
export interface JsonWebKeySet {
  readonly keys: ReadonlyArray<JsonWebKey & { readonly kid: string; readonly alg: string; readonly use: string }>
}

/** How often each document was fetched. */
export interface OidcRequestCounts {
  readonly discovery: number
  readonly jwks: number
  /** Every request, unknown paths included. */
  readonly total: number
}

/** An identity provider in memory. */
export interface OidcProvider {
  /** The issuer identifier. */
  readonly issuer: string
  /** `<issuer>/.well-known/openid-configuration`. */
  readonly discoveryUrl: string
  /** `<issuer>/.well-known/jwks.json`. */
  readonly jwksUri: string
  /** Serves discovery and the JWKS (404 otherwise); rejects like a network failure while {@link setAvailable}(false). */
  readonly fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** A signed identity token (compact JWS) with the current key. */
  readonly issue: (options: IdentityTokenOptions) => Promise<string>
  /** Replaces the signing key: tokens are signed with the new one, and the old one leaves the JWKS. Returns the new `kid`. */
  readonly rotate: () => Promise<string>
  /** The JWKS currently served. */
  readonly jwks: () => Promise<JsonWebKeySet>
  /** The `kid` of the current signing key. */
  readonly kid: () => Promise<string>
  /** How many requests were served. */
  readonly requests: () => OidcRequestCounts
  /** While `false`, `fetch` rejects with a `TypeError` (an unreachable provider). */
  readonly setAvailable: (available: boolean) => void
}

interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly publicJwk: JsonWebKeySet["keys"][number]
}

/** WebCrypto's parameters for each algorithm. */
const generateParams = (alg: OidcAlgorithm) =>
  alg === "RS256"
    ? {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256"
      }
    : { name: "ECDSA", namedCurve: "P-256" }

/** WebCrypto's ECDSA signature is already the raw r || s that JWS wants (RFC 7518 §3.4). */
const signParams = (alg: OidcAlgorithm) =>
  alg === "RS256" ? { name: "RSASSA-PKCS1-v1_5" } : { name: "ECDSA", hash: "SHA-256" }

const utf8 = (text: string) => new Uint8Array(new TextEncoder().encode(text))
const segment = (value: unknown) => Encoding.encodeBase64Url(JSON.stringify(value))

/** Only the public members of a JWK (WebCrypto exports `key_ops` and `ext`, which a JWKS does not carry). */
const publicMembers = (jwk: JsonWebKey): JsonWebKey => {
  const { kty, n, e, crv, x, y } = jwk
  return Object.fromEntries(
    Object.entries({ kty, n, e, crv, x, y }).filter(([, v]) => v !== undefined)
  ) as unknown as JsonWebKey
}

const generateKey = async (alg: OidcAlgorithm): Promise<SigningKey> => {
  const pair = (await crypto.subtle.generateKey(generateParams(alg), true, ["sign", "verify"])) as CryptoKeyPair
  const exported = publicMembers((await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey)
  const kid = Encoding.encodeBase64Url(crypto.getRandomValues(new Uint8Array(12)))
  return { kid, privateKey: pair.privateKey, publicJwk: { ...exported, kid, alg, use: "sig" } }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })

/** Makes an identity provider for `issuer`; its first key is generated on first use. */
export const makeOidcProvider = (options: OidcProviderOptions): OidcProvider => {
  const alg = options.alg ?? "RS256"
  const now = options.now ?? Date.now
  const base = options.issuer.replace(/\/+$/, "")
  const discoveryUrl = `${base}/.well-known/openid-configuration`
  const jwksUri = `${base}/.well-known/jwks.json`
  let current: Promise<SigningKey> | undefined
  const key = () => {
    current ??= generateKey(alg)
    return current
  }
  const counts = { discovery: 0, jwks: 0, total: 0 }
  let available = true

  const jwks = async (): Promise<JsonWebKeySet> => ({ keys: [(await key()).publicJwk] })

  const fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init)
    counts.total++
    if (!available) throw new TypeError("fetch failed (the identity provider is unavailable)")
    const url = new URL(request.url)
    const target = `${url.origin}${url.pathname}`
    if (request.method !== "GET") return json({ error: "method not allowed" }, 405)
    if (target === discoveryUrl) {
      counts.discovery++
      return json({
        issuer: options.issuer,
        jwks_uri: jwksUri,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [alg],
        claims_supported: ["sub", "aud", "exp", "iat", "iss", "nbf"]
      })
    }
    if (target === jwksUri) {
      counts.jwks++
      return json(await jwks())
    }
    return json({ error: "not found" }, 404)
  }

  const issue = async (token: IdentityTokenOptions): Promise<string> => {
    const signing = await key()
    const iat = token.issuedAt ?? Math.floor(now() / 1000)
    const claims = {
      iss: options.issuer,
      sub: token.sub,
      aud: typeof token.aud === "string" ? token.aud : [...token.aud],
      iat,
      exp: iat + (token.expiresInSeconds ?? 300),
      ...(token.notBefore !== undefined ? { nbf: token.notBefore } : {}),
      ...token.claims
    }
    const input = `${segment({ alg, typ: "JWT", kid: signing.kid })}.${segment(claims)}`
    const signature = await crypto.subtle.sign(signParams(alg), signing.privateKey, utf8(input))
    return `${input}.${Encoding.encodeBase64Url(new Uint8Array(signature))}`
  }

  return {
    issuer: options.issuer,
    discoveryUrl,
    jwksUri,
    fetch,
    issue,
    rotate: async () => {
      const next = generateKey(alg)
      await next
      current = next
      return (await next).kid
    },
    jwks,
    kid: async () => (await key()).kid,
    requests: () => ({ ...counts }),
    setAvailable: (value) => {
      available = value
    }
  }
}
