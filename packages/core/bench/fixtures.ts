/**
 * The data every bench phase runs on: one app (one RSA-2048 key), one installation of it, and App
 * JWTs signed the way the SDK signs them (iat backdated 60 s, exp 9 minutes ahead).
 */
import { SignJWT } from "jose"

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
