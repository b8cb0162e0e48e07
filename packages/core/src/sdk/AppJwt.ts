/**
 * The app side of SPEC §2 and §7: the app's private key, imported once, and the App JWT signed
 * with it — `iat = now - 60`, `exp = now + 540` (at most 600), reused until 60 s before it expires,
 * on the server's clock once a skew has been learned.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { CompactSign, importJWK, importPKCS8 } from "jose"
import { type Bytes, ENCRYPTED_KEY, parsePem, pkcs1PrivateToPkcs8, toBase64Url, toPem } from "../internal/der.js"
import { JWS_ALG, RS256 } from "../internal/rsa.js"

/** Why a private key could not be used. */
export type PrivateKeyProblem =
  | "openssh"
  | "encrypted"
  | "public_key"
  | "not_pem"
  | "truncated"
  | "unsupported_type"
  | "not_rsa"
  | "unusable"

/** The private key given to the SDK cannot sign App JWTs; `detail` says why (never the key). */
export class InvalidPrivateKey extends Data.TaggedError("InvalidPrivateKey")<{
  readonly problem: PrivateKeyProblem
  readonly detail: string
}> {
  override get message(): string {
    return `Invalid private key (${this.problem}): ${this.detail}`
  }
}

/** Signing failed (a KMS/HSM signer failed, or WebCrypto refused). */
export class JwtSigningFailed extends Data.TaggedError("JwtSigningFailed")<{ readonly detail: string }> {
  override get message(): string {
    return `Could not sign the App JWT: ${this.detail}`
  }
}

/** A private key in any accepted form. */
export type PrivateKeyInput = string | Redacted.Redacted<string> | JsonWebKey | CryptoKey

/** Something that signs bytes with RS256: WebCrypto by default, or a KMS/HSM. */
export interface JwtSigner {
  /** The RS256 (RSASSA-PKCS1-v1_5 / SHA-256) signature of `data`. */
  readonly sign: (data: Bytes) => Effect.Effect<Uint8Array, JwtSigningFailed>
  /** A `kid` to put in the header (a key id or fingerprint registered with the issuer). */
  readonly kid?: string | undefined
}

const problem = (p: PrivateKeyProblem, detail: string) => new InvalidPrivateKey({ problem: p, detail })

const isCryptoKey = (value: unknown): value is CryptoKey =>
  typeof CryptoKey !== "undefined" && value instanceof CryptoKey

/**
 * Imports a private key for RS256 signing: PKCS#8 PEM, PKCS#1 PEM (converted to PKCS#8 in pure
 * TypeScript), a JWK, or a `CryptoKey`. Literal `\n` escapes and CRLF are tolerated.
 */
export const importPrivateKey = (input: PrivateKeyInput): Effect.Effect<CryptoKey, InvalidPrivateKey> =>
  Effect.gen(function* () {
    if (isCryptoKey(input)) {
      if (input.type !== "private" || input.algorithm.name !== RS256.name || !input.usages.includes("sign")) {
        return yield* problem("unusable", "the CryptoKey must be an RSASSA-PKCS1-v1_5 private key with the sign usage")
      }
      return input
    }
    const text = Redacted.isRedacted(input) ? Redacted.value(input) : input
    if (typeof text === "object") {
      const jwk = text as JsonWebKey
      if (jwk.kty !== "RSA")
        return yield* problem("not_rsa", `the JWK has kty "${String(jwk.kty).slice(0, 8)}"; RS256 needs RSA`)
      if (typeof jwk.d !== "string") return yield* problem("public_key", "the JWK has no private part (d)")
      const { alg: _alg, key_ops: _ops, use: _use, ...rest } = jwk
      return yield* Effect.tryPromise({
        try: () =>
          importJWK(rest as Parameters<typeof importJWK>[0], JWS_ALG, { extractable: false }) as Promise<CryptoKey>,
        catch: () => problem("unusable", "the RSA JWK could not be imported")
      })
    }
    const pem = parsePem(text)
    if ("error" in pem) {
      const p: PrivateKeyProblem = /OpenSSH/.test(pem.error)
        ? "openssh"
        : pem.error === ENCRYPTED_KEY
          ? "encrypted"
          : /truncated|DER|base64/.test(pem.error)
            ? "truncated"
            : "not_pem"
      return yield* problem(p, pem.error)
    }
    let pkcs8: Bytes
    switch (pem.label) {
      case "PRIVATE KEY":
        pkcs8 = pem.der
        break
      case "RSA PRIVATE KEY": {
        const wrapped = pkcs1PrivateToPkcs8(pem.der)
        if (wrapped === undefined) return yield* problem("truncated", "the PKCS#1 key is not a DER sequence")
        pkcs8 = wrapped
        break
      }
      case "PUBLIC KEY":
      case "RSA PUBLIC KEY":
        return yield* problem("public_key", "that is a public key; the SDK needs the app's private key")
      default:
        return yield* problem("unsupported_type", `unsupported PEM type "${pem.label}"`)
    }
    return yield* Effect.tryPromise({
      try: () => importPKCS8(toPem("PRIVATE KEY", pkcs8), JWS_ALG, { extractable: false }),
      catch: () => problem("not_rsa", "the key is not an RSA private key, or it is damaged")
    })
  })

/** The JWT's protected header. */
type JwtHeader = { readonly alg: typeof JWS_ALG; readonly typ: "JWT"; readonly kid?: string }

/** Turns a header and claims into a compact JWT. */
type CompactSigner = (header: JwtHeader, claims: Record<string, unknown>) => Effect.Effect<string, JwtSigningFailed>

const utf8 = (text: string): Bytes => new Uint8Array(new TextEncoder().encode(text))

