import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { afterEach, beforeAll, vi } from "vitest"
import { toBase64 } from "../../src/internal/der.js"
import { signRs256 } from "../fixtures.js"
import * as JwtVerifier from "../../src/issuer/JwtVerifier.js"
import { checkPublicKey } from "../../src/issuer/PublicKeys.js"
import * as Registry from "../../src/issuer/Registry.js"
import { rsaKeyPair } from "../fixtures.js"

let pair: Awaited<ReturnType<typeof rsaKeyPair>>
beforeAll(async () => {
  pair = await rsaKeyPair()
})
afterEach(() => {
  vi.restoreAllMocks()
})

const NOW = 1_700_000_000

/** A registry holding app "1" with the fixture key, and a verifier over it; the TestClock at NOW. */
const setup = Effect.gen(function* () {
  yield* TestClock.setTime(NOW * 1000)
  const registry = yield* Registry.Registry
  const checked = yield* checkPublicKey(pair.publicPem)
  yield* registry.createApp(
    { name: "app1", permissions: {}, createdAt: 0, updatedAt: 0 },
    {
      id: "abcdef01-1111-4111-8111-111111111111",
      fingerprint: checked.fingerprint,
      spki: toBase64(checked.spki),
      createdAt: 0
    }
  )
  return yield* JwtVerifier.JwtVerifier
})

const TestLayer = JwtVerifier.layer.pipe(Layer.provideMerge(Registry.layerMemory))

const verify = (claims: Record<string, unknown>) =>
  Effect.gen(function* () {
    const verifier = yield* setup
    const jwt = yield* Effect.promise(() => signRs256(pair.privateKey, { iss: "1", ...claims }))
    return yield* Effect.either(verifier.verify(jwt))
  }).pipe(Effect.provide(TestLayer))

const reasonOf = (claims: Record<string, unknown>) =>
  Effect.map(verify(claims), (r) =>
    r._tag === "Right" ? "ok" : r.left._tag === "InvalidJwt" ? r.left.reason : r.left._tag
  )

