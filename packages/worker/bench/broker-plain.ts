/**
 * The yardstick of the broker row of issue 12: the broker's `POST /token` (SPEC §8) written the plain
 * way — one `fetch`-style function, jose's `jwtVerify` over a key set built once per JWKS, a `Map` of
 * policies, a `Map` of cached tokens — doing every check the broker does on that path, so that a ratio
 * against it measures the framework and the design, not skipped work:
 *
 * - HTTP rules (broker/Http.ts): a request id (the caller's when sane), the `Authorization` cap
 *   (8 KiB), the body cap (16 KiB, declared and read), form or JSON bodies (a parameter sent twice
 *   refused, a JSON object only), each member a string, 404 and 405 with `Allow`, problem documents
 *   with `code` plus RFC 6749's `error`/`error_description`, `Retry-After` on 429/503, `no-store` and
 *   the security headers on every answer.
 * - RFC 8693 (broker/Broker.ts `exchange`): `grant_type`, `actor_token` refused, `requested_token_type`,
 *   the Bearer scheme, `subject_token` vs the header, `subject_token_type`, `resource` required, a UUID.
 * - The caller (broker/Oidc.ts): failed attempts limited per client address (IPv6 by /64, peeked
 *   before any verification, counted on `invalid_grant`), the token's length, header and payload
 *   decoded, RS256/ES256 only, a configured `iss` only, the signature against that issuer's JWKS,
 *   `aud`, `exp`/`nbf` with 60 s skew, `sub`/`iat`/`exp` required, `iat` not in the future, a
 *   non-empty `sub`.
 * - Policy (broker/Policies.ts): requests per caller per minute, `scope` parsed (`name:LEVEL`, each
 *   name once, known names and levels only), the first policy in document order that names the
 *   caller (issuer + `sub`, or claims), reaches the installation and covers the request; a request
 *   beyond it refused, never cut down.
 * - The token: the cache is partitioned by caller and keyed by canonical permissions; an entry is
 *   handed out for 10 minutes after its mint (`REUSE_SECONDS`); `expires_in` from its expiry.
 * - One audit event per exchange (broker/Audit.ts), with the first 16 hex digits of SHA-256(token)
 *   (hashed once per cached token, as the broker does) and the id of the token when this process
 *   minted it.
 *
 * Not here, because the measured path never takes them: the JWKS refresh on an unknown `kid` (the
 * key set is given) and single-flight mints. A cache miss mints through `options.mint` (untimed).
 */
import { addressKey } from "@icr-apps/core/api/ClientAddress"
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  jwtVerify
} from "jose"

const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
const SUBJECT_TOKEN_TYPES = ["urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt"]
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
const MAX_BODY_BYTES = 16 * 1024
const MAX_AUTHORIZATION_LENGTH = 8 * 1024
const MAX_TOKEN_LENGTH = 8 * 1024
const SKEW = 60
const ALGORITHMS = ["RS256", "ES256"]
const FAILED_ATTEMPTS_PER_MINUTE = 30
/** A cached token is handed out for this long after its mint (the broker's `REUSE_SECONDS`). */
const REUSE_MILLIS = 600_000
const LIFETIME_MILLIS = 7_200_000
const MEMBERS = [
  "grant_type",
  "subject_token",
  "subject_token_type",
  "resource",
  "scope",
  "requested_token_type",
  "actor_token",
  "actor_token_type"
] as const

const CATALOG: Readonly<Record<string, ReadonlyArray<string>>> = {
  organization_info: ["VIEW"],
  organization_members: ["VIEW"],
  organization_projects: ["VIEW"],
  organization_warehouse: ["VIEW", "WRITE"],
  organization_inventory: ["VIEW", "REQUEST", "WRITE"]
}
const NAMES = Object.keys(CATALOG)
const RANK: Readonly<Record<string, number>> = { VIEW: 0, REQUEST: 1, WRITE: 2 }
type Grant = Readonly<Record<string, string>>

