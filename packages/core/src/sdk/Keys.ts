/**
 * RSA key pairs for apps: a fresh RS256 key pair in every format the issuer and the SDK accept,
 * made with WebCrypto (so it runs on Workers, Deno, Bun and Node). What `icr-apps keygen` writes,
 * and what the testkit's fixtures are made of.
 */
import { type Bytes, pkcs1PrivateToPkcs8, readElement, toPem } from "../internal/der.js"
import { RS256 } from "../internal/rsa.js"

/** An RS256 key pair in every accepted format. */
export interface AppKeyPair {
  readonly privateKey: CryptoKey
  readonly publicKey: CryptoKey
  /** SPKI PEM (`BEGIN PUBLIC KEY`). */
  readonly publicPem: string
  /** PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`). */
  readonly publicPkcs1Pem: string
  /** The public JWK. */
  readonly publicJwk: JsonWebKey
  /** PKCS#8 PEM (`BEGIN PRIVATE KEY`). */
  readonly privatePem: string
  /** PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`). */
  readonly privatePkcs1Pem: string
  /** The private JWK. */
  readonly privateJwk: JsonWebKey
}

/** The contents of the DER element at `offset` (its value bytes). */
const contentsAt = (der: Bytes, offset: number): { readonly value: Bytes; readonly next: number } => {
  const e = readElement(der, offset)
  if (e === undefined) throw new Error("malformed DER")
  return { value: der.slice(e.start, e.end), next: e.end }
}

/** The PKCS#1 RSAPublicKey inside an SPKI (the BIT STRING's payload). */
const spkiToPkcs1 = (spki: Bytes): Bytes => {
  const outer = readElement(spki, 0)!
  const algorithm = readElement(spki, outer.start)!
  const bitString = readElement(spki, algorithm.end)!
  return spki.slice(bitString.start + 1, bitString.end)
}

/** The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (the OCTET STRING's payload). */
const pkcs8ToPkcs1 = (pkcs8: Bytes): Bytes => {
  const outer = readElement(pkcs8, 0)!
  const version = readElement(pkcs8, outer.start)!
  const algorithm = readElement(pkcs8, version.end)!
  return contentsAt(pkcs8, algorithm.end).value
}

/** A fresh RSA key pair of `bits` (2048 by default) for RS256. */
export const generateAppKeyPair = async (bits = 2048): Promise<AppKeyPair> => {
  const pair = (await crypto.subtle.generateKey(
    { ...RS256, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"]
  )) as CryptoKeyPair
  return formats(pair)
}

/**
 * The key pair of a PKCS#8 RSA private key (DER bytes), in every format: how the testkit's fixed
 * fixture keys are opened without generating a key.
 */
export const appKeyPairFromPkcs8 = async (pkcs8: Bytes): Promise<AppKeyPair> => {
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, RS256, true, ["sign"])
  const { kty, n, e } = (await crypto.subtle.exportKey("jwk", privateKey)) as { kty: string; n: string; e: string }
  const jwk: JsonWebKey = { kty, n, e, ext: true }
  const publicKey = await crypto.subtle.importKey("jwk", jwk, RS256, true, ["verify"])
  return formats({ privateKey, publicKey })
}

const formats = async (pair: CryptoKeyPair): Promise<AppKeyPair> => {
  const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer)
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer)
  const privatePkcs1 = pkcs8ToPkcs1(pkcs8)
  if (pkcs1PrivateToPkcs8(privatePkcs1) === undefined) throw new Error("PKCS#1 round trip failed")
  return {
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    publicPem: toPem("PUBLIC KEY", spki),
    publicPkcs1Pem: toPem("RSA PUBLIC KEY", spkiToPkcs1(spki)),
    publicJwk: (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey,
    privatePem: toPem("PRIVATE KEY", pkcs8),
    privatePkcs1Pem: toPem("RSA PRIVATE KEY", privatePkcs1),
    privateJwk: (await crypto.subtle.exportKey("jwk", pair.privateKey)) as JsonWebKey
  }
}
