/** SHA-256, the one digest the project uses: token secrets are stored as it, cache keys are shortened with it. */
import * as Effect from "effect/Effect"
import { toHex } from "./der.js"

/** SHA-256 of a string's UTF-8 bytes, lower-case hex. */
export const sha256Hex = (text: string): Effect.Effect<string> =>
  Effect.map(
    Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))),
    (d) => toHex(new Uint8Array(d))
  )
