import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { beforeAll } from "vitest"
import { fromBase64Url, toBase64Url } from "../../src/internal/der.js"
import { checkPublicKey, MAX_RSA_BITS } from "../../src/issuer/PublicKeys.js"
import { rsaKeyPair } from "../fixtures.js"

let pair: Awaited<ReturnType<typeof rsaKeyPair>>
beforeAll(async () => {
  pair = await rsaKeyPair()
})

/** A JWK with the fixture's modulus, changed by `n` and `e`. */
const jwk = (change: { n?: (n: Uint8Array) => Uint8Array; e?: string }) => {
  const n = fromBase64Url(pair.publicJwk.n!)!
  return { kty: "RSA", n: toBase64Url(change.n ? change.n(n) : n), e: change.e ?? "AQAB" }
}
const reason = (input: Parameters<typeof checkPublicKey>[0]) =>
  Effect.map(Effect.either(checkPublicKey(input)), (r) => (r._tag === "Right" ? "ok" : r.left.detail))

describe("checkPublicKey: keys that cannot be weak (SPEC §5)", () => {
  it.effect("accepts the usual key in every format, with one fingerprint", () =>
    Effect.gen(function* () {
      const fingerprints = new Set<string>()
      for (const input of [pair.publicPem, pair.publicPkcs1Pem, jwk({})]) {
        fingerprints.add((yield* checkPublicKey(input)).fingerprint)
      }
      expect(fingerprints.size).toBe(1)
    })
  )
  it.effect("refuses e = 1, an even e, and an even modulus, whatever the runtime imports", () =>
    Effect.gen(function* () {
      expect(yield* reason(jwk({ e: "AQ" }))).toMatch(/exponent must be odd and at least 3/)
      expect(yield* reason(jwk({ e: "AAE" }))).toMatch(/exponent must be odd and at least 3/)
      expect(yield* reason(jwk({ e: "Ag" }))).toMatch(/exponent must be odd and at least 3|not a valid/)
      expect(yield* reason(jwk({ e: "AQAA" }))).toMatch(/exponent must be odd and at least 3|not a valid/)
      const even = (n: Uint8Array) => Uint8Array.from(n, (b, i) => (i === n.length - 1 ? b & 0xfe : b))
      expect(yield* reason(jwk({ n: even }))).toMatch(/modulus is even|not a valid/)
      expect(yield* reason(jwk({ e: "Aw" }))).toBe("ok") // e = 3 is weak-ish but valid RSA
    })
  )
  it.effect(`refuses moduli over ${MAX_RSA_BITS} and under 2048 bits`, () =>
    Effect.gen(function* () {
      const random = (bytes: number) => () => {
        const n = crypto.getRandomValues(new Uint8Array(bytes))
        n[0]! |= 0x80
        n[bytes - 1]! |= 1
        return n
      }
      expect(yield* reason(jwk({ n: random(MAX_RSA_BITS / 8) }))).toBe("ok")
      expect(yield* reason(jwk({ n: random(MAX_RSA_BITS / 8 + 1) }))).toMatch(/at most 4096/)
      expect(yield* reason(jwk({ n: random(255) }))).toMatch(/at least 2048/)
      // 2050 bits: no signature (a whole number of bytes) could ever match it.
      const odd = () => {
        const n = random(257)()
        n[0] = 0x03
        return n
      }
      expect(yield* reason(jwk({ n: odd }))).toMatch(/whole number of bytes/)
    })
  )
})
