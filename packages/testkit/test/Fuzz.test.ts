/**
 * Fuzzing in every `npm test`: property-based (fast-check, as `effect` ships it) mutations of real
 * App JWTs and access tokens thrown at the in-memory issuer — the real handlers. Whatever arrives,
 * the issuer must accept none of it, never fail with a 5xx, and answer every one with a SPEC §6
 * problem document that echoes no credential.
 */
import { FastCheck as fc } from "effect"
import * as Encoding from "effect/Encoding"
import { beforeAll, describe, expect, it } from "vitest"
import { type InMemoryIssuer, makeFakeIssuer } from "../src/FakeIssuer.js"
import { type AppKeyPair, appClaims, generateAppKeyPair, jsonSegment, signRs256 } from "../src/Keys.js"

const JWT_RUNS = 10_000
const TOKEN_RUNS = 2_500
const BASE = "http://icr.test"

/** SPEC §6: every code and the one status it goes with. */
const CODES: Readonly<Record<string, number>> = {
  invalid_request: 400,
  unsupported_api_version: 400,
  missing_credentials: 401,
  invalid_jwt: 401,
  invalid_token: 401,
  installation_suspended: 403,
  admin_disabled: 403,
  forbidden: 403,
  not_found: 404,
  installation_not_found: 404,
  app_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  permissions_exceed_grant: 422,
  invalid_public_key: 422,
  invalid_permissions: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503
}
const REASONS = new Set([
  "malformed",
  "unsupported_algorithm",
  "expired",
  "iat_in_future",
  "exp_too_far",
  "invalid_signature",
  "missing_claim"
])

/** What a run saw. */
interface Tally {
  sent: number
  accepted: number
  serverErrors: number
  /** Answers that were not a SPEC §6 problem document, described (the first few). */
  readonly malformed: Array<string>
  readonly byCode: Map<string, number>
}
const tally = (): Tally => ({ sent: 0, accepted: 0, serverErrors: 0, malformed: [], byCode: new Map() })

/** Sends one request and checks its answer; every deviation is counted, not thrown (so a run reports them all). */
const probe = async (issuer: InMemoryIssuer, t: Tally, method: string, path: string, credential: string) => {
  let request: Request
  try {
    request = new Request(BASE + path, { method, headers: { authorization: `Bearer ${credential}` } })
  } catch {
    return // Not a sendable header value (no client could send it either).
  }
  t.sent++
  const res = await issuer.fetch(request)
  const text = await res.text()
  if (res.status < 400) t.accepted++
  if (res.status >= 500) t.serverErrors++
  const wrong = (why: string) => {
    if (t.malformed.length < 5)
      t.malformed.push(`${method} ${path} → ${res.status}: ${why} (${credential.slice(0, 80)})`)
  }
  if (res.status < 400) return wrong("accepted")
  if (!/^application\/problem\+json/.test(res.headers.get("content-type") ?? "")) return wrong("not problem+json")
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text)
  } catch {
    return wrong("body is not JSON")
  }
  const code = String(body.code)
  const key = code === "invalid_jwt" ? `${code}:${String(body.reason)}` : code
  t.byCode.set(key, (t.byCode.get(key) ?? 0) + 1)
  if (CODES[code] !== res.status || body.status !== res.status) return wrong(`code ${code} with status ${body.status}`)
  if (typeof body.type !== "string" || typeof body.title !== "string") return wrong("no type or title")
  if (typeof body.detail !== "string" || body.detail.length === 0) return wrong("no detail")
  if (code === "invalid_jwt" && !REASONS.has(String(body.reason))) return wrong(`reason ${String(body.reason)}`)
  // SPEC §1 (RFC 6750 §3.1): the realm, and the error only when the request sent credentials.
  const sent = (request.headers.get("authorization") ?? "").trim() !== ""
  const challenge = sent ? 'Bearer realm="icr-apps", error="invalid_token"' : 'Bearer realm="icr-apps"'
  if (res.status === 401 && res.headers.get("www-authenticate") !== challenge) {
    return wrong(`401 with WWW-Authenticate ${res.headers.get("www-authenticate")}`)
  }
  if (credential.length >= 16 && text.includes(credential)) return wrong("echoes the credential")
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const decode = (segment: string): Uint8Array => {
  const bytes = Encoding.decodeBase64Url(segment)
  return bytes._tag === "Right" ? bytes.right : new TextEncoder().encode(segment)
}
const encode = (bytes: Uint8Array): string => Encoding.encodeBase64Url(bytes)
const utf8 = (text: string) => new TextEncoder().encode(text)
const json = (segment: string): Record<string, unknown> => {
  try {
    const value = JSON.parse(new TextDecoder().decode(decode(segment)))
    return typeof value === "object" && value !== null ? value : {}
  } catch {
    return {}
  }
}
const withSegment = (jwt: string, index: number, segment: string) => {
  const parts = jwt.split(".")
  parts[index] = segment
  return parts.join(".")
}
/** Another spelling of the same bytes: the unused low bits of the last character set (when it has any). */
const trailingBits = (segment: string, bits: number): string => {
  // L characters carry 6L bits, of which the last (6L mod 8) are unused: 0, 4 or 2.
  const unused = (segment.length * 6) % 8
  if (unused === 0 || segment.length === 0) return `${segment}=`
  const last = B64URL.indexOf(segment.at(-1)!)
  const mask = (1 << unused) - 1
  const variant = (last & ~mask) | ((bits % mask) + 1)
  return segment.slice(0, -1) + B64URL[variant]
}

