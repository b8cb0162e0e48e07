/**
 * The servers' SHA-256 (Node, Deno, Bun): `node:crypto`'s `createHash`, synchronous, in place of
 * `crypto.subtle.digest` (which the Worker keeps). The answer is the same — lower-case hex of the
 * UTF-8 bytes — so a token minted by one is found by the other; what changes is the cost of every
 * token use and mint (`crypto.subtle` costs Node ≈ 55 µs a call and an asynchronous step, this ≈ 3 µs).
 */
import { createHash } from "node:crypto"
import { sha256 } from "@icr-apps/core/issuer/AccessTokens"

/** SHA-256 of a string's UTF-8 bytes, lower-case hex, at once. */
export const sha256HexNow = (text: string): string => createHash("sha256").update(text, "utf8").digest("hex")

/** Makes this process's token digests with {@link sha256HexNow}. */
export const useServerDigest = (): void => {
  sha256.hex = sha256HexNow
}
