/**
 * Compact JWS (JWT) encoding and RS256 signing with WebCrypto: what the SDK signs App JWTs with,
 * and what tests build tokens with. Verification lives in {@link ./JwtVerifier.ts}.
 */
import { toBase64Url } from "./Der.js"
import { RS256 } from "./PublicKeys.js"

/** Base64url of a JSON value: one JWT segment. */
export const jsonSegment = (value: unknown): string =>
  toBase64Url(new Uint8Array(new TextEncoder().encode(JSON.stringify(value))))

/** The header every App JWT carries unless told otherwise. */
export const defaultHeader = { alg: "RS256", typ: "JWT" } as const

/** Signs `payload` with RS256 under `header` and returns the compact JWT. */
export const signRs256 = async (
  privateKey: CryptoKey,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = defaultHeader
): Promise<string> => {
  const signingInput = `${jsonSegment(header)}.${jsonSegment(payload)}`
  const signature = await crypto.subtle.sign(RS256, privateKey, new Uint8Array(new TextEncoder().encode(signingInput)))
  return `${signingInput}.${toBase64Url(new Uint8Array(signature))}`
}