/** A trust policy, as `BROKER_POLICIES` holds it (already valid). */
export interface PlainPolicy {
  readonly name: string
  readonly identity:
    | { readonly issuer: string; readonly sub: string }
    | { readonly issuer: string; readonly claims: Readonly<Record<string, string | number | boolean>> }
    | { readonly service: string }
  readonly installations: "*" | ReadonlyArray<string>
  readonly permissions: Grant
}

/** A token as the cache holds it. */
export interface PlainToken {
  readonly token: string
  /** Epoch ms. */
  readonly expiresAt: number
  readonly permissions: Grant
  /** The issuer's id of the token, when this process minted it. */
  readonly id?: string | undefined
}

/** Why a mint failed, as the broker maps the issuer's answer. */
export class MintRefused {
  constructor(
    readonly code: "invalid_target" | "invalid_scope" | "unavailable",
    readonly detail: string
  ) {}
}

/** What the plain handler is configured with. */
export interface PlainBrokerOptions {
  readonly audience: string
  /** Each trusted issuer's JWKS (what the broker has cached after its first verification). */
  readonly jwks: ReadonlyMap<string, JSONWebKeySet>
  readonly policies: ReadonlyArray<PlainPolicy>
  /** Exchanges per caller per minute. */
  readonly ratePerMinute: number
  /** A cache miss: the issuer's answer, or a {@link MintRefused}. */
  readonly mint: (installationId: string, permissions: Grant) => Promise<PlainToken>
  readonly audit: (event: Record<string, unknown>) => void
}

// --- responses ---------------------------------------------------------------------------------

const HEADERS: ReadonlyArray<readonly [string, string]> = [
  ["cache-control", "no-store"],
  ["pragma", "no-cache"],
  ["x-content-type-options", "nosniff"],
  ["x-frame-options", "DENY"],
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'"],
  ["referrer-policy", "no-referrer"],
  ["strict-transport-security", "max-age=63072000; includeSubDomains"]
]
const TITLES: Readonly<Record<string, readonly [number, string]>> = {
  invalid_request: [400, "Invalid request"],
  invalid_grant: [400, "Invalid grant"],
  unauthorized_client: [403, "Unauthorized client"],
  invalid_target: [400, "Invalid target"],
  invalid_scope: [400, "Invalid scope"],
  rate_limited: [429, "Rate limited"],
  unavailable: [503, "Service unavailable"],
  not_found: [404, "Not found"],
  method_not_allowed: [405, "Method not allowed"],
  payload_too_large: [413, "Payload too large"],
  internal: [500, "Internal error"]
}
const ROUTES: Readonly<Record<string, ReadonlyArray<string>>> = {
  "/token": ["POST"],
  "/installations": ["GET", "HEAD"],
  "/healthz": ["GET", "HEAD"],
  "/openapi.json": ["GET", "HEAD"]
}

class Problem {
  constructor(
    readonly code: string,
    readonly detail: string,
    readonly retryAfter?: number,
    readonly allow?: ReadonlyArray<string>
  ) {}
}

const respond = (status: number, contentType: string, body: string, requestId: string, extra?: [string, string]) => {
  const headers = new Headers(HEADERS as Array<[string, string]>)
  headers.set("content-type", contentType)
  headers.set("x-request-id", requestId)
  // SPEC §1 (the broker shares the issuer's edge since issue 16): `Date`, and JSON ending in a newline.
  headers.set("date", new Date().toUTCString())
  if (extra !== undefined) headers.set(extra[0], extra[1])
  return new Response(contentType.includes("json") ? `${body}\n` : body, { status, headers })
}

const problemResponse = (p: Problem, requestId: string) => {
  const [status, title] = TITLES[p.code]!
  const body: Record<string, unknown> = {
    type: `urn:icr:problem:${p.code}`,
    title,
    status,
    code: p.code,
    error: p.code,
    error_description: p.detail,
    detail: p.detail
  }
  if (p.retryAfter !== undefined) body.retryAfter = p.retryAfter
  if (p.allow !== undefined) body.allow = p.allow
  return respond(
    status,
    "application/problem+json",
    JSON.stringify(body),
    requestId,
    p.retryAfter !== undefined
      ? ["retry-after", String(p.retryAfter)]
      : p.allow !== undefined
        ? ["allow", p.allow.join(", ")]
        : undefined
  )
}

