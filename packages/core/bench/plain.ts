/**
 * The yardstick of issue 12: the issuer's hot paths (`GET /healthz`, describe, mint) written the
 * plain way — one `fetch`-style function, `jose` for the signature, `crypto.subtle` for the digest,
 * no framework — doing every piece of work the SPEC requires of those paths, so that a ratio
 * against it measures the framework and the design, not skipped work:
 *
 * - §1 common rules: `x-icr-api-version` check, `Authorization` length cap, request id (the caller's
 *   when sane), body cap (16 KiB, declared and read), JSON body checks, 404/405 with `Allow`, problem
 *   documents with `code`, `WWW-Authenticate` on 401, the security headers, `Date`, a final newline.
 * - §2 App JWT: length cap, three canonical base64url segments, header allow-list (`jku`, `x5u`, `jwk`,
 *   `x5c`, `crit` refused), RS256 only, `typ`, `kid` by id or fingerprint, `iss`/`iat`/`exp` rules with
 *   60 s skew, keys whose modulus cannot have made the signature skipped, an unknown app verified
 *   against a dummy key (same timing), imported keys cached by fingerprint.
 * - §2/§4 access token: `crs_` + 48 hex, SHA-256 digest lookup, the record's own expiry, revocation,
 *   the installation's existence, ownership, suspension and current grant on every use.
 * - §4 mint: UUID path id, the installation of this app, not suspended, narrowing within the grant
 *   (unknown names and levels refused), 24 CSPRNG bytes, only the digest stored, `Cache-Control: no-store`.
 *
 * Storage is an interface ({@link PlainStorage}) so that the same function runs in process over Maps
 * ({@link memoryStorage}) and in workerd over D1 (packages/worker/bench/plain-worker.ts).
 * When the issuer gains work the SPEC requires of these paths (the audit event of every mint, §5),
 * add it here too, or the ratios flatter the issuer.
 */
import { compactVerify, importSPKI } from "jose"

export const API_VERSION = "2023-06-16"
const MAX_BODY_BYTES = 16 * 1024
const MAX_AUTHORIZATION_LENGTH = 8 * 1024
const MAX_JWT_LENGTH = 4096
const SKEW = 60
const MAX_LIFETIME = 660

/** Permission names and the levels each may take (SPEC §3), in canonical order. */
const CATALOG: Readonly<Record<string, ReadonlyArray<string>>> = {
  organization_info: ["VIEW"],
  organization_members: ["VIEW"],
  organization_projects: ["VIEW"],
  organization_warehouse: ["VIEW", "WRITE"],
  organization_inventory: ["VIEW", "REQUEST", "WRITE"]
}
const NAMES = Object.keys(CATALOG)
const RANK: Readonly<Record<string, number>> = { VIEW: 0, REQUEST: 1, WRITE: 2 }

export type Grant = Readonly<Record<string, string>>

export interface PlainKey {
  readonly id: string
  readonly fingerprint: string
  /** SPKI DER, base64. */
  readonly spki: string
  /** The key's last deletion (ms), when it was registered again: JWTs issued before it never verify (SPEC §4). */
  readonly notBefore?: number | null
}
export interface PlainApp {
  readonly id: string
  readonly permissions: Grant
  readonly keys: ReadonlyArray<PlainKey>
}
export interface PlainInstallation {
  readonly id: string
  readonly appId: string
  readonly organizationId: string
  readonly permissions: Grant
  readonly suspendedAt: number | null
  /** The kill-switch epochs of SPEC §5: the installation's, and its app's read with it. */
  readonly tokenEpoch: number
  readonly appTokenEpoch: number
}
export interface PlainToken {
  readonly id: string
  readonly kind: "app" | "installation"
  readonly appId: string
  readonly installationId?: string
  readonly organizationId?: string
  readonly permissions: Grant
  readonly createdAt: number
  readonly expiresAt: number
  /** The epochs it was minted under: honoured only while both are current. */
  readonly appEpoch: number
  readonly installationEpoch: number
}

