/** SHA-256, the one digest the project uses: token secrets are stored as it, cache keys are shortened with it. */
import * as Effect from "effect/Effect"
import { toHex } from "./der.js"

const encoder = new TextEncoder()

/** SHA-256 of a string's UTF-8 bytes, lower-case hex. */
export const sha256Hex = (text: string): Effect.Effect<string> =>
  Effect.promise(() =>
    crypto.subtle.digest("SHA-256", encoder.encode(text)).then((digest) => toHex(new Uint8Array(digest)))
  )