const hex = (bytes: Uint8Array) => {
  let out = ""
  for (const b of bytes) out += (b < 16 ? "0" : "") + b.toString(16)
  return out
}

// --- pieces --------------------------------------------------------------------------------------

/** A fixed window per key, as the broker's limiter. */
const limiter = (limit: number) => {
  const windows = new Map<string, { start: number; count: number }>()
  const retryAfter = (w: { start: number }, now: number) => Math.max(1, Math.ceil((w.start + 60_000 - now) / 1000))
  return {
    take: (key: string, now: number) => {
      let w = windows.get(key)
      if (w === undefined || now - w.start >= 60_000) {
        windows.delete(key)
        if (windows.size >= 10_000) windows.delete(windows.keys().next().value!)
        w = { start: now, count: 0 }
        windows.set(key, w)
      }
      w.count++
      return w.count <= limit ? 0 : retryAfter(w, now)
    },
    peek: (key: string, now: number) => {
      const w = windows.get(key)
      if (w === undefined || now - w.start >= 60_000) return 0
      return w.count < limit ? 0 : retryAfter(w, now)
    }
  }
}

const readBody = async (request: Request): Promise<Record<string, unknown>> => {
  const tooLarge = () => new Problem("payload_too_large", `Request bodies are limited to ${MAX_BODY_BYTES} bytes`)
  const declared = request.headers.get("content-length")
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) throw tooLarge()
  let text = ""
  if (request.body !== null) {
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
    const bytes = chunks.length === 1 ? chunks[0]! : new Uint8Array(size)
    if (chunks.length !== 1) {
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.byteLength
      }
    }
    text = new TextDecoder().decode(bytes)
  }
  if (text.trim() === "") return {}
  const contentType = (request.headers.get("content-type") ?? "").toLowerCase()
  if (contentType.startsWith("application/x-www-form-urlencoded")) {
    const body: Record<string, unknown> = {}
    for (const [name, value] of new URLSearchParams(text)) {
      if (name in body) throw new Problem("invalid_request", `${name.slice(0, 64)} is given more than once`)
      body[name] = value
    }
    return body
  }
  if (/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/.test(contentType)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new Problem("invalid_request", "The body is not valid JSON")
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Problem("invalid_request", "The body must be a JSON object")
    return parsed as Record<string, unknown>
  }
  throw new Problem("invalid_request", "Send the body as application/x-www-form-urlencoded or application/json")
}

const parseScope = (scope: string): Grant => {
  const grant: Record<string, string> = {}
  let any = false
  for (const token of scope.split(" ")) {
    if (token === "") continue
    any = true
    const match = /^([a-z_]{1,64}):([A-Z]{1,16})$/.exec(token)
    if (match === null) throw new Problem("invalid_scope", `scope: "${token.slice(0, 80)}" is not name:LEVEL`)
    if (match[1]! in grant) throw new Problem("invalid_scope", `scope: ${match[1]} is named twice`)
    grant[match[1]!] = match[2]!
  }
  if (!any) throw new Problem("invalid_scope", "scope is empty; omit it to get the policy's permissions")
  for (const [name, level] of Object.entries(grant)) {
    const levels = CATALOG[name]
    if (levels === undefined) throw new Problem("invalid_scope", `scope: ${name}: is unexpected`)
    if (!levels.includes(level)) throw new Problem("invalid_scope", `scope: ${name}: ${level} is not a level of it`)
  }
  return grant
}

const canonical = (grant: Grant): Grant => {
  const out: Record<string, string> = {}
  for (const name of NAMES) if (grant[name] !== undefined) out[name] = grant[name]
  return out
}

const exceeding = (wanted: Grant, granted: Grant) =>
  NAMES.filter((name) => {
    const want = wanted[name]
    if (want === undefined) return false
    const have = granted[name]
    return have === undefined || RANK[have]! < RANK[want]!
  })

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/

