/**
 * Fixture keys and hand-made JWTs for tests. Key pairs come from the SDK's `Keys` (fresh, every
 * format, never committed); `signRs256` signs any header and claims, however wrong, so tests can
 * build the JWTs an attacker would.
 */
import * as Encoding from "effect/Encoding"

import { type AppKeyPair, appKeyPairFromPkcs8 } from "@icr-apps/core/sdk/Keys"

export { type AppKeyPair, generateAppKeyPair } from "@icr-apps/core/sdk/Keys"

/** The key pair of a base64 PKCS#8 DER private key, in every format. */
export const fromPkcs8 = (base64: string): Promise<AppKeyPair> =>
  appKeyPairFromPkcs8(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)))

/** Base64url of a JSON value: one JWT segment. */
export const jsonSegment = (value: unknown): string => Encoding.encodeBase64Url(JSON.stringify(value))

/** Signs `payload` with RS256 under `header` (any header: no check is made) and returns the compact JWT. */
export const signRs256 = async (
  privateKey: CryptoKey,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = { alg: "RS256", typ: "JWT" }
): Promise<string> => {
  const input = `${jsonSegment(header)}.${jsonSegment(payload)}`
  const signature = await crypto.subtle.sign(
    { name: "RSASSA-PKCS1-v1_5" },
    privateKey,
    new Uint8Array(new TextEncoder().encode(input))
  )
  return `${input}.${Encoding.encodeBase64Url(new Uint8Array(signature))}`
}

/** The claims of a well-formed App JWT for `appId` at `nowSeconds` (iat backdated 60 s, exp +9 min). */
export const appClaims = (appId: string, nowSeconds = Math.floor(Date.now() / 1000)) => ({
  iss: appId,
  iat: nowSeconds - 60,
  exp: nowSeconds + 540
})