/** Any value a JSON member might be set to by an attacker. */
const anyJson = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -1, 1.5, 1e308, "", " ", "RS256", "none", [], {}, "1", "01"),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 40 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 })
)
/** Printable ASCII (what an Authorization header can carry). */
const printable = (maxLength: number) =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength })

describe("fuzzing the issuer (in memory)", () => {
  let issuer: InMemoryIssuer
  let keys: AppKeyPair
  let foreign: AppKeyPair
  let other: AppKeyPair
  let appId: string
  let otherAppId: string
  let installationId: string
  let keyId: string
  /** Valid JWTs (what the mutations start from); none of them is ever sent. */
  let originals: Array<string>
  /** JWTs that must be refused as they are: another key, another app, another algorithm. */
  let forged: Array<string>
  /** Live access tokens (mutated, never sent as they are) and dead ones (sent as they are too). */
  let liveTokens: Array<string>
  let deadTokens: Array<string>
  let mintsBefore: number

  beforeAll(async () => {
    issuer = makeFakeIssuer()
    ;[keys, foreign, other] = await Promise.all([generateAppKeyPair(), generateAppKeyPair(), generateAppKeyPair()])
    const app = await issuer.arrange.createApp({ publicKey: keys.publicPem })
    appId = app.id
    keyId = app.keys[0]!.id
    otherAppId = (await issuer.arrange.createApp({ publicKey: other.publicPem })).id
    installationId = (await issuer.arrange.install(appId)).id
    const claims = appClaims(appId)
    originals = await Promise.all([
      signRs256(keys.privateKey, claims),
      signRs256(keys.privateKey, claims, { alg: "RS256", typ: "JWT", kid: keyId }),
      signRs256(keys.privateKey, claims, { alg: "RS256", kid: app.keys[0]!.fingerprint }),
      signRs256(keys.privateKey, { ...claims, iss: Number(appId) }, { alg: "RS256" })
    ])
    const header = jsonSegment({ alg: "RS256", typ: "JWT" })
    const hs256 = async (secret: string) => {
      const hmac = await crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, [
        "sign"
      ])
      const input = `${jsonSegment({ alg: "HS256", typ: "JWT" })}.${jsonSegment(claims)}`
      return `${input}.${encode(new Uint8Array(await crypto.subtle.sign("HMAC", hmac, utf8(input))))}`
    }
    const pkcs8 = Encoding.decodeBase64(keys.privatePem.replace(/-----[^-]+-----|\s/g, ""))
    const pss = await crypto.subtle.importKey(
      "pkcs8",
      new Uint8Array(pkcs8._tag === "Right" ? pkcs8.right : []),
      { name: "RSA-PSS", hash: "SHA-256" },
      false,
      ["sign"]
    )
    const psInput = `${jsonSegment({ alg: "PS256", typ: "JWT" })}.${jsonSegment(claims)}`
    const ps256 = `${psInput}.${encode(new Uint8Array(await crypto.subtle.sign({ name: "RSA-PSS", saltLength: 32 }, pss, utf8(psInput))))}`
    forged = [
      await signRs256(foreign.privateKey, claims), // a key nobody registered
      await signRs256(other.privateKey, claims), // another app's key, claiming this app
      await signRs256(other.privateKey, claims, { alg: "RS256", kid: keyId }),
      await signRs256(keys.privateKey, appClaims(otherAppId)), // this app's key, claiming another app
      await signRs256(keys.privateKey, appClaims("987654321")), // an app that does not exist
      await hs256(keys.publicPem), // alg confusion: the public key as an HMAC secret
      await hs256(keyId),
      ps256,
      `${jsonSegment({ alg: "none", typ: "JWT" })}.${jsonSegment(claims)}.`,
      `${jsonSegment({ alg: "none" })}.${jsonSegment(claims)}.${originals[0]!.split(".")[2]}`,
      `${header}.${jsonSegment(claims)}.`,
      await signRs256(keys.privateKey, { ...claims, exp: claims.iat + 661 + 60 }),
      await signRs256(keys.privateKey, { ...claims, iat: claims.iat + 3600, exp: claims.exp + 3600 }),
      await signRs256(keys.privateKey, { ...claims, iat: claims.iat - 3600, exp: claims.exp - 3600 }),
      await signRs256(keys.privateKey, { iss: appId }),
      await signRs256(keys.privateKey, claims, { alg: "RS256", jku: "https://attacker.test/jwks" }),
      await signRs256(keys.privateKey, claims, { alg: "RS256", jwk: keys.publicJwk }),
      await signRs256(keys.privateKey, claims, { alg: "RS256", crit: ["exp"] }),
      await signRs256(keys.privateKey, claims, { alg: "RS256", typ: "JOSE+JSON" })
    ]

    // Access tokens: live ones to mutate; dead ones (revoked, killed, uninstalled) that must stay dead.
    const mint = async (path: string, jwt: string) => {
      const res = await issuer.fetch(`${BASE}${path}`, { method: "POST", headers: { authorization: `Bearer ${jwt}` } })
      expect(res.status).toBe(200)
      return ((await res.json()) as { token: string }).token
    }
    const jwt = originals[0]!
    liveTokens = [
      await mint("/app/accessTokens", jwt),
      await mint(`/app/installations/${installationId}/accessTokens`, jwt)
    ]
    const revoked = await mint("/app/accessTokens", jwt)
    await issuer.fetch(`${BASE}/app/installations/token`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${revoked}` }
    })
    // Ended by kill switches, though what they stand on is back: unsuspended, permissions widened again,
    // the app's tokens revoked; and one whose installation is gone.
    const [suspendedOnce, narrowedOnce, gone] = [
      (await issuer.arrange.install(appId)).id,
      (await issuer.arrange.install(appId)).id,
      (await issuer.arrange.install(appId)).id
    ]
    const unsuspended = await mint(`/app/installations/${suspendedOnce}/accessTokens`, jwt)
    await issuer.arrange.suspend(suspendedOnce)
    await issuer.arrange.unsuspend(suspendedOnce)
    const rewidened = await mint(`/app/installations/${narrowedOnce}/accessTokens`, jwt)
    await issuer.arrange.setPermissions(narrowedOnce, { organization_info: "VIEW" })
    await issuer.arrange.setPermissions(narrowedOnce, app.permissions) // as installed: the app's declared ones
    const otherJwt = await signRs256(other.privateKey, appClaims(otherAppId))
    const appRevoked = await mint("/app/accessTokens", otherJwt)
    await issuer.admin("POST", `/admin/apps/${otherAppId}/revokeTokens`)
    const uninstalled = await mint(`/app/installations/${gone}/accessTokens`, jwt)
    await issuer.arrange.uninstall(gone)
    deadTokens = [revoked, unsuspended, rewidened, appRevoked, uninstalled]
    mintsBefore = issuer.auditEvents().filter((e) => e.action.endsWith(".mint") && e.outcome === "success").length
  }, 60_000)

  /** The mutations of a JWT: each a way an attacker (or a broken client) might get one wrong. */
  const mutatedJwt = () => {
    const base = fc.constantFrom(...originals)
    const segment = fc.integer({ min: 0, max: 2 })
    /** A JWT with one member of its header (0) or claims (1) set to a value, or removed (`undefined`). */
    const memberChanged = (index: 0 | 1, names: ReadonlyArray<string>, values: fc.Arbitrary<unknown>) =>
      fc.tuple(base, fc.constantFrom(...names), values).map(([jwt, name, value]) => {
        const members = json(jwt.split(".")[index]!)
        if (value === undefined) delete members[name]
        else members[name] = value
        return withSegment(jwt, index, jsonSegment(members))
      })
    return fc.oneof(
      // A bit flipped in the bytes of a segment, re-encoded canonically.
      {
        weight: 6,
        arbitrary: fc.tuple(base, segment, fc.nat()).map(([jwt, i, at]) => {
          const bytes = decode(jwt.split(".")[i]!)
          if (bytes.length === 0) return `${jwt}x`
          const flipped = bytes.slice()
          flipped[at % bytes.length] = flipped[at % bytes.length]! ^ (1 << (at % 8))
          return withSegment(jwt, i, encode(flipped))
        })
      },
      // A character of the compact form replaced.
      {
        weight: 3,
        arbitrary: fc
          .tuple(base, fc.nat(), fc.integer({ min: 0x21, max: 0x7e }))
          .map(
            ([jwt, at, c]) => jwt.slice(0, at % jwt.length) + String.fromCharCode(c) + jwt.slice((at % jwt.length) + 1)
          )
      },
      // A header member changed, added or removed (the signature no longer covers it).
      {
        weight: 4,
        arbitrary: memberChanged(
          0,
          ["alg", "typ", "kid", "jku", "x5u", "jwk", "x5c", "crit", "cty", "b64", "zip", "enc"],
          fc.oneof(
            anyJson,
            fc.constantFrom<unknown>("none", "HS256", "RS384", "RS512", "PS256", "ES256", "EdDSA", "rs256", "RS256 "),
            fc.constant(undefined)
          )
        )
      },
      // A claim changed, added or removed.
      {
        weight: 4,
        arbitrary: memberChanged(
          1,
          ["iss", "iat", "exp", "nbf", "sub", "aud", "jti"],
          fc.oneof(
            anyJson,
            fc.constantFrom<unknown>(otherAppId, Number(otherAppId), "987654321", `${appId} `, `0${appId}`),
            fc.integer({ min: -1e10, max: 1e10 }),
            fc.constant(undefined)
          )
        )
      },
      // Segments that are not JSON objects, or not base64url at all.
      {
        weight: 2,
        arbitrary: fc
          .tuple(
            base,
            fc.integer({ min: 0, max: 1 }),
            fc.oneof(
              fc.uint8Array({ maxLength: 64 }).map(encode),
              printable(40).map((s) => encode(utf8(s))),
              anyJson.map((v) => encode(utf8(JSON.stringify(v) ?? "null"))),
              fc.constantFrom("", "e30", "W10", "bnVsbA", "eyJhbGciOiJSUzI1NiJ9eyJ9", "!!!", "%7B%7D")
            )
          )
          .map(([jwt, i, segment]) => withSegment(jwt, i, segment))
      },
      // Other spellings of the same bytes: padding, the standard alphabet, trailing bits, whitespace.
      {
        weight: 4,
        arbitrary: fc.tuple(base, segment, fc.nat(), fc.integer({ min: 0, max: 4 })).map(([jwt, i, bits, how]) => {
          const s = jwt.split(".")[i]!
          const spelled = [
            trailingBits(s, bits),
            `${s}=`,
            `${s}==`,
            s.replace(/-/g, "+").replace(/_/g, "/") === s ? `${s}+` : s.replace(/-/g, "+").replace(/_/g, "/"),
            `${s.slice(0, Math.max(1, s.length >> 1))} ${s.slice(Math.max(1, s.length >> 1))}`
          ][how]!
          return withSegment(jwt, i, spelled)
        })
      },
      // Structure: segments duplicated, dropped, reordered, extra dots, truncation, concatenation.
      {
        weight: 3,
        arbitrary: fc.tuple(base, fc.integer({ min: 0, max: 9 }), fc.nat()).map(([jwt, how, at]) => {
          const [h, p, s] = jwt.split(".") as [string, string, string]
          return [
            `${h}.${p}.${s}.${s}`,
            `${h}.${h}.${s}`,
            `${h}.${p}.${p}`,
            `${p}.${h}.${s}`,
            `${h}.${p}`,
            `${h}..${s}`,
            `.${p}.${s}`,
            `${h}.${p}.${s}.`,
            jwt.slice(0, at % jwt.length),
            `${jwt}${jwt}`
          ][how]!
        })
      },
      // Oversized: a segment blown up past the JWT and Authorization limits.
      {
        weight: 1,
        arbitrary: fc
          .tuple(base, segment, fc.integer({ min: 1, max: 12 }))
          .map(([jwt, i, k]) => withSegment(jwt, i, jwt.split(".")[i]!.repeat(k * 20)))
      },
      // Forged JWTs, as they are and with a bit flipped.
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom(...forged), fc.boolean(), fc.nat())
          .map(([jwt, flip, at]) =>
            flip
              ? jwt.slice(0, at % jwt.length) +
                (jwt[at % jwt.length] === "A" ? "B" : "A") +
                jwt.slice((at % jwt.length) + 1)
              : jwt
          )
      },
      // Anything at all.
      { weight: 1, arbitrary: printable(300) }
    )
  }

  /** The JWT endpoints a mutation is sent to, in turn. */
  const jwtRoutes = (): Array<readonly [string, string]> => [
    ["POST", "/app/accessTokens"],
    ["POST", `/app/installations/${installationId}/accessTokens`],
    ["GET", "/app/installations?limit=1"],
    ["GET", `/app/installations/${installationId}`]
  ]

  it(`accepts none of ${JWT_RUNS.toLocaleString("en")} mutated App JWTs, never fails with a 5xx, answers each with a SPEC §6 problem`, async () => {
    const t = tally()
    const routes = jwtRoutes()
    const known = new Set(originals)
    const started = performance.now()
    await fc.assert(
      // A mutation that undid itself (a member set to the value it had) is the valid JWT: not a mutation.
      fc.asyncProperty(
        mutatedJwt().filter((jwt) => !known.has(jwt)),
        async (jwt) => {
          const [method, path] = routes[t.sent % routes.length]!
          await probe(issuer, t, method, path, jwt)
        }
      ),
      { numRuns: JWT_RUNS }
    )
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    console.log(
      `fuzz: ${t.sent} JWTs, ${t.accepted} accepted, ${t.serverErrors} 5xx, ${t.malformed.length} not a problem document (${seconds} s)`
    )
    console.log(`fuzz: JWT answers by code ${JSON.stringify(Object.fromEntries(t.byCode))}`)
    expect(t.malformed).toEqual([])
    expect(t.accepted).toBe(0)
    expect(t.serverErrors).toBe(0)
    expect(t.sent).toBe(JWT_RUNS)
    // The forged JWTs, each once as it is, too.
    for (const jwt of forged) await probe(issuer, t, "POST", "/app/accessTokens", jwt)
    expect({ accepted: t.accepted, serverErrors: t.serverErrors, malformed: t.malformed }).toEqual({
      accepted: 0,
      serverErrors: 0,
      malformed: []
    })
  }, 120_000)

  it(`accepts none of ${TOKEN_RUNS.toLocaleString("en")} mutated access tokens, never fails with a 5xx, answers each with a SPEC §6 problem`, async () => {
    const t = tally()
    const known = new Set(liveTokens)
    const hex = "0123456789abcdef"
    const token = fc.oneof(
      // One hex digit changed: the right shape, an unknown digest.
      {
        weight: 5,
        arbitrary: fc
          .tuple(fc.constantFrom(...liveTokens), fc.nat(), fc.integer({ min: 1, max: 15 }))
          .map(([s, at, d]) => {
            const i = 4 + (at % 48)
            return s.slice(0, i) + hex[(hex.indexOf(s[i]!) + d) % 16] + s.slice(i + 1)
          })
      },
      // Case, prefix, length and alphabet.
      {
        weight: 4,
        arbitrary: fc
          .tuple(fc.constantFrom(...liveTokens), fc.integer({ min: 0, max: 11 }), fc.nat())
          .map(([s, how, at]) => {
            const body = s.slice(4)
            return [
              s.toUpperCase(),
              `CRS_${body}`,
              `crs-${body}`,
              `crt_${body}`,
              body,
              `crs_${body.slice(0, 47)}`,
              `${s}0`,
              `crs_${body.toUpperCase()}`,
              `${s.slice(0, 4 + (at % 48))}g${s.slice(5 + (at % 48))}`,
              `${s}.${s}`,
              `crs_${body}${body}`,
              `crs_${Encoding.encodeBase64Url(Encoding.decodeHex(body).pipe((r) => (r._tag === "Right" ? r.right : new Uint8Array())))}`
            ][how]!
          })
      },
      // Random ones with the prefix, and anything at all.
      { weight: 2, arbitrary: fc.stringMatching(/^crs_[0-9a-f]{40,56}$/) },
      { weight: 1, arbitrary: printable(80) },
      // Dead tokens exactly as they were: revoked, ended by a kill switch, of an uninstalled installation.
      { weight: 2, arbitrary: fc.constantFrom(...deadTokens) }
    )
    const started = performance.now()
    await fc.assert(
      fc.asyncProperty(
        token.filter((credential) => !known.has(credential)),
        fc.boolean(),
        async (credential, describe) => {
          await probe(issuer, t, describe ? "GET" : "DELETE", "/app/installations/token", credential)
        }
      ),
      { numRuns: TOKEN_RUNS }
    )
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    console.log(
      `fuzz: ${t.sent} access tokens, ${t.accepted} accepted, ${t.serverErrors} 5xx, ${t.malformed.length} not a problem document (${seconds} s)`
    )
    expect(t.malformed).toEqual([])
    expect(t.accepted).toBe(0)
    expect(t.serverErrors).toBe(0)
    expect(t.sent).toBe(TOKEN_RUNS)
    // The live tokens were never hit: they still work, nothing was minted, and no event holds a secret.
    for (const live of liveTokens) {
      const res = await issuer.fetch(`${BASE}/app/installations/token`, {
        headers: { authorization: `Bearer ${live}` }
      })
      expect(res.status).toBe(200)
    }
    const events = issuer.auditEvents()
    expect(events.filter((e) => e.action.endsWith(".mint") && e.outcome === "success")).toHaveLength(mintsBefore)
    const text = JSON.stringify(events)
    for (const secret of [...liveTokens, ...deadTokens, ...originals, issuer.adminToken])
      expect(text).not.toContain(secret)
  }, 120_000)
})
