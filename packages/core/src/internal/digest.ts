/** SHA-256, the one digest the project uses: token secrets are stored as it, cache keys are shortened with it. */
import * as Effect from "effect/Effect"
import { toHex } from "./der.js"

const encoder = new TextEncoder()

/**
 * How SHA-256 of a string's UTF-8 bytes is made, as lower-case hex: `crypto.subtle` (web standard,
 * what the Worker uses). A server may put here an implementation of the same answer that is
 * synchronous (the Node/Deno/Bun servers put `node:crypto`'s `createHash`, `worker/src/server/Digest.ts`):
 * `crypto.subtle.digest` costs Node ≈ 55 µs a call and an asynchronous step, on every token use and mint.
 */
export const sha256 = {
  hex: (text: string): Promise<string> | string =>
    crypto.subtle.digest("SHA-256", encoder.encode(text)).then((digest) => toHex(new Uint8Array(digest)))
}

/** SHA-256 of a string's UTF-8 bytes, lower-case hex. */
export const sha256Hex = (text: string): Effect.Effect<string> =>
  Effect.suspend(() => {
    const hex = sha256.hex(text)
    return typeof hex === "string" ? Effect.succeed(hex) : Effect.promise(() => hex)
  })