/** jose's compact JWS over an imported key. */
const joseSigner =
  (key: CryptoKey): CompactSigner =>
  (header, claims) =>
    Effect.tryPromise({
      try: () => new CompactSign(utf8(JSON.stringify(claims))).setProtectedHeader(header).sign(key),
      catch: () => new JwtSigningFailed({ detail: "WebCrypto refused to sign" })
    })

/** The same compact form over a {@link JwtSigner} that holds its key elsewhere (KMS/HSM). */
const externalSigner =
  (signer: JwtSigner): CompactSigner =>
  (header, claims) => {
    const input = `${toBase64Url(utf8(JSON.stringify(header)))}.${toBase64Url(utf8(JSON.stringify(claims)))}`
    return Effect.map(signer.sign(utf8(input)), (signature) => `${input}.${toBase64Url(signature)}`)
  }

/** How the App JWT is made. */
export interface AppJwtOptions {
  /** The app id, the JWT's `iss`. */
  readonly appId: string | number
  /** The private key (imported once), or a signer for keys that live in a KMS/HSM. */
  readonly privateKey?: PrivateKeyInput | undefined
  readonly signer?: JwtSigner | undefined
  /** `kid` header, when the private key is given (ignored with a signer, which brings its own). */
  readonly kid?: string | undefined
  /** Seconds from now to `exp` (default 540, at most 600). */
  readonly lifetimeSeconds?: number | undefined
}

/** The JWT lifetime the SDK uses unless told otherwise. */
export const DEFAULT_LIFETIME_SECONDS = 540
/** The longest lifetime the SDK will ever sign (SPEC §7). */
export const MAX_SIGNED_LIFETIME_SECONDS = 600
/** How far `iat` is backdated. */
export const BACKDATE_SECONDS = 60
/** A signed JWT is replaced this long before it expires. */
export const REUSE_MARGIN_SECONDS = 60

/** The App JWT of one app. */
export class AppJwt extends Context.Tag("@icr-apps/core/AppJwt")<
  AppJwt,
  {
    /** The app id (`iss`). */
    readonly appId: string
    /** A signed App JWT, reused until 60 s before it expires. */
    readonly get: Effect.Effect<Redacted.Redacted<string>, JwtSigningFailed>
    /** Learns the server clock: `offsetMillis` = server time − local time. Kept for every later JWT. */
    readonly setClockOffset: (offsetMillis: number) => Effect.Effect<void>
    /** The offset currently applied. */
    readonly clockOffset: Effect.Effect<number>
  }
>() {
  /** The module's `layer`, on the tag. */
  static readonly layer = (options: AppJwtOptions): Layer.Layer<AppJwt, InvalidPrivateKey> => layer(options)
}

/** Makes the service; fails at once with {@link InvalidPrivateKey} when the key is unusable. */
export const make = (options: AppJwtOptions): Effect.Effect<AppJwt["Type"], InvalidPrivateKey> =>
  Effect.gen(function* () {
    const appId = String(options.appId)
    const lifetime = Math.min(options.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS, MAX_SIGNED_LIFETIME_SECONDS)
    if (!(lifetime > REUSE_MARGIN_SECONDS)) {
      return yield* problem("unusable", `lifetimeSeconds must be more than ${REUSE_MARGIN_SECONDS}`)
    }
    let signCompact: CompactSigner
    let kid: string | undefined
    if (options.signer !== undefined) {
      signCompact = externalSigner(options.signer)
      kid = options.signer.kid
    } else if (options.privateKey !== undefined) {
      signCompact = joseSigner(yield* importPrivateKey(options.privateKey))
      kid = options.kid
    } else return yield* problem("unusable", "give either privateKey or signer")

    // Plain variables, not Refs: the reuse check is the hot path (every API call) and JS is single-threaded.
    let offset = 0
    let cached: { readonly jwt: Redacted.Redacted<string>; readonly renewAt: number } | undefined
    const lock = yield* Effect.makeSemaphore(1)
    const header: JwtHeader = kid === undefined ? { alg: JWS_ALG, typ: "JWT" } : { alg: JWS_ALG, typ: "JWT", kid }

    const sign = Effect.clockWith((clock) => {
      const seconds = Math.floor((clock.unsafeCurrentTimeMillis() + offset) / 1000)
      const exp = seconds + lifetime
      return Effect.map(signCompact(header, { iat: seconds - BACKDATE_SECONDS, exp, iss: appId }), (compact) => {
        const jwt = Redacted.make(compact)
        cached = { jwt, renewAt: (exp - REUSE_MARGIN_SECONDS) * 1000 }
        return jwt
      })
    })
    /** The cached JWT if it is still good at `now`, else `undefined`. */
    const reusable = (now: number) => (cached !== undefined && now + offset < cached.renewAt ? cached.jwt : undefined)
    // Concurrent callers that need a new JWT share one signature.
    const slow = lock.withPermits(1)(
      Effect.clockWith((clock) => {
        const jwt = reusable(clock.unsafeCurrentTimeMillis())
        return jwt === undefined ? sign : Effect.succeed(jwt)
      })
    )
    const get = Effect.clockWith((clock) => {
      const jwt = reusable(clock.unsafeCurrentTimeMillis())
      return jwt === undefined ? slow : Effect.succeed(jwt)
    })
    return {
      appId,
      get,
      setClockOffset: (millis) =>
        Effect.sync(() => {
          offset = Math.round(millis)
          cached = undefined
        }),
      clockOffset: Effect.sync(() => offset)
    }
  })

/** The service as a layer. */
export const layer = (options: AppJwtOptions): Layer.Layer<AppJwt, InvalidPrivateKey> =>
  Layer.effect(AppJwt, make(options))
