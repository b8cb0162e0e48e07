import { describe, expect, it } from "@effect/vitest"
import * as AppJwt from "@icr-apps/core/sdk/AppJwt"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { beforeAll } from "vitest"
import { type AppKeyPair, generateAppKeyPair } from "../../src/Keys.js"
import { T0 } from "../sdk-harness.js"

let keys: AppKeyPair
beforeAll(async () => {
  keys = await generateAppKeyPair()
}, 30_000)

const decodePayload = (jwt: string) => JSON.parse(atob(jwt.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")))

describe("AppJwt", () => {
  it.effect("signs iat = now - 60, exp = now + 540, and reuses one JWT until 60 s before exp", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const jwt = yield* AppJwt.make({ appId: 42, privateKey: keys.privatePem })
      const first = Redacted.value(yield* jwt.get)
      expect(decodePayload(first)).toEqual({ iat: T0 / 1000 - 60, exp: T0 / 1000 + 540, iss: "42" })
      yield* TestClock.adjust("479 seconds")
      expect(Redacted.value(yield* jwt.get)).toBe(first)
      yield* TestClock.adjust("1 second")
      const second = Redacted.value(yield* jwt.get)
      expect(second).not.toBe(first)
      expect(decodePayload(second).iat).toBe(T0 / 1000 + 480 - 60)
    })
  )
  it.effect("never signs a lifetime beyond 600 s", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const jwt = yield* AppJwt.make({ appId: "1", privateKey: keys.privatePem, lifetimeSeconds: 3600 })
      const payload = decodePayload(Redacted.value(yield* jwt.get))
      expect(payload.exp - T0 / 1000).toBe(600)
    })
  )
  it.effect("signs identically from PKCS#8 PEM, PKCS#1 PEM, JWK and CryptoKey, with \\n escapes and CRLF", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const forms = [
        keys.privatePem,
        keys.privatePkcs1Pem,
        keys.privatePkcs1Pem.replace(/\n/g, "\\n"),
        keys.privatePem.replace(/\n/g, "\r\n"),
        Redacted.make(keys.privatePem),
        keys.privateJwk,
        keys.privateKey
      ]
      const jwts = new Set<string>()
      for (const privateKey of forms) {
        const jwt = yield* AppJwt.make({ appId: "7", privateKey })
        jwts.add(Redacted.value(yield* jwt.get))
      }
      expect(jwts.size).toBe(1)
    })
  )
  it.effect("fails at construction with a typed error naming the problem, never the key", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "openssh"],
        [keys.privatePem.slice(0, 400), "truncated"],
        [keys.publicPem, "public_key"],
        ["not a key at all", "not_pem"],
        ["-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----", "encrypted"],
        [keys.publicJwk, "public_key"],
        [{ kty: "EC", crv: "P-256", d: "x", x: "y", y: "z" }, "not_rsa"]
      ]
      for (const [privateKey, problem] of cases) {
        const error = yield* Effect.flip(AppJwt.make({ appId: "1", privateKey: privateKey as never }))
        expect(error).toBeInstanceOf(AppJwt.InvalidPrivateKey)
        expect(error.problem).toBe(problem)
        expect(error.message).not.toContain("MII")
        expect(error.message).not.toContain(keys.privatePem.slice(40, 80))
      }
    })
  )
  it.effect("says an encrypted key (PKCS#1 with Proc-Type, or PKCS#8) is encrypted, and how to decrypt it", () =>
    Effect.gen(function* () {
      const body = keys.privatePkcs1Pem.split("\n").slice(1, 6).join("\n")
      const pkcs1 = [
        "-----BEGIN RSA PRIVATE KEY-----",
        "Proc-Type: 4,ENCRYPTED",
        "DEK-Info: AES-256-CBC,47FCCD174AC688731CAA53AA4F0EF7A6",
        "",
        body,
        "-----END RSA PRIVATE KEY-----"
      ].join("\n")
      const pkcs8 = `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${body}\n-----END ENCRYPTED PRIVATE KEY-----`
      for (const privateKey of [pkcs1, pkcs1.replace(/\n/g, "\r\n"), pkcs1.replace(/\n/g, "\\n"), pkcs8]) {
        const error = yield* Effect.flip(AppJwt.make({ appId: "1", privateKey }))
        expect(error.problem).toBe("encrypted")
        expect(error.message).toContain("is encrypted")
        expect(error.message).toContain("openssl pkey -in app.pem -out app.decrypted.pem")
        expect(error.message).not.toContain("base64")
        expect(error.message).not.toContain(body.slice(0, 20))
      }
    })
  )
  it.effect("signs through a pluggable signer (a KMS/HSM) and puts its kid in the header", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const signed: Array<number> = []
      const jwt = yield* AppJwt.make({
        appId: "9",
        signer: {
          kid: "kms-key-1",
          sign: (data) =>
            Effect.promise(async () => {
              signed.push(data.byteLength)
              return new Uint8Array(await crypto.subtle.sign("RSASSA-PKCS1-v1_5", keys.privateKey, data))
            })
        }
      })
      const token = Redacted.value(yield* jwt.get)
      expect(JSON.parse(atob(token.split(".")[0]!))).toEqual({ alg: "RS256", typ: "JWT", kid: "kms-key-1" })
      expect(signed).toHaveLength(1)
    })
  )
})
