/**
 * The little DER and PEM handling the key formats need, in pure TypeScript (no Node APIs), so key
 * conversion runs unchanged on Workers, Deno, Bun and Node.
 */

/** Bytes backed by a plain ArrayBuffer (what WebCrypto accepts). */
export type Bytes = Uint8Array<ArrayBuffer>

/** The DER encoding of the rsaEncryption AlgorithmIdentifier: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }. */
const RSA_ALGORITHM_IDENTIFIER = Uint8Array.from([
  0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00
])

/** A DER length field. */
const encodeLength = (length: number): Bytes => {
  if (length < 0x80) return Uint8Array.of(length)
  const bytes: Array<number> = []
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256)
  return Uint8Array.of(0x80 | bytes.length, ...bytes)
}

/** One DER element: tag, length, contents. */
const element = (tag: number, ...parts: ReadonlyArray<Bytes>): Bytes => {
  const size = parts.reduce((n, p) => n + p.byteLength, 0)
  const length = encodeLength(size)
  const out = new Uint8Array(1 + length.byteLength + size)
  out[0] = tag
  out.set(length, 1)
  let offset = 1 + length.byteLength
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

/** Reads the tag and content bounds of the DER element at `offset`; `undefined` when malformed. */
export const readElement = (
  der: Uint8Array,
  offset = 0
): { readonly tag: number; readonly start: number; readonly end: number } | undefined => {
  if (offset + 2 > der.byteLength) return undefined
  const tag = der[offset]!
  let length = der[offset + 1]!
  let start = offset + 2
  if (length & 0x80) {
    const count = length & 0x7f
    if (count === 0 || count > 4 || start + count > der.byteLength) return undefined
    length = 0
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!
    start += count
  }
  const end = start + length
  return end > der.byteLength ? undefined : { tag, start, end }
}

/** Whether `der` is exactly one well-formed SEQUENCE. */
const isSequence = (der: Uint8Array): boolean => {
  const e = readElement(der)
  return e !== undefined && e.tag === 0x30 && e.end === der.byteLength
}

/** Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo. */
export const pkcs1PublicToSpki = (pkcs1: Bytes): Bytes | undefined =>
  isSequence(pkcs1) ? element(0x30, RSA_ALGORITHM_IDENTIFIER, element(0x03, Uint8Array.of(0x00), pkcs1)) : undefined

/** Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (version 0). */
export const pkcs1PrivateToPkcs8 = (pkcs1: Bytes): Bytes | undefined =>
  isSequence(pkcs1)
    ? element(0x30, Uint8Array.of(0x02, 0x01, 0x00), RSA_ALGORITHM_IDENTIFIER, element(0x04, pkcs1))
    : undefined

/** What an encrypted private key is told: what it is, and the command that decrypts it. */
export const ENCRYPTED_KEY =
  "the private key is encrypted (protected by a passphrase); the SDK needs it unencrypted: " +
  "openssl pkey -in app.pem -out app.decrypted.pem (asks for the passphrase; keep the result as secret as the key)"

/** A parsed PEM block. */
export interface Pem {
  readonly label: string
  readonly der: Bytes
}

/**
 * Parses one PEM block. Tolerates literal `\n` escapes (keys pasted into env vars), CRLF, and
 * surrounding white space; returns a reason when the text is not a usable PEM.
 */
export const parsePem = (text: string): Pem | { readonly error: string } => {
  const normalized = text
    .replace(/\\r\\n|\\n/g, "\n")
    .replace(/\r\n?/g, "\n")
    .trim()
  if (normalized.startsWith("ssh-rsa") || normalized.includes("OPENSSH PRIVATE KEY")) {
    return { error: "OpenSSH keys are not supported; convert with: ssh-keygen -p -m PKCS8 -f KEY" }
  }
  const match = /^-----BEGIN ([A-Z0-9 ]+)-----\n([\s\S]*?)\n?-----END \1-----$/.exec(normalized)
  if (match === null) {
    return normalized.includes("-----BEGIN")
      ? { error: "the PEM block is truncated or its BEGIN and END lines do not match" }
      : { error: "not a PEM block (expected -----BEGIN …-----)" }
  }
  // An encrypted key: PKCS#1 with RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`) inside
  // the block, or PKCS#8's `ENCRYPTED PRIVATE KEY`. Said as such, never as "not valid base64".
  if (match[1] === "ENCRYPTED PRIVATE KEY" || /^(Proc-Type:\s*4,\s*ENCRYPTED|DEK-Info:)/m.test(match[2]!)) {
    return { error: ENCRYPTED_KEY }
  }
  const body = match[2]!.replace(/\s+/g, "")
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0 || body.length === 0) {
    return { error: "the PEM body is not valid base64" }
  }
  const binary = atob(body)
  const der = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) der[i] = binary.charCodeAt(i)
  if (!isSequence(der)) return { error: "the PEM body is not a DER structure (truncated?)" }
  return { label: match[1]!, der }
}

const HEX_DIGITS = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"))

/** Lower-case hex of bytes (table-driven: a token digest is made on every use of a token). */
export const toHex = (bytes: Uint8Array): string => {
  let hex = ""
  for (let i = 0; i < bytes.length; i++) hex += HEX_DIGITS[bytes[i]!]
  return hex
}

/** Standard base64 of bytes. */
export const toBase64 = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary)
}

/** Bytes of a standard base64 string. */
export const fromBase64 = (text: string): Bytes => {
  const binary = atob(text)
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}

/** Base64url (no padding) of bytes. */
export const toBase64Url = (bytes: Uint8Array): string =>
  toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")

/**
 * Bytes of a canonical unpadded base64url string; `undefined` when it is not one. Canonical: no
 * padding, only the alphabet, and no set bits in the unused tail of the last character — so each
 * byte string has exactly one accepted spelling.
 */
export const fromBase64Url = (text: string): Bytes | undefined => {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  const tail = text.length % 4
  if (tail === 1) return undefined
  // The last character of a short group carries bits past the last byte (4 of them after 2
  // characters, 2 after 3): canonical means they are zero.
  if (tail !== 0 && (BASE64URL.indexOf(text[text.length - 1]!) & (tail === 2 ? 0x0f : 0x03)) !== 0) return undefined
  return fromBase64(text.replace(/-/g, "+").replace(/_/g, "/") + (tail === 0 ? "" : tail === 2 ? "==" : "="))
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/** A PEM block of `der` under `label`, 64 columns. */
export const toPem = (label: string, der: Uint8Array): string =>
  `-----BEGIN ${label}-----\n${toBase64(der)
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "")}\n-----END ${label}-----\n`
