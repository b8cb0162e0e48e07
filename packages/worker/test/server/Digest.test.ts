/**
 * The servers' token digest (`src/server/Digest.ts`): `node:crypto` in place of `crypto.subtle`,
 * with the same answer for every text (so a token minted under one is found under the other), and
 * synchronous once a server has put it in place.
 */
import { digestOf, sha256 } from "@icr-apps/core/issuer/AccessTokens"
import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import { sha256HexNow, useServerDigest } from "../../src/server/Digest.js"

const subtleHex = async (text: string) =>
  Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))).toString("hex")

const texts = ["", "crs_0123456789abcdefABCDEF0123456789abcdef01234567", "é ☃ 𝄞 \u0000", "x".repeat(10_000)]

describe("the servers' token digest", () => {
  it("is SHA-256 of the UTF-8 bytes in lower-case hex, as crypto.subtle makes it", async () => {
    for (const text of texts) expect(sha256HexNow(text)).toBe(await subtleHex(text))
    expect(sha256HexNow("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })

  it("is what token digests are made with once a server puts it in place, with the same answers", async () => {
    const before = await Promise.all(texts.map((t) => Effect.runPromise(digestOf(t))))
    expect(typeof sha256.hex("abc")).not.toBe("string")
    useServerDigest()
    expect(sha256.hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    // Synchronous: the digest is made without an asynchronous step.
    expect(texts.map((t) => Effect.runSync(digestOf(t)))).toEqual(before)
  })
})
