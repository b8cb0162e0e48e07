/**
 * The data every bench phase runs on: one app (one RSA-2048 key), one installation of it, and App
 * JWTs signed the way the SDK signs them (iat backdated 60 s, exp 9 minutes ahead).
 */
import { SignJWT } from "jose"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as AuditLogModule from "../src/issuer/AuditLog.js"
import type * as EntropyModule from "../src/issuer/Entropy.js"
import type * as IssuerModule from "../src/issuer/Issuer.js"
import type * as RateLimiterModule from "../src/issuer/RateLimiter.js"
import type * as RegistryModule from "../src/issuer/Registry.js"

/** The installation every phase mints for (lower-case, as stored). */
export const INSTALLATION_ID = "7f0e4a52-3c1b-4d8e-9a6f-2b5c8d1e0f34"
/** Its organization. */
export const ORGANIZATION_ID = "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
/** The app's declared permissions (also the installation's grant). */
export const GRANT = { organization_info: "VIEW", organization_inventory: "REQUEST" } as const
/** What each mint asks for: a narrowing, so the body is read and checked. */
export const MINT_BODY = JSON.stringify({ permissions: { organization_info: "VIEW" } })

const toBase64 = (bytes: Uint8Array) => {
  let binary = ""
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary)
}

/** An app key pair with the forms the registries store. */
export interface BenchKey {
  readonly privateKey: CryptoKey
  /** SPKI DER, base64 (what D1 stores). */
  readonly spki: string
  /** SPKI PEM (what the operator API takes). */
  readonly publicPem: string
  /** `SHA256:` + base64 of SHA-256 over the SPKI DER (SPEC §5). */
  readonly fingerprint: string
}

/** A fresh RSA-2048 app key. */
export const generateKey = async (): Promise<BenchKey> => {
  const pair = (await crypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"]
  )) as CryptoKeyPair
  const der = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer)
  const spki = toBase64(der)
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der))
  return {
    privateKey: pair.privateKey,
    spki,
    publicPem: `-----BEGIN PUBLIC KEY-----\n${spki.replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END PUBLIC KEY-----\n`,
    fingerprint: `SHA256:${toBase64(digest)}`
  }
}

/** An App JWT for `appId`, as the SDK signs one. */
export const signAppJwt = (key: BenchKey, appId: string): Promise<string> => {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({})
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(appId)
    .setIssuedAt(now - 60)
    .setExpirationTime(now + 540)
    .sign(key.privateKey)
}

/** An App JWT that re-signs itself every few minutes, so a long run never presents an expired one. */
export const freshJwt = (key: BenchKey, appId: string) => {
  let jwt = ""
  let signedAt = 0
  return async (): Promise<string> => {
    if (Date.now() - signedAt > 240_000) {
      jwt = await signAppJwt(key, appId)
      signedAt = Date.now()
    }
    return jwt
  }
}

/**
 * An audit sink for benchmarks: events are kept like `AuditLog.layerMemory` keeps them, but the
 * array is emptied every 1,024 events, so a long run neither grows the heap nor prints a line per request.
 */
export const benchAuditSink = <A>(): Array<A> => {
  const sink: Array<A> = []
  sink.push = (...events: Array<A>) => {
    if (sink.length >= 1024) sink.length = 0
    return Array.prototype.push.apply(sink, events)
  }
  return sink
}

const ORIGIN = "http://bench.local"
const ADMIN = "bench-admin-token-0123456789abcdef0123456789"

/**
 * The issuer's storage in memory, from one build: its registry (which holds the tokens since issue 12),
 * entropy, and — for a build from before tokens moved into the registry — its separate
 * `TokenStore.layerMemory`, so `compare.ts` can still put such a build beside this one.
 */
