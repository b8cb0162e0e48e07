import { describe, expect, it } from "@effect/vitest"
import {
  MAX_BODY_BYTES,
  MAX_JSON_DEPTH,
  nestsDeeperThan,
  isSmallDeclaredBody,
  readBody,
  withBodyRead,
  withHeaders
} from "../../src/edge/Body.js"

const post = (body: string, contentType: string) =>
  new Request("http://edge.test/x", { method: "POST", headers: { "content-type": contentType }, body })

describe("nestsDeeperThan", () => {
  it("counts arrays and objects, not brackets inside strings", () => {
    const nested = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false)
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true)
    expect(nestsDeeperThan(`{"a":{"b":[{"c":1}]}}`, 4)).toBe(false)
    expect(nestsDeeperThan(`{"a":{"b":[{"c":1}]}}`, 3)).toBe(true)
    expect(nestsDeeperThan(`{"a":"${"[{".repeat(100)}"}`, 1)).toBe(false)
    expect(nestsDeeperThan(`{"a":"\\"[[[[","b":[]}`, 1)).toBe(true)
    expect(nestsDeeperThan(`{"a":"\\\\","b":"[[["}`, 1)).toBe(false)
  })
})

describe("readBody", () => {
  it("takes a JSON object, refuses JSON nested deeper than the cap with 400, never a defect", async () => {
    expect(await readBody(post('{"a":[1]}', "application/json"), "json")).toEqual({
      parsed: { a: [1] },
      text: '{"a":[1]}'
    })
    const deep = await readBody(post(`{"a":${"[".repeat(3000)}${"]".repeat(3000)}}`, "application/json"), "json")
    expect(deep).toMatchObject({ _tag: "InvalidRequest", detail: "The request body nests deeper than 32 levels" })
    expect(await readBody(post("[1]", "application/json"), "json")).toMatchObject({ _tag: "InvalidRequest" })
    expect(await readBody(post("", "text/plain"), "json")).toEqual({ parsed: {}, text: "{}" })
  })
  it("takes a form only where forms are taken, and refuses a parameter sent twice", async () => {
    const form = "application/x-www-form-urlencoded"
    expect(await readBody(post("a=1&b=2", form), "json-or-form")).toEqual({ parsed: { a: "1", b: "2" } })
    expect(await readBody(post("a=1&a=2", form), "json-or-form")).toMatchObject({
      _tag: "InvalidRequest",
      detail: "a is given more than once"
    })
    expect(await readBody(post("a=1", form), "json")).toMatchObject({
      _tag: "InvalidRequest",
      detail: "Request bodies must be JSON (Content-Type: application/json)"
    })
    expect(await readBody(post("<x/>", "text/xml"), "json-or-form")).toMatchObject({
      _tag: "InvalidRequest",
      detail: "Send the body as application/x-www-form-urlencoded or application/json"
    })
  })
  it("refuses a body over 16 KiB as read, whatever it declares", async () => {
    const big = `{"a":"${"x".repeat(MAX_BODY_BYTES)}"}`
    expect(await readBody(post(big, "application/json"), "json")).toMatchObject({ _tag: "PayloadTooLarge" })
    const exact = `{"a":"${"x".repeat(MAX_BODY_BYTES - 8)}"}`
    expect(exact.length).toBe(MAX_BODY_BYTES)
    expect(await readBody(post(exact, "application/json"), "json")).toMatchObject({ text: exact })
  })
})

describe("isSmallDeclaredBody: which bodies a server reads whole before handing the request on", () => {
  it("a declared length within the cap, and no Transfer-Encoding", () => {
    expect(isSmallDeclaredBody("0", undefined)).toBe(true)
    expect(isSmallDeclaredBody(String(MAX_BODY_BYTES), null)).toBe(true)
    expect(isSmallDeclaredBody(String(MAX_BODY_BYTES + 1), null)).toBe(false)
    expect(isSmallDeclaredBody("12", "chunked")).toBe(false)
    expect(isSmallDeclaredBody(undefined, undefined)).toBe(false)
    expect(isSmallDeclaredBody("1e3", null)).toBe(false)
    expect(isSmallDeclaredBody("+12", null)).toBe(false)
  })
})

describe("a body its server read ahead (withBodyRead)", () => {
  const bytes = (text: string) => new TextEncoder().encode(text)
  const bare = () =>
    new Request("http://edge.test/x", { method: "POST", headers: { "content-type": "application/json" } })

  it("is the body read, not the request's own (which the server may have left unread or absent)", async () => {
    expect(await readBody(withBodyRead(bare(), bytes('{"a":1}')), "json")).toEqual({
      parsed: { a: 1 },
      text: '{"a":1}'
    })
    const other = withBodyRead(post('{"from":"stream"}', "application/json"), bytes('{"from":"ahead"}'))
    expect(await readBody(other, "json")).toMatchObject({ parsed: { from: "ahead" } })
    expect(await readBody(withBodyRead(bare(), bytes("")), "json")).toEqual({ parsed: {}, text: "{}" })
  })
  it("is checked as a body read from the request: cap, JSON, and a body that could not be read", async () => {
    const over = withBodyRead(bare(), new Uint8Array(MAX_BODY_BYTES + 1).fill(0x20))
    expect(await readBody(over, "json")).toMatchObject({ _tag: "PayloadTooLarge" })
    expect(await readBody(withBodyRead(bare(), bytes("[1]")), "json")).toMatchObject({ _tag: "InvalidRequest" })
    expect(await readBody(withBodyRead(bare(), "unreadable"), "json")).toMatchObject({
      _tag: "InvalidRequest",
      detail: "The request body could not be read"
    })
  })
  it("goes with a copy made with other headers (withHeaders); a request read as usual keeps its own body", async () => {
    const copy = withHeaders(
      withBodyRead(bare(), bytes('{"b":2}')),
      new Headers({ "content-type": "application/json", "x-y": "1" })
    )
    expect(copy.headers.get("x-y")).toBe("1")
    // The copy carries the bytes itself: whoever checks `request.body` (the broker strips a stranger's) sees one.
    expect(copy.body).not.toBeNull()
    expect(await copy.clone().text()).toBe('{"b":2}')
    expect(await readBody(copy, "json")).toMatchObject({ parsed: { b: 2 } })
    const plain = withHeaders(post('{"c":3}', "application/json"), new Headers({ "content-type": "application/json" }))
    expect(await readBody(plain, "json")).toMatchObject({ parsed: { c: 3 } })
  })
})
