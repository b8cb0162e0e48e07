import { describe, expect, it } from "vitest"
import { causeChain, classify } from "../../src/internal/transport.js"

/** A Node fetch failure: `TypeError: fetch failed` with the system error as its cause. */
const nodeError = (code: string, message: string) =>
  Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error(message), { code }) })

describe("transport failures, as each runtime reports them", () => {
  it.each([
    ["Node, refused", nodeError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"), "refused"],
    ["Node, unresolvable", nodeError("ENOTFOUND", "getaddrinfo ENOTFOUND icr.invalid"), "unresolvable"],
    ["Node, DNS down", nodeError("EAI_AGAIN", "getaddrinfo EAI_AGAIN icr.example"), "unresolvable"],
    ["Node, connect timeout", nodeError("UND_ERR_CONNECT_TIMEOUT", "Connect Timeout Error"), "timeout"],
    ["Node, TLS", nodeError("CERT_HAS_EXPIRED", "certificate has expired"), "tls"],
    [
      "Node, happy eyeballs (AggregateError)",
      Object.assign(new TypeError("fetch failed"), {
        cause: Object.assign(new AggregateError([Object.assign(new Error("connect"), { code: "ECONNREFUSED" })]), {
          code: "ECONNREFUSED"
        })
      }),
      "refused"
    ],
    [
      "Deno, refused",
      new TypeError(
        "error sending request for url (http://127.0.0.1:9/): client error (Connect): tcp connect error: Connection refused (os error 111)"
      ),
      "refused"
    ],
    [
      "Deno, unresolvable",
      new TypeError(
        "error sending request: dns error: failed to lookup address information: Name or service not known"
      ),
      "unresolvable"
    ],
    [
      "Bun, refused",
      Object.assign(new Error("Unable to connect. Is the computer able to access the url?"), {
        code: "ConnectionRefused"
      }),
      "refused"
    ],
    ["anything else", new TypeError("Failed to fetch"), "network"]
  ])("%s", (_label, error, failure) => {
    expect(classify(causeChain(error))).toBe(failure)
  })

  it("follows causes without looping on a cycle", () => {
    const a: { message: string; cause?: unknown } = { message: "a" }
    a.cause = { message: "b", cause: a }
    expect(causeChain(a)).toEqual(["a", "b"])
  })
})