describe("JwtVerifier: the SPEC §2 time window, at its edges", () => {
  it.effect("accepts iat up to now + 60 and refuses now + 61", () =>
    Effect.gen(function* () {
      expect(yield* reasonOf({ iat: NOW + 60, exp: NOW + 600 })).toBe("ok")
      expect(yield* reasonOf({ iat: NOW + 61, exp: NOW + 600 })).toBe("iat_in_future")
    })
  )
  it.effect("refuses exp <= now as expired, accepts exp = now + 1", () =>
    Effect.gen(function* () {
      expect(yield* reasonOf({ iat: NOW - 100, exp: NOW })).toBe("expired")
      expect(yield* reasonOf({ iat: NOW - 100, exp: NOW + 1 })).toBe("ok")
    })
  )
  it.effect("accepts exp = now + 660, refuses now + 661", () =>
    Effect.gen(function* () {
      expect(yield* reasonOf({ iat: NOW, exp: NOW + 660 })).toBe("ok")
      expect(yield* reasonOf({ iat: NOW, exp: NOW + 661 })).toBe("exp_too_far")
    })
  )
  it.effect("accepts exp - iat = 660, refuses 661", () =>
    Effect.gen(function* () {
      expect(yield* reasonOf({ iat: NOW - 600, exp: NOW + 60 })).toBe("ok")
      expect(yield* reasonOf({ iat: NOW - 601, exp: NOW + 60 })).toBe("exp_too_far")
    })
  )
  it.effect("accepts the SDK's own shape: iat = now - 60, exp = now + 540", () =>
    Effect.gen(function* () {
      expect(yield* reasonOf({ iat: NOW - 60, exp: NOW + 540 })).toBe("ok")
    })
  )
  it.effect("follows the clock: a JWT valid now is expired once the clock moves past exp", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const jwt = yield* Effect.promise(() => signRs256(pair.privateKey, { iss: 1, iat: NOW - 60, exp: NOW + 540 }))
      expect((yield* verifier.verify(jwt)).appId).toBe("1")
      yield* TestClock.adjust("540 seconds")
      const failed = yield* Effect.flip(verifier.verify(jwt))
      expect(failed._tag === "InvalidJwt" && failed.reason).toBe("expired")
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("JwtVerifier: keys", () => {
  it.effect("imports each key once and reuses the import on later requests", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const importKey = vi.spyOn(crypto.subtle, "importKey")
      for (let i = 0; i < 5; i++) {
        const jwt = yield* Effect.promise(() =>
          signRs256(pair.privateKey, { iss: "1", iat: NOW - 60, exp: NOW + 540 + i })
        )
        yield* verifier.verify(jwt)
      }
      expect(importKey).toHaveBeenCalledTimes(1)
    }).pipe(Effect.provide(TestLayer))
  )
  it.effect("never verifies a JWT issued before its key was deleted, even once the same key is registered anew", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const registry = yield* Registry.Registry
      const checked = yield* checkPublicKey(pair.publicPem)
      const before = yield* Effect.promise(() =>
        signRs256(pair.privateKey, { iss: "1", iat: NOW - 60, exp: NOW + 540 })
      )
      yield* verifier.verify(before)
      yield* registry.deleteKey("1", "abcdef01-1111-4111-8111-111111111111", NOW * 1000)
      const again = yield* registry.addKey({
        id: "abcdef01-2222-4222-8222-222222222222",
        appId: "1",
        fingerprint: checked.fingerprint,
        spki: toBase64(checked.spki),
        createdAt: NOW * 1000 + 5_000
      })
      expect(again.notBefore).toBe(NOW * 1000)
      const replayed = yield* Effect.flip(verifier.verify(before))
      expect(replayed._tag === "InvalidJwt" && replayed.reason).toBe("invalid_signature")
      // A JWT issued after the deletion verifies with the key registered anew.
      yield* TestClock.adjust("2 seconds")
      const after = yield* Effect.promise(() => signRs256(pair.privateKey, { iss: "1", iat: NOW + 1, exp: NOW + 540 }))
      expect((yield* verifier.verify(after)).keyId).toBe("abcdef01-2222-4222-8222-222222222222")
    }).pipe(Effect.provide(TestLayer))
  )
  it.effect("never verifies against a key once it is deleted", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const registry = yield* Registry.Registry
      const jwt = yield* Effect.promise(() => signRs256(pair.privateKey, { iss: "1", iat: NOW - 60, exp: NOW + 540 }))
      yield* verifier.verify(jwt)
      yield* registry.deleteKey("1", "abcdef01-1111-4111-8111-111111111111", NOW * 1000)
      const failed = yield* Effect.flip(verifier.verify(jwt))
      expect(failed._tag === "InvalidJwt" && failed.reason).toBe("invalid_signature")
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("JwtVerifier: one spelling, one key, one cost", () => {
  const sign = () => Effect.promise(() => signRs256(pair.privateKey, { iss: "1", iat: NOW - 60, exp: NOW + 540 }))
  /** The same JWT with unused bits set in the last character of segment `index` (decodes to the same bytes). */
  const respell = (jwt: string, index: number) => {
    const parts = jwt.split(".")
    const segment = parts[index]!
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    const unused = [0, 0, 4, 2][segment.length % 4]!
    const last = alphabet.indexOf(segment.at(-1)!)
    parts[index] = segment.slice(0, -1) + alphabet[last | ((1 << unused) - 1)]
    return parts.join(".")
  }

  it.effect("refuses any segment spelled with non-zero unused trailing bits", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const jwt = yield* sign()
      expect((yield* verifier.verify(jwt)).appId).toBe("1")
      for (const index of [0, 1, 2]) {
        const other = respell(jwt, index)
        if (other === jwt) continue // that segment's length leaves no unused bits
        const failed = yield* Effect.flip(verifier.verify(other))
        expect(failed._tag).toBe("InvalidJwt")
      }
      expect(respell(jwt, 2)).not.toBe(jwt) // a 256-byte signature always has 4 unused bits
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("matches a kid that is a key id whatever its case, and a fingerprint exactly", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const claims = { iss: "1", iat: NOW - 60, exp: NOW + 540 }
      const upper = yield* Effect.promise(() =>
        signRs256(pair.privateKey, claims, { alg: "RS256", kid: "abcdef01-1111-4111-8111-111111111111".toUpperCase() })
      )
      expect((yield* verifier.verify(upper)).keyId).toBe("abcdef01-1111-4111-8111-111111111111")
      const checked = yield* checkPublicKey(pair.publicPem)
      const byFingerprint = yield* Effect.promise(() =>
        signRs256(pair.privateKey, claims, { alg: "RS256", kid: checked.fingerprint })
      )
      expect((yield* verifier.verify(byFingerprint)).appId).toBe("1")
      const wrongCase = yield* Effect.promise(() =>
        signRs256(pair.privateKey, claims, { alg: "RS256", kid: checked.fingerprint.toLowerCase() })
      )
      expect((yield* Effect.flip(verifier.verify(wrongCase)))._tag).toBe("InvalidJwt")
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("an unknown app costs one RSA verification, like a known app with a wrong signature", () =>
    Effect.gen(function* () {
      const verifier = yield* setup
      const other = yield* Effect.promise(() => rsaKeyPair())
      const claims = { iat: NOW - 60, exp: NOW + 540 }
      const unknown = yield* Effect.promise(() => signRs256(other.privateKey, { ...claims, iss: "999" }))
      const wrong = yield* Effect.promise(() => signRs256(other.privateKey, { ...claims, iss: "1" }))
      // Warm both imports first: only verifications are counted.
      yield* Effect.either(verifier.verify(unknown))
      yield* Effect.either(verifier.verify(wrong))
      const verifyCalls = vi.spyOn(crypto.subtle, "verify")
      const a = yield* Effect.flip(verifier.verify(unknown))
      const afterUnknown = verifyCalls.mock.calls.length
      const b = yield* Effect.flip(verifier.verify(wrong))
      expect([a, b].map((e) => e._tag === "InvalidJwt" && e.reason)).toEqual(["invalid_signature", "invalid_signature"])
      // One message for both, naming both possible causes and neither as the one (SPEC §2).
      expect(a.message).toBe(b.message)
      expect(a.message).toMatch(/^Unknown app or wrong key: /)
      expect(a.message).not.toMatch(/999|not found|no such app/i)
      expect([afterUnknown, verifyCalls.mock.calls.length - afterUnknown]).toEqual([1, 1])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect(
    "never tries a key whose modulus is not the signature's length, and then costs one dummy verification",
    () =>
      Effect.gen(function* () {
        const verifier = yield* setup
        const big = yield* Effect.promise(() => rsaKeyPair(3072))
        const claims = { iss: "1", iat: NOW - 60, exp: NOW + 540 }
        const jwt = yield* Effect.promise(() => signRs256(big.privateKey, claims))
        const unknownKid = yield* Effect.promise(() =>
          signRs256(pair.privateKey, claims, { alg: "RS256", kid: "no-such-key" })
        )
        yield* Effect.either(verifier.verify(jwt)) // imports the app's key and the dummy
        const verifyCalls = vi.spyOn(crypto.subtle, "verify")
        const failed = yield* Effect.flip(verifier.verify(jwt))
        expect(failed._tag === "InvalidJwt" && failed.reason).toBe("invalid_signature")
        // The app's 2048-bit key cannot have made a 384-byte signature, so only the dummy runs:
        // the same one verification an unknown app costs (and an unknown kid, below).
        expect(verifyCalls).toHaveBeenCalledTimes(1)
        const byKid = yield* Effect.flip(verifier.verify(unknownKid))
        expect(byKid._tag === "InvalidJwt" && byKid.reason).toBe("invalid_signature")
        expect(verifyCalls).toHaveBeenCalledTimes(2)
      }).pipe(Effect.provide(TestLayer))
  )
})
