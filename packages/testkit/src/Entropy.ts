/**
 * Predictable randomness for tests: the issuer's `Entropy` service from a seed, so the same seed
 * gives the same tokens and ids. Lives here, never in the issuer, so no production build can use it.
 */
import { Entropy } from "@icr-apps/core/issuer/Entropy"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"

const toUuid = (b: Uint8Array): string => {
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const hex = Encoding.encodeHex(b)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/**
 * A deterministic generator (xorshift128+, seeded) for tests: the same seed gives the same tokens
 * and ids. Never use it to mint real tokens.
 */
export const layerSeeded = (seed: number): Layer.Layer<Entropy> =>
  Layer.sync(Entropy, () => {
    let s0 = BigInt(seed >>> 0) | 1n
    let s1 = 0x9e3779b97f4a7c15n
    const mask = (1n << 64n) - 1n
    const next = (): number => {
      let x = s0
      const y = s1
      s0 = y
      x ^= (x << 23n) & mask
      s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n)
      return Number((s1 + y) & 0xffn)
    }
    const bytes = (n: number) => Uint8Array.from({ length: n }, next)
    return {
      bytes: (n) => Effect.sync(() => bytes(n)),
      uuid: Effect.sync(() => toUuid(bytes(16)))
    }
  })