/** The storage the plain handler needs: each method is one round trip in the worker. */
export interface PlainStorage {
  /** The app with its active keys, and the installation: one read (a D1 batch). */
  readonly loadForMint: (
    appId: string,
    installationId: string
  ) => Promise<{ readonly app: PlainApp | undefined; readonly installation: PlainInstallation | undefined }>
  /** Stores a token by digest (expired ones may be pruned in the same write): one write. */
  readonly putToken: (digest: string, token: PlainToken) => Promise<void>
  /**
   * The token with its standing — revoked or not, and the installation (installation tokens) or
   * whether the app exists — in one read (one D1 statement in the worker).
   */
  readonly findToken: (digest: string) => Promise<
    | {
        readonly token: PlainToken
        readonly revoked: boolean
        readonly installation: PlainInstallation | undefined
        readonly appExists: boolean
      }
    | undefined
  >
}

/** Maps, as a plain in-process server would keep them. */
export const memoryStorage = (
  apps: Map<string, PlainApp>,
  installations: Map<string, PlainInstallation>
): PlainStorage & { readonly tokens: Map<string, { token: PlainToken; revoked: boolean }> } => {
  const tokens = new Map<string, { token: PlainToken; revoked: boolean }>()
  return {
    tokens,
    loadForMint: async (appId, installationId) => ({
      app: apps.get(appId),
      installation: installations.get(installationId)
    }),
    putToken: async (digest, token) => {
      // Prunes like the issuer's memory registry: a bounded look at the oldest entries.
      let looked = 0
      for (const [key, entry] of tokens) {
        if (looked++ >= 100) break
        if (entry.token.expiresAt < token.createdAt) tokens.delete(key)
      }
      tokens.set(digest, { token, revoked: false })
    },
    findToken: async (digest) => {
      const entry = tokens.get(digest)
      if (entry === undefined) return undefined
      const { token } = entry
      return {
        token,
        revoked: entry.revoked,
        installation: token.installationId === undefined ? undefined : installations.get(token.installationId),
        appExists: token.kind === "app" && apps.has(token.appId)
      }
    }
  }
}

// --- responses ---------------------------------------------------------------------------------

const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ["x-content-type-options", "nosniff"],
  ["x-frame-options", "DENY"],
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'"],
  ["referrer-policy", "no-referrer"],
  ["strict-transport-security", "max-age=63072000; includeSubDomains"],
  ["cache-control", "no-store"]
]

const TITLES: Readonly<Record<string, string>> = {
  invalid_request: "Invalid request",
  unsupported_api_version: "Unsupported API version",
  missing_credentials: "Missing credentials",
  invalid_jwt: "Invalid JWT",
  invalid_token: "Invalid access token",
  installation_suspended: "Installation suspended",
  not_found: "Not found",
  installation_not_found: "Installation not found",
  method_not_allowed: "Method not allowed",
  payload_too_large: "Payload too large",
  permissions_exceed_grant: "Permissions exceed grant",
  invalid_permissions: "Invalid permissions",
  internal: "Internal error"
}

class Problem {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {}
  ) {}
}

const json = (status: number, body: unknown, contentType = "application/json") => ({
  status,
  body: `${JSON.stringify(body)}\n`,
  contentType
})

const problemBody = (p: Problem) =>
  json(
    p.status,
    {
      type: `urn:icr:problem:${p.code}`,
      title: TITLES[p.code] ?? p.code,
      status: p.status,
      code: p.code,
      detail: p.detail,
      ...p.extra
    },
    "application/problem+json"
  )

const jwtProblem = (reason: string, detail: string) => new Problem(401, "invalid_jwt", detail, { reason })
const tokenProblem = (detail: string) => new Problem(401, "invalid_token", detail)

const iso = (ms: number) => {
  const text = new Date(ms).toISOString()
  return text.endsWith(".000Z") ? `${text.slice(0, -5)}Z` : text
}

const hex = (bytes: Uint8Array) => {
  let out = ""
  for (const b of bytes) out += (b < 16 ? "0" : "") + b.toString(16)
  return out
}

const sha256Hex = async (text: string) =>
  hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))))

/** Canonical base64url only: the alphabet, no padding, no non-zero unused bits (one spelling per JWT). */
const fromBase64Url = (text: string): Uint8Array | undefined => {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4))
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  const back = btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
  return back === text ? bytes : undefined
}

const jsonSegment = (segment: string): Record<string, any> | undefined => {
  const bytes = fromBase64Url(segment)
  if (bytes === undefined) return undefined
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes))
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, any>)
      : undefined
  } catch {
    return undefined
  }
}

