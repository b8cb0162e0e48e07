import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { fromBase64Url, parsePem, pkcs1PublicToSpki, toBase64Url, toPem } from "../../src/internal/der.js"
import { checkPublicKey } from "../../src/issuer/PublicKeys.js"
import { rsaKeyPair } from "../fixtures.js"

describe("PEM handling", () => {
  it("tolerates \\n escapes, CRLF and surrounding blanks", async () => {
    const { publicPem } = await rsaKeyPair()
    const original = parsePem(publicPem)
    for (const variant of [publicPem.replace(/\n/g, "\\n"), publicPem.replace(/\n/g, "\r\n"), `\n  ${publicPem}  \n`]) {
      expect(parsePem(variant)).toEqual(original)
    }
  })
  it("names the problem with OpenSSH, truncated and non-PEM text", () => {
    expect(parsePem("ssh-rsa AAAAB3Nza user@host")).toEqual({ error: expect.stringMatching(/OpenSSH/) })
    expect(parsePem("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----")).toEqual({
      error: expect.stringMatching(/OpenSSH/)
    })
    expect(parsePem("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqh")).toEqual({ error: expect.stringMatching(/truncated/) })
    expect(parsePem("hello")).toEqual({ error: expect.stringMatching(/not a PEM/) })
    expect(parsePem("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----")).toEqual({
      error: expect.stringMatching(/DER/)
    })
  })
  it("base64url round-trips and refuses other alphabets", () => {
    const bytes = new Uint8Array([0, 255, 62, 63, 1, 2, 3])
    expect(fromBase64Url(toBase64Url(bytes))).toEqual(bytes)
    expect(fromBase64Url("ab+/")).toBeUndefined()
    expect(fromBase64Url("abcde")).toBeUndefined()
    expect(fromBase64Url("ab=")).toBeUndefined()
    expect(fromBase64Url("")).toEqual(new Uint8Array(0))
  })
  it("base64url accepts one spelling of each byte string: no bits set past the last byte", () => {
    expect(fromBase64Url("AQ")).toEqual(new Uint8Array([1]))
    expect(fromBase64Url("AR")).toBeUndefined()
    expect(fromBase64Url("AAE")).toEqual(new Uint8Array([0, 1]))
    expect(fromBase64Url("AAF")).toBeUndefined()
    // Every string of one, two and three characters (and with a full group before it) is accepted
    // exactly when encoding what it decodes to gives it back.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    const decodes = (text: string) => {
      const bytes = Uint8Array.from(
        atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4)),
        (c) => c.charCodeAt(0)
      )
      return toBase64Url(bytes) === text
    }
    let accepted = 0
    for (const a of alphabet) {
      for (const b of alphabet) {
        for (const text of [a, a + b, `${a + b}A`, `${a + b}Q`, `QUJD${a}${b}`, `${a}${b}${b}`]) {
          const canonical = text.length % 4 !== 1 && decodes(text)
          expect(fromBase64Url(text) !== undefined).toBe(canonical)
          if (canonical) accepted++
        }
      }
    }
    expect(accepted).toBeGreaterThan(4096)
  })
})

describe("checkPublicKey", () => {
  it.effect("gives SPKI and PKCS#1 forms of one key the same fingerprint", () =>
    Effect.gen(function* () {
      const { publicPem } = yield* Effect.promise(() => rsaKeyPair())
      const spki = yield* checkPublicKey(publicPem)
      // Re-wrap the PKCS#1 payload of the SPKI to build the BEGIN RSA PUBLIC KEY form.
      const pem = parsePem(publicPem)
      if ("error" in pem) throw new Error(pem.error)
      const pkcs1 = pem.der.slice(24)
      expect(pkcs1PublicToSpki(pkcs1)).toEqual(pem.der)
      const viaPkcs1 = yield* checkPublicKey(toPem("RSA PUBLIC KEY", pkcs1))
      expect(viaPkcs1.fingerprint).toBe(spki.fingerprint)
      expect(spki.bits).toBe(2048)
      expect(spki.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}=$/)
    })
  )
  it.effect("refuses keys under 2048 bits", () =>
    Effect.gen(function* () {
      const { publicPem } = yield* Effect.promise(() => rsaKeyPair(1024))
      const error = yield* Effect.flip(checkPublicKey(publicPem))
      expect(error.detail).toMatch(/1024 bits/)
    })
  )
})