export const memoryStorageOf = async (base: string) => {
  const Entropy: typeof EntropyModule = await import(`${base}/issuer/Entropy.js`)
  const Registry: typeof RegistryModule = await import(`${base}/issuer/Registry.js`)
  const older: { layerMemory?: Layer.Layer<never> } = await import(`${base}/issuer/TokenStore.js`).catch(() => ({}))
  return Layer.mergeAll(Registry.layerMemory, Entropy.layer, older.layerMemory ?? Layer.empty)
}

/**
 * A web handler of one build over `storage`, with an audit log (and a rate limiter) given both ways:
 * in the options, as the current `makeWebHandler` takes them, and in the storage layer, where builds
 * from before 12-07 looked for them. Each build reads the one it knows.
 */
export const webHandlerOf = (
  makeWebHandler: typeof IssuerModule.makeWebHandler,
  storage: Layer.Layer<RegistryModule.Registry | EntropyModule.Entropy>,
  extras: {
    readonly auditLog: Layer.Layer<AuditLogModule.AuditLog>
    readonly rateLimiter?: Layer.Layer<RateLimiterModule.RateLimiter> | undefined
  },
  options: Omit<IssuerModule.WebHandlerOptions, "auditLog" | "rateLimiter">
) =>
  makeWebHandler(
    Layer.mergeAll(storage, extras.auditLog, extras.rateLimiter ?? Layer.empty) as unknown as Layer.Layer<
      RegistryModule.Registry | EntropyModule.Entropy
    >,
    { ...options, ...extras }
  )

/** The issuer of one build over memory storage and a quiet audit sink. */
export const memoryIssuerOf = async (base: string, options: Omit<IssuerModule.WebHandlerOptions, "auditLog">) => {
  const { makeWebHandler }: typeof IssuerModule = await import(`${base}/issuer/Issuer.js`)
  const AuditLog: typeof AuditLogModule = await import(`${base}/issuer/AuditLog.js`)
  return webHandlerOf(
    makeWebHandler,
    await memoryStorageOf(base),
    { auditLog: AuditLog.layerMemory(benchAuditSink()) },
    options
  )
}

/**
 * One build of the issuer (its compiled or source `src` folder, absolute), over memory storage and a
 * quiet audit sink, seeded through its own operator API with an app and an installation; with a
 * request maker per path (healthz, describe, mint).
 */
export const loadSeededIssuer = async (base: string, key: BenchKey) => {
  const issuer = await memoryIssuerOf(base, { adminToken: Redacted.make(ADMIN) })
  const admin = async (p: string, body: unknown) =>
    (await (
      await issuer.handler(
        new Request(`${ORIGIN}${p}`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
          body: JSON.stringify(body)
        })
      )
    ).json()) as Record<string, any>
  const app = await admin("/admin/apps", { name: "bench", permissions: GRANT, publicKey: key.publicPem })
  const installation = await admin("/admin/installations", {
    appId: String(app.id),
    organizationId: ORGANIZATION_ID,
    permissions: GRANT
  })
  const jwt = await signAppJwt(key, String(app.id))
  const mint = () =>
    new Request(`${ORIGIN}/app/installations/${installation.id}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
      body: MINT_BODY
    })
  const token = (await (await issuer.handler(mint())).json()).token as string
  const requests: Record<string, () => Request> = {
    healthz: () => new Request(`${ORIGIN}/healthz`),
    describe: () => new Request(`${ORIGIN}/app/installations/token`, { headers: { authorization: `Bearer ${token}` } }),
    mint
  }
  return { issuer, requests }
}

/**
 * What two handlers' answers to one scenario must agree on before either is timed: status, content
 * type, header names (not values, not `content-length`), body fields and `code`. With the text and
 * body, for checks of their own.
 */
export const answerShape = async (response: Response) => {
  const text = await response.text()
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(text)
  } catch {}
  const shape = {
    status: response.status,
    contentType: response.headers.get("content-type"),
    headers: [...response.headers.keys()]
      .filter((h) => h !== "content-length")
      .sort()
      .join(","),
    fields: Object.keys(body).sort().join(","),
    code: String(body.code ?? "")
  }
  return { text, body, shape }
}
