import { describe, expect, it } from "vitest"
import { clientAddressFrom, cloudflareClientAddress } from "../../src/issuer/Http.js"

const request = (headers: Record<string, string>) => new Request("http://icr.test/healthz", { headers })

describe("the client address a request's address budget counts against (SPEC §1, §9)", () => {
  it("on Cloudflare: cf-connecting-ip", () => {
    expect(cloudflareClientAddress(request({ "cf-connecting-ip": "203.0.113.7" }), undefined)).toBe("203.0.113.7")
    expect(cloudflareClientAddress(request({}), { remoteAddress: "10.0.0.1" })).toBeUndefined()
  })
  it("off Cloudflare, by default: the TCP peer, whatever headers the client sends", () => {
    const address = clientAddressFrom(undefined)
    const spoofed = request({ "cf-connecting-ip": "203.0.113.7", "x-forwarded-for": "198.51.100.1" })
    expect(address(spoofed, { remoteAddress: "192.0.2.10" })).toBe("192.0.2.10")
    expect(address(spoofed, undefined)).toBeUndefined()
  })
  it("with TRUST_PROXY: the named header's nearest address, else the TCP peer", () => {
    const address = clientAddressFrom("x-forwarded-for")
    const peer = { remoteAddress: "10.0.0.2" }
    expect(address(request({ "x-forwarded-for": "198.51.100.1, 203.0.113.9" }), peer)).toBe("203.0.113.9")
    expect(address(request({ "cf-connecting-ip": "203.0.113.7" }), peer)).toBe("10.0.0.2")
    expect(clientAddressFrom("cf-connecting-ip")(request({ "cf-connecting-ip": "2001:db8::1" }), peer)).toBe(
      "2001:db8::1"
    )
  })
})