/** A grant from a request body: known names and levels only (else `invalid_permissions`). */
const parseGrant = (value: unknown): Grant => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Problem(422, "invalid_permissions", "permissions: must be an object")
  }
  for (const [name, level] of Object.entries(value)) {
    const levels = CATALOG[name]
    if (levels === undefined)
      throw new Problem(422, "invalid_permissions", `permissions.${name.slice(0, 64)}: unknown permission`)
    if (typeof level !== "string" || !levels.includes(level)) {
      throw new Problem(422, "invalid_permissions", `permissions.${name}: unknown level`)
    }
  }
  return value as Grant
}

const exceeding = (wanted: Grant, granted: Grant) =>
  NAMES.filter((name) => {
    const want = wanted[name]
    if (want === undefined) return false
    const have = granted[name]
    return have === undefined || RANK[have]! < RANK[want]!
  })

const canonical = (grant: Grant): Grant => {
  const out: Record<string, string> = {}
  for (const name of NAMES) if (grant[name] !== undefined) out[name] = grant[name]
  return out
}

const bearer = (request: Request): string => {
  const header = request.headers.get("authorization")
  if (header === null || header.trim() === "") {
    throw new Problem(401, "missing_credentials", "Send a credential in Authorization: Bearer …")
  }
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  if (match === null)
    throw new Problem(401, "missing_credentials", "The Authorization header must use the Bearer scheme")
  return match[1]!
}

/** The JSON object of a request body (16 KiB at most, read capped), or `{}` when there is none. */
const readBody = async (request: Request): Promise<Record<string, unknown>> => {
  const declared = request.headers.get("content-length")
  const tooLarge = () => new Problem(413, "payload_too_large", `Request bodies are limited to ${MAX_BODY_BYTES} bytes`)
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) throw tooLarge()
  if (request.body === null) return {}
  const reader = request.body.getReader()
  const chunks: Array<Uint8Array> = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {})
      throw tooLarge()
    }
    chunks.push(value)
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  const text = new TextDecoder().decode(bytes)
  if (text.trim() === "") return {}
  if (!/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(request.headers.get("content-type") ?? "")) {
    throw new Problem(400, "invalid_request", "Request bodies must be JSON (Content-Type: application/json)")
  }
  // JSON nested deeper than 32 levels is refused before it is parsed (SPEC §1 as of 12-07).
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > 32) throw new Problem(400, "invalid_request", "The request body nests deeper than 32 levels")
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new Problem(400, "invalid_request", "The request body is not valid JSON")
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Problem(400, "invalid_request", "The request body must be a JSON object")
  }
  return parsed as Record<string, unknown>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/
const TOKEN = /^crs_[0-9a-f]{48}$/
const MINT_PATH = /^\/app\/installations\/([^/]+)\/accesstokens\/?$/i
const DESCRIBE_PATH = /^\/app\/installations\/token\/?$/i
const HEALTHZ_PATH = /^\/healthz\/?$/i

/** A public key nobody holds the private half of: an unknown app costs what a bad signature costs. */
const DUMMY_KEY: PlainKey = {
  id: "00000000-0000-0000-0000-000000000000",
  fingerprint: "dummy",
  spki: "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4U6Xhrqib9GiJ6VPsTfWbQ2T1Jivc0qw041ipY2joRqHo62+81Pmt/DNJjfnFaUsnFdbv6CoWIn0mmCyVPniGGy/msEV60REnNRAKQRh/5XurzKAareVP5fz0xQt+isSQs/Ath4ZqlliiYcFibgKA0BHBCVgAioLTmYgeCujFPuxYOnhJ1lh+CdFtZdu+THH04ju9cseZ+oKVt181LaEb7N8zFtMjitntnXtXBdfTYuZNpSF01wZYymlkCWbOLMqkuwuJusEPYtLuoU9YEGJiU6OS3GG6D6o3Pf9Lb9WBZjSjYtdVeRswPTnpxZC5Fvqakh1B8q4MbsZS7drtUEtpQIDAQAB"
}

export interface PlainOptions {
  readonly installationTokenSeconds?: number
  /** Where the audit event of each mint goes (SPEC §5), as the issuer's `AuditLog` gets it. */
  readonly audit?: (event: Record<string, unknown>) => void
}

