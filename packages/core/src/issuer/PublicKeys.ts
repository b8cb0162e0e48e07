/**
 * Reading an app's public key (SPKI PEM, PKCS#1 PEM or RSA JWK), checking it cannot be weak (SPEC
 * §5: RSA, 2048–4096 bits, an odd modulus, an odd public exponent of at least 3 — checked here,
 * whatever the runtime's own import accepts), and its fingerprint: `SHA256:` + base64 of SHA-256
 * over the SPKI DER.
 */
import * as Effect from "effect/Effect"
import { importJWK, importSPKI } from "jose"
import { type Bytes, fromBase64Url, parsePem, pkcs1PublicToSpki, toBase64, toPem } from "../internal/der.js"
import { JWS_ALG } from "../internal/rsa.js"
import type { PublicKeyInput } from "../api/Apps.js"
import { InvalidPublicKey } from "../api/Problems.js"

/** The smallest RSA modulus accepted, in bits. */
export const MIN_RSA_BITS = 2048
/** The largest RSA modulus accepted, in bits (bigger keys only make every verification slower). */
export const MAX_RSA_BITS = 4096

/** A checked public key: its SPKI DER, fingerprint and size. */
export interface CheckedPublicKey {
  readonly spki: Bytes
  readonly fingerprint: string
  readonly bits: number
}

const invalid = (detail: string) => new InvalidPublicKey({ detail })

/** The `SHA256:` fingerprint of an SPKI DER. */
export const fingerprintOf = (spki: Bytes) =>
  Effect.map(
    Effect.promise(() => crypto.subtle.digest("SHA-256", spki)),
    (digest) => `SHA256:${toBase64(new Uint8Array(digest))}`
  )

const importSpki = (spki: Bytes) =>
  Effect.tryPromise({
    try: () => importSPKI(toPem("PUBLIC KEY", spki), JWS_ALG, { extractable: true }),
    catch: () => invalid("The public key is not an RSA public key")
  })

/** Reads and checks a public key in any accepted format. */
export const checkPublicKey = (input: PublicKeyInput): Effect.Effect<CheckedPublicKey, InvalidPublicKey> =>
  Effect.gen(function* () {
    let key: CryptoKey
    if (typeof input === "string") {
      const pem = parsePem(input)
      if ("error" in pem) return yield* invalid(`The public key is unreadable: ${pem.error}`)
      if (pem.label === "PUBLIC KEY") key = yield* importSpki(pem.der)
      else if (pem.label === "RSA PUBLIC KEY") {
        const spki = pkcs1PublicToSpki(pem.der)
        if (spki === undefined) return yield* invalid("The PKCS#1 public key is malformed")
        key = yield* importSpki(spki)
      } else if (pem.label.includes("PRIVATE")) {
        return yield* invalid("That is a private key; send the public key only")
      } else return yield* invalid(`Unsupported PEM type "${pem.label}"; send BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY`)
    } else {
      if (input.kty !== "RSA")
        return yield* invalid(`The JWK has kty "${String(input.kty).slice(0, 16)}"; only RSA is accepted`)
      if (typeof input.n !== "string" || typeof input.e !== "string") {
        return yield* invalid('An RSA JWK needs its "n" and "e" members')
      }
      if ("d" in input || "p" in input)
        return yield* invalid("That JWK holds a private key; send the public members only")
      const { n, e } = input
      key = yield* Effect.tryPromise({
        try: () => importJWK({ kty: "RSA", n, e }, JWS_ALG, { extractable: true }) as Promise<CryptoKey>,
        catch: () => invalid("The JWK is not a valid RSA public key")
      })
    }
    const bits = (key.algorithm as { readonly modulusLength?: number }).modulusLength ?? 0
    if (bits < MIN_RSA_BITS)
      return yield* invalid(`The RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`)
    // A signature is a whole number of bytes as long as the modulus; other sizes could never verify.
    if (bits % 8 !== 0) return yield* invalid(`The RSA key has ${bits} bits; a whole number of bytes is required`)
    if (bits > MAX_RSA_BITS) return yield* invalid(`The RSA key has ${bits} bits; at most ${MAX_RSA_BITS} are accepted`)
    // The numbers themselves: some runtimes import e = 1 or an even modulus, with which a
    // "signature" can be forged without any private key.
    const jwk = yield* Effect.tryPromise({
      try: () => crypto.subtle.exportKey("jwk", key) as Promise<JsonWebKey>,
      catch: () => invalid("The public key could not be exported")
    })
    const modulus = fromBase64Url(jwk.n ?? "")
    const exponent = fromBase64Url(jwk.e ?? "")
    if (modulus === undefined || exponent === undefined || modulus.length === 0 || exponent.length === 0) {
      return yield* invalid("The RSA key's modulus or exponent is unreadable")
    }
    if ((modulus[modulus.length - 1]! & 1) === 0) return yield* invalid("The RSA modulus is even")
    const significant = exponent.slice(exponent.findIndex((b) => b !== 0))
    if ((significant[significant.length - 1]! & 1) === 0 || (significant.length === 1 && significant[0]! < 3)) {
      return yield* invalid("The RSA public exponent must be odd and at least 3 (65537 is usual)")
    }
    const spki = new Uint8Array(
      yield* Effect.tryPromise({
        try: () => crypto.subtle.exportKey("spki", key) as Promise<ArrayBuffer>,
        catch: () => invalid("The public key could not be exported")
      })
    )
    return { spki, fingerprint: yield* fingerprintOf(spki), bits }
  })