const explain = (e: unknown): string => {
  if (e instanceof errors.JWTExpired) return "The subject token has expired"
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === "aud") return "The subject token is for another audience"
    if (e.claim === "nbf") return "The subject token is not valid yet (nbf)"
    if (e.reason === "missing") return `The subject token has no "${e.claim}" claim`
    return `The subject token's "${e.claim}" claim is not acceptable`
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return "The subject token must be signed with RS256 or ES256"
  if (e instanceof errors.JWKSNoMatchingKey) return "The subject token is signed with a key the issuer does not list"
  if (e instanceof errors.JWSSignatureVerificationFailed) return "The subject token's signature does not verify"
  return "The subject token is malformed"
}

// --- the handler ---------------------------------------------------------------------------------

/** The broker's `POST /token` (and its 404/405 and `/healthz`), plainly. */
export const makePlainBroker = (options: PlainBrokerOptions) => {
  const keySets = new Map([...options.jwks].map(([issuer, set]) => [issuer, createLocalJWKSet(set)]))
  // Policies by identity: `issuer#sub` → its policies; claim policies are few and scanned. Each keeps
  // its place in the document, because the first allowing policy wins.
  const bySubject = new Map<string, Array<{ readonly index: number; readonly policy: PlainPolicy }>>()
  const byClaims: Array<{ readonly index: number; readonly policy: PlainPolicy }> = []
  options.policies.forEach((policy, index) => {
    const identity = policy.identity
    if ("sub" in identity) {
      const key = `${identity.issuer}#${identity.sub}`
      const list = bySubject.get(key) ?? []
      list.push({ index, policy })
      bySubject.set(key, list)
    } else if ("claims" in identity) byClaims.push({ index, policy })
  })
  const cache = new Map<string, PlainToken>()
  /** The digest prefix of each cached token, computed on its first exchange (as the broker does). */
  const digests = new WeakMap<PlainToken, string>()
  const minted = new Map<string, string>()
  const callers = limiter(options.ratePerMinute)
  const failures = limiter(FAILED_ATTEMPTS_PER_MINUTE)

  const verify = async (token: string, now: number) => {
    if (token.length > MAX_TOKEN_LENGTH) throw new Problem("invalid_grant", "The subject token is too long")
    let header: { alg?: unknown }
    let unverified: JWTPayload
    try {
      header = decodeProtectedHeader(token)
      unverified = decodeJwt(token)
    } catch {
      throw new Problem("invalid_grant", "The subject token is not a JWT")
    }
    if (!ALGORITHMS.includes(header.alg as string))
      throw new Problem("invalid_grant", "The subject token must be signed with RS256 or ES256")
    const issuer = typeof unverified.iss === "string" ? unverified.iss : undefined
    const keys = issuer === undefined ? undefined : keySets.get(issuer)
    if (issuer === undefined || keys === undefined)
      throw new Problem("invalid_grant", "The subject token's issuer is not one this broker trusts")
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, keys, {
        issuer,
        audience: options.audience,
        algorithms: ALGORITHMS,
        clockTolerance: SKEW,
        currentDate: new Date(now),
        requiredClaims: ["sub", "iat", "exp"]
      }))
    } catch (e) {
      throw new Problem("invalid_grant", explain(e))
    }
    if (typeof payload.iat === "number" && payload.iat > now / 1000 + SKEW)
      throw new Problem("invalid_grant", "The subject token is issued in the future (iat)")
    if (typeof payload.sub !== "string" || payload.sub === "")
      throw new Problem("invalid_grant", "The subject token has no subject")
    return { issuer, sub: payload.sub, claims: payload as Record<string, unknown> }
  }

  const exchange = async (
    request: Request,
    body: Record<string, unknown>,
    event: Record<string, unknown>
  ): Promise<string> => {
    const p = body as Partial<Record<(typeof MEMBERS)[number], string>>
    if (p.grant_type === undefined) throw new Problem("invalid_request", "grant_type is required")
    if (p.grant_type !== TOKEN_EXCHANGE_GRANT)
      throw new Problem("invalid_request", `grant_type must be ${TOKEN_EXCHANGE_GRANT}`)
    if (p.actor_token !== undefined || p.actor_token_type !== undefined)
      throw new Problem("invalid_request", "Delegation (actor_token) is not supported")
    if (p.requested_token_type !== undefined && p.requested_token_type !== ACCESS_TOKEN_TYPE)
      throw new Problem("invalid_request", `requested_token_type must be ${ACCESS_TOKEN_TYPE}`)
    let bearer: string | undefined
    const authorization = request.headers.get("authorization")
    if (authorization !== null && authorization.trim() !== "") {
      const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization)
      if (match === null) throw new Problem("invalid_request", "The Authorization header must use the Bearer scheme")
      bearer = match[1]!
    }
    if (p.subject_token !== undefined && bearer !== undefined && p.subject_token !== bearer)
      throw new Problem("invalid_request", "subject_token and the Authorization header disagree")
    const token = p.subject_token ?? bearer
    if (p.subject_token !== undefined) {
      if (p.subject_token_type === undefined)
        throw new Problem("invalid_request", "subject_token_type is required with subject_token")
      if (!SUBJECT_TOKEN_TYPES.includes(p.subject_token_type))
        throw new Problem("invalid_request", `subject_token_type must be ${SUBJECT_TOKEN_TYPES.join(" or ")}`)
    }
    if (p.resource === undefined) throw new Problem("invalid_request", "resource (the installation id) is required")

    // Who is calling; failed attempts count against the client address.
    const now = Date.now()
    const forwarded = request.headers.get("cf-connecting-ip")
    const address = forwarded === null ? undefined : addressKey(forwarded)
    if (address !== undefined) {
      const wait = failures.peek(address, now)
      if (wait > 0) throw new Problem("rate_limited", "Too many failed attempts from this address", wait)
    }
    if (token === undefined)
      throw new Problem("invalid_request", "Send an OIDC identity token (subject_token, or Authorization: Bearer)")
    let caller: Awaited<ReturnType<typeof verify>>
    try {
      caller = await verify(token, now)
    } catch (e) {
      if (address !== undefined && e instanceof Problem && e.code === "invalid_grant") failures.take(address, now)
      throw e
    }
    event.caller = { kind: "oidc", issuer: caller.issuer, sub: caller.sub }
    const callerKey = `oidc:${caller.issuer}#${caller.sub}`
    const wait = callers.take(callerKey, Date.now())
    if (wait > 0) throw new Problem("rate_limited", "Too many requests from this caller", wait)
    if (!UUID.test(p.resource)) throw new Problem("invalid_target", "resource must be an installation id")
    const installationId = p.resource.toLowerCase()
    event.installationId = installationId
    let requested: Grant | undefined
    if (p.scope !== undefined) {
      requested = parseScope(p.scope)
      event.permissions = requested
    }

    // The first policy, in document order, that names the caller, reaches the installation and covers the request.
    const named = bySubject.get(`${caller.issuer}#${caller.sub}`) ?? []
    const mine =
      byClaims.length === 0
        ? named
        : [
            ...named,
            ...byClaims.filter(({ policy }) => {
              const identity = policy.identity as { issuer: string; claims: Record<string, unknown> }
              return (
                identity.issuer === caller.issuer &&
                Object.entries(identity.claims).every(([k, v]) => caller.claims[k] === v)
              )
            })
          ].sort((a, b) => a.index - b.index)
    if (mine.length === 0) throw new Problem("unauthorized_client", "No trust policy allows this identity")
    const reaching = mine.filter(
      ({ policy }) => policy.installations === "*" || policy.installations.includes(installationId)
    )
    if (reaching.length === 0) throw new Problem("invalid_target", "No policy of this caller reaches that installation")
    let policy: PlainPolicy
    let permissions: Grant
    if (requested === undefined) {
      policy = reaching[0]!.policy
      permissions = policy.permissions
    } else {
      const wanted = requested
      const covering = reaching.find(({ policy }) => exceeding(wanted, policy.permissions).length === 0)
      if (covering === undefined) {
        const lacks = reaching.map(({ policy }) => exceeding(wanted, policy.permissions))
        const fewest = lacks.reduce((a, b) => (b.length < a.length ? b : a))
        throw new Problem("invalid_scope", `The scope asks for more than the policy allows: ${fewest.join(", ")}`)
      }
      policy = covering.policy
      permissions = canonical(wanted)
    }
    event.policy = policy.name
    event.permissions = permissions

    // The cached token of this caller, installation and permissions, if handed out for < 10 minutes.
    const key = `${callerKey}\n${JSON.stringify(canonical(permissions))}\n${installationId}`
    let issued = cache.get(key)
    let mintedId: string | undefined
    if (issued === undefined || issued.expiresAt - (LIFETIME_MILLIS - REUSE_MILLIS) <= Date.now()) {
      try {
        issued = await options.mint(installationId, permissions)
      } catch (e) {
        if (e instanceof MintRefused) throw new Problem(e.code, e.detail, e.code === "unavailable" ? 5 : undefined)
        throw e
      }
      cache.set(key, issued)
      mintedId = issued.id
    }
    const at = Date.now()
    let digest = digests.get(issued)
    if (digest === undefined) {
      digest = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(issued.token)))).slice(
        0,
        16
      )
      digests.set(issued, digest)
    }
    if (mintedId !== undefined) {
      minted.set(digest, mintedId)
      if (minted.size > 1000) minted.delete(minted.keys().next().value!)
    }
    event.outcome = "granted"
    event.permissions = issued.permissions
    event.tokenDigest = digest
    event.tokenId = mintedId ?? minted.get(digest) ?? null
    event.cached = mintedId === undefined
    event.expiresAt = new Date(issued.expiresAt).toISOString()
    return JSON.stringify({
      access_token: issued.token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: Math.max(0, Math.floor((issued.expiresAt - at) / 1000)),
      scope: Object.entries(canonical(issued.permissions))
        .map(([name, level]) => `${name}:${level}`)
        .join(" ")
    })
  }

  return async (request: Request): Promise<Response> => {
    const given = request.headers.get("x-request-id")
    // A sane id is echoed, unless it looks like a credential (an access token, a JWT).
    const requestId = given !== null && SANE_ID.test(given) && !/crs_|^eyJ/i.test(given) ? given : crypto.randomUUID()
    try {
      const authorization = request.headers.get("authorization")
      if (authorization !== null && authorization.length > MAX_AUTHORIZATION_LENGTH)
        throw new Problem("invalid_request", "The Authorization header is too long")
      const method = request.method
      const body = method !== "GET" && method !== "HEAD" && method !== "OPTIONS" ? await readBody(request) : undefined
      const pathname = new URL(request.url).pathname
      if (pathname === "/token" && method === "POST") {
        for (const name of MEMBERS) {
          const value = body![name]
          if (value !== undefined && typeof value !== "string")
            throw new Problem("invalid_request", `${name}: must be a string`)
        }
        const event: Record<string, unknown> = {
          event: "broker.token_exchange",
          time: "",
          requestId,
          outcome: "refused"
        }
        try {
          const answer = await exchange(request, body!, event)
          return respond(200, "application/json", answer, requestId)
        } catch (e) {
          event.outcome = "refused"
          event.code = e instanceof Problem ? e.code : "internal"
          throw e
        } finally {
          event.time = new Date().toISOString()
          options.audit(event)
        }
      }
      if (pathname === "/healthz" && (method === "GET" || method === "HEAD"))
        return respond(200, "application/json", '{"status":"ok"}', requestId)
      const allow = ROUTES[pathname]
      if (allow === undefined) throw new Problem("not_found", "No such route")
      throw new Problem("method_not_allowed", `${method} is not allowed here`, undefined, allow)
    } catch (e) {
      if (e instanceof Problem) return problemResponse(e, requestId)
      return problemResponse(new Problem("internal", "Internal error"), requestId)
    }
  }
}