/** The plain handler over `storage`: `(request) => Promise<Response>`. */
export const makePlainHandler = (storage: PlainStorage, options: PlainOptions = {}) => {
  const lifetime = options.installationTokenSeconds ?? 7200
  const audit = options.audit ?? ((event) => console.log(JSON.stringify({ audit: true, ...event })))
  const imported = new Map<string, Promise<CryptoKey>>()
  const importKey = (key: PlainKey) => {
    let hit = imported.get(key.fingerprint)
    if (hit === undefined) {
      hit = importSPKI(`-----BEGIN PUBLIC KEY-----\n${key.spki}\n-----END PUBLIC KEY-----`, "RS256")
      hit.catch(() => imported.delete(key.fingerprint))
      imported.set(key.fingerprint, hit)
      if (imported.size > 1024) imported.delete(imported.keys().next().value!)
    }
    return hit
  }
  const verifies = async (key: PlainKey, jwt: string, signatureBytes: number) => {
    const cryptoKey = await importKey(key)
    if ((cryptoKey.algorithm as { readonly modulusLength?: number }).modulusLength !== signatureBytes * 8) return false
    try {
      await compactVerify(jwt, cryptoKey, { algorithms: ["RS256"] })
      return true
    } catch {
      return false
    }
  }

  /** SPEC §2: the app a JWT speaks for, checked before any key is touched, then verified. */
  const verifyJwt = async (jwt: string, installationId: string) => {
    if (jwt.startsWith("crs_")) throw jwtProblem("malformed", "This endpoint expects an App JWT, not an access token")
    if (jwt.length > MAX_JWT_LENGTH)
      throw jwtProblem("malformed", `App JWTs are limited to ${MAX_JWT_LENGTH} characters`)
    const parts = jwt.split(".")
    if (parts.length !== 3) throw jwtProblem("malformed", "An App JWT has three dot-separated parts")
    const header = jsonSegment(parts[0]!)
    if (header === undefined) throw jwtProblem("malformed", "The JWT header is not base64url JSON")
    for (const name of Object.keys(header)) {
      if (name !== "alg" && name !== "typ" && name !== "kid") {
        throw jwtProblem("malformed", `The "${name.slice(0, 32)}" JWT header is not accepted`)
      }
    }
    if (header.alg !== "RS256") throw jwtProblem("unsupported_algorithm", "App JWTs must be signed with RS256")
    if (header.typ !== undefined && (typeof header.typ !== "string" || header.typ.toUpperCase() !== "JWT")) {
      throw jwtProblem("malformed", 'The JWT "typ" header must be "JWT"')
    }
    const kid = header.kid
    if (kid !== undefined && (typeof kid !== "string" || kid.length === 0 || kid.length > 128)) {
      throw jwtProblem("malformed", 'The JWT "kid" header must be a short string')
    }
    const payload = jsonSegment(parts[1]!)
    if (payload === undefined) throw jwtProblem("malformed", "The JWT payload is not base64url JSON")
    const iss = payload.iss
    if (iss === undefined || iss === null) throw jwtProblem("missing_claim", 'The JWT has no "iss" claim')
    const appId = typeof iss === "string" ? iss : Number.isSafeInteger(iss) && iss >= 0 ? String(iss) : undefined
    if (appId === undefined || appId.length === 0 || appId.length > 64) {
      throw jwtProblem("malformed", 'The "iss" claim must be the app id (a string or an integer)')
    }
    const { iat, exp } = payload
    if (iat === undefined || iat === null) throw jwtProblem("missing_claim", 'The JWT has no "iat" claim')
    if (exp === undefined || exp === null) throw jwtProblem("missing_claim", 'The JWT has no "exp" claim')
    if (typeof iat !== "number" || !Number.isFinite(iat))
      throw jwtProblem("malformed", 'The "iat" claim must be a number of seconds')
    if (typeof exp !== "number" || !Number.isFinite(exp))
      throw jwtProblem("malformed", 'The "exp" claim must be a number of seconds')
    const now = Math.floor(Date.now() / 1000)
    if (iat > now + SKEW) throw jwtProblem("iat_in_future", 'The "iat" claim is in the future')
    if (exp <= now) throw jwtProblem("expired", "The JWT has expired")
    if (exp > now + MAX_LIFETIME)
      throw jwtProblem("exp_too_far", 'The "exp" claim is more than 10 minutes in the future')
    if (exp <= iat) throw jwtProblem("malformed", 'The "exp" claim must be after "iat"')
    if (exp - iat > MAX_LIFETIME) throw jwtProblem("exp_too_far", "The JWT lives longer than 10 minutes")
    const signature = fromBase64Url(parts[2]!)
    if (signature === undefined || signature.byteLength === 0) {
      throw jwtProblem("invalid_signature", "The JWT signature is missing or not base64url")
    }
    // The app, its keys and the installation in one read.
    const { app, installation } = await storage.loadForMint(appId, installationId)
    const bad = () => jwtProblem("invalid_signature", "The JWT signature does not verify against any key of the app")
    if (app === undefined) {
      await verifies(DUMMY_KEY, jwt, signature.byteLength)
      throw bad()
    }
    const wanted = typeof kid === "string" ? kid.toLowerCase() : undefined
    const seen = new Set<string>()
    for (const key of app.keys) {
      if (kid !== undefined && key.id.toLowerCase() !== wanted && key.fingerprint !== kid) continue
      if (key.notBefore != null && iat * 1000 <= key.notBefore) continue
      if (seen.has(key.fingerprint)) continue
      seen.add(key.fingerprint)
      if (await verifies(key, jwt, signature.byteLength)) return { app, installation }
    }
    throw bad()
  }

  const mint = async (request: Request, rawId: string, requestId: string) => {
    const jwt = bearer(request)
    const body = await readBody(request)
    for (const name of Object.keys(body)) {
      if (name !== "permissions") throw new Problem(400, "invalid_request", `${name.slice(0, 64)}: is unexpected`)
    }
    const requested = body.permissions === undefined ? undefined : parseGrant(body.permissions)
    // An explicit empty grant never means the full one (SPEC §4 as of 12-07).
    if (requested !== undefined && Object.keys(requested).length === 0) {
      throw new Problem(422, "invalid_permissions", "permissions: must name at least one permission")
    }
    let installationId: string
    try {
      installationId = decodeURIComponent(rawId)
    } catch {
      throw new Problem(400, "invalid_request", "The request path is malformed (invalid percent-encoding)")
    }
    if (!UUID.test(installationId)) throw new Problem(400, "invalid_request", "installationId: must be a UUID")
    installationId = installationId.toLowerCase()
    const { app, installation } = await verifyJwt(jwt, installationId)
    // The issuer audits a mint's outcome once the JWT is verified, failures with their code (SPEC §5).
    const failed = (problem: Problem) => {
      audit({
        time: iso(Date.now()),
        action: "installation_token.mint",
        requestId,
        appId: app.id,
        installationId,
        actor: "app",
        outcome: "failure",
        code: problem.code
      })
      return problem
    }
    if (installation === undefined || installation.appId !== app.id) {
      throw failed(new Problem(404, "installation_not_found", "No such installation for this app"))
    }
    if (installation.suspendedAt !== null)
      throw failed(new Problem(403, "installation_suspended", "The installation is suspended"))
    const granted = installation.permissions
    const wanted = requested ?? granted
    const over = exceeding(wanted, granted)
    if (over.length > 0) {
      throw failed(
        new Problem(
          422,
          "permissions_exceed_grant",
          `Requested permissions exceed the installation's grant: ${over.join(", ")}`,
          {
            permissions: over
          }
        )
      )
    }
    const secret = `crs_${hex(crypto.getRandomValues(new Uint8Array(24)))}`
    const now = Date.now()
    const token: PlainToken = {
      id: crypto.randomUUID(),
      kind: "installation",
      appId: app.id,
      installationId,
      organizationId: installation.organizationId,
      permissions: canonical(wanted),
      createdAt: now,
      expiresAt: now + lifetime * 1000,
      appEpoch: installation.appTokenEpoch,
      installationEpoch: installation.tokenEpoch
    }
    await storage.putToken(await sha256Hex(secret), token)
    audit({
      time: iso(Date.now()),
      action: "installation_token.mint",
      requestId,
      appId: app.id,
      installationId,
      tokenId: token.id,
      actor: "app",
      outcome: "success"
    })
    return json(200, {
      id: token.id,
      createdAt: iso(now),
      updatedAt: iso(now),
      token: secret,
      expiresAt: iso(token.expiresAt),
      isActive: true,
      permissions: token.permissions,
      appId: token.appId,
      installationId,
      organizationId: token.organizationId
    })
  }

  const describe = async (request: Request) => {
    const credential = bearer(request)
    if (!credential.startsWith("crs_")) {
      throw tokenProblem(
        credential.split(".").length === 3
          ? "This endpoint expects an access token (crs_…), not an App JWT"
          : "That is not an access token"
      )
    }
    if (!TOKEN.test(credential)) throw tokenProblem("That is not an access token")
    const standing = await storage.findToken(await sha256Hex(credential))
    if (standing === undefined) throw tokenProblem("The access token is unknown, expired or revoked")
    const token = standing.token
    if (token.expiresAt <= Date.now()) throw tokenProblem("The access token has expired")
    if (standing.revoked) throw tokenProblem("The access token is unknown, expired or revoked")
    if (token.kind === "installation") {
      const installation = standing.installation
      if (installation === undefined || installation.appId !== token.appId) {
        throw tokenProblem("The installation behind this token no longer exists")
      }
      if (installation.suspendedAt !== null) throw tokenProblem("The installation behind this token is suspended")
      if (exceeding(token.permissions, installation.permissions).length > 0) {
        throw tokenProblem("The installation's permissions were reduced after this token was minted")
      }
      if (installation.tokenEpoch !== token.installationEpoch || installation.appTokenEpoch !== token.appEpoch) {
        throw tokenProblem("The access token was ended by a kill switch since it was minted")
      }
    } else if (!standing.appExists) {
      throw tokenProblem("The app behind this token no longer exists")
    }
    return json(200, {
      id: token.id,
      kind: token.kind,
      appId: token.appId,
      ...(token.installationId !== undefined ? { installationId: token.installationId } : {}),
      ...(token.organizationId !== undefined ? { organizationId: token.organizationId } : {}),
      permissions: token.permissions,
      createdAt: iso(token.createdAt),
      expiresAt: iso(token.expiresAt)
    })
  }

  const route = async (request: Request, pathname: string, requestId: string) => {
    const version = request.headers.get("x-icr-api-version")
    if (version !== null && version !== API_VERSION) {
      throw new Problem(400, "unsupported_api_version", `This server serves API version ${API_VERSION} only`)
    }
    const authorization = request.headers.get("authorization")
    if (authorization !== null && authorization.length > MAX_AUTHORIZATION_LENGTH) {
      throw tokenProblem(`The Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} characters`)
    }
    const method = request.method
    if (HEALTHZ_PATH.test(pathname)) {
      if (method === "GET" || method === "HEAD") return json(200, { status: "ok" })
      throw new Problem(405, "method_not_allowed", `${method} is not allowed here`, { allow: ["GET", "HEAD"] })
    }
    if (DESCRIBE_PATH.test(pathname)) {
      if (method === "GET" || method === "HEAD") return describe(request)
      // (DELETE, revocation, is not part of this benchmark.)
      throw new Problem(405, "method_not_allowed", `${method} is not allowed here`, {
        allow: ["DELETE", "GET", "HEAD"]
      })
    }
    const mintMatch = MINT_PATH.exec(pathname)
    if (mintMatch !== null) {
      if (method === "POST") return mint(request, mintMatch[1]!, requestId)
      throw new Problem(405, "method_not_allowed", `${method} is not allowed here`, { allow: ["POST"] })
    }
    throw new Problem(404, "not_found", `No route for ${method} at this path`)
  }

  return async (request: Request): Promise<Response> => {
    const given = request.headers.get("x-request-id")
    const requestId = given !== null && SANE_ID.test(given) ? given : crypto.randomUUID()
    const pathname = new URL(request.url).pathname
    let answer: { status: number; body: string; contentType: string }
    let allow: string | undefined
    try {
      answer = await route(request, pathname, requestId)
    } catch (e) {
      const problem = e instanceof Problem ? e : new Problem(500, "internal", "Internal error")
      answer = problemBody(problem)
      if (problem.status === 405) allow = (problem.extra.allow as Array<string>).join(", ")
    }
    const headers = new Headers(SECURITY_HEADERS as Array<[string, string]>)
    headers.set("content-type", answer.contentType)
    headers.set("x-icr-api-version", API_VERSION)
    headers.set("x-request-id", requestId)
    headers.set("date", new Date().toUTCString())
    if (answer.status === 401) {
      // RFC 6750 §3.1: the error only when the request sent credentials (SPEC §1 as of 12-07).
      const sent = (request.headers.get("authorization") ?? "").trim() !== ""
      headers.set(
        "www-authenticate",
        sent ? 'Bearer realm="icr-apps", error="invalid_token"' : 'Bearer realm="icr-apps"'
      )
    }
    if (allow !== undefined) headers.set("allow", allow)
    return new Response(request.method === "HEAD" ? null : answer.body, { status: answer.status, headers })
  }
}
