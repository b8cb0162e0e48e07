import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { InvalidRequest, InvalidToken, Problems, RateLimited } from "../../src/api/Problems.js"
import {
  type Backend,
  jsonText,
  makeEdge,
  type PlainAnswer,
  problemEncoder,
  utf8Length,
  wwwAuthenticate
} from "../../src/edge/Edge.js"

/** An edge with no API version (as the broker's) over a backend that answers what `answer` says. */
const edgeOver = (answer: (path: string) => Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>) => {
  const defects: Array<string> = []
  const edge = makeEdge({
    name: "test",
    headers: { pragma: "no-cache" },
    overlongCredential: () => new InvalidRequest({ detail: "The Authorization header is too long" }),
    bodies: "json-or-form",
    allowedMethods: (pathname) => (pathname === "/x" ? ["GET", "HEAD"] : []),
    decodeFailure: () => new InvalidRequest({ detail: "undecodable" }),
    encode: problemEncoder(Problems)
  })
  const backend: Backend<undefined, undefined> = {
    begin: () => undefined,
    route: async (request) => answer(new URL(request.url, "http://x").pathname),
    clock: Effect.runSync(Clock.clockWith(Effect.succeed)),
    logDefect: (name) => void defects.push(name)
  }
  return { handler: edge.serve(async () => backend), answers: edge.serveAnswers(async () => backend), defects }
}

describe("wwwAuthenticate (SPEC §1, RFC 6750 §3.1)", () => {
  it("names the realm, and the error only when credentials were sent", () => {
    expect(wwwAuthenticate(false)).toBe('Bearer realm="icr-apps"')
    expect(wwwAuthenticate(true)).toBe('Bearer realm="icr-apps", error="invalid_token"')
  })
})

describe("an edge configured without an API version (the broker's)", () => {
  it("neither checks nor sends x-icr-api-version, and adds its own headers to SPEC §1's", async () => {
    const { handler } = edgeOver(() => Exit.succeed(HttpServerResponse.unsafeJson({ ok: true })))
    const res = await handler(new Request("http://edge.test/x", { headers: { "x-icr-api-version": "1999-01-01" } }))
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('{"ok":true}\n')
    expect(res.headers.get("content-length")).toBe("12")
    expect(res.headers.get("x-icr-api-version")).toBeNull()
    expect(res.headers.get("pragma")).toBe("no-cache")
    expect(res.headers.get("cache-control")).toBe("no-store")
    expect(Number.isNaN(Date.parse(res.headers.get("date") ?? ""))).toBe(false)
  })
  it("answers an over-long credential as configured, before routing", async () => {
    let routed = 0
    const { handler } = edgeOver(() => {
      routed++
      return Exit.succeed(HttpServerResponse.empty())
    })
    const res = await handler(
      new Request("http://edge.test/x", { headers: { authorization: `Bearer ${"a".repeat(8 * 1024 + 1)}` } })
    )
    expect(res.status).toBe(400)
    expect(((await res.json()) as { code: string }).code).toBe("invalid_request")
    expect(routed).toBe(0)
  })
  it("replaces a request id that looks like a credential, keeps a sane one", async () => {
    const { handler } = edgeOver(() => Exit.succeed(HttpServerResponse.empty()))
    const idOf = async (id: string) =>
      (await handler(new Request("http://edge.test/x", { headers: { "x-request-id": id } }))).headers.get(
        "x-request-id"
      )
    expect(await idOf("job-7.step:2")).toBe("job-7.step:2")
    expect(await idOf(`crs_${"ab".repeat(24)}`)).toMatch(/^[0-9a-f-]{36}$/)
    expect(await idOf("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")).toMatch(/^[0-9a-f-]{36}$/)
    // A JWT by its shape, whatever its header's spelling; GitHub's tokens.
    expect(await idOf("ewogICJhbGciOiAiUlMyNTYiCn0.ewogICJzdWIiOiAieCIKfQ.c2lnbmF0dXJl")).toMatch(/^[0-9a-f-]{36}$/)
    expect(await idOf(`ghs_${"A1".repeat(18)}`)).toMatch(/^[0-9a-f-]{36}$/)
    expect(await idOf(`github_pat_${"a".repeat(30)}`)).toMatch(/^[0-9a-f-]{36}$/)
    // Dotted ids that are not tokens are kept.
    expect(await idOf("req-1.a")).toBe("req-1.a")
    expect(await idOf("web.prod-eu.4242")).toBe("web.prod-eu.4242")
  })
  it("encodes problems with Retry-After and WWW-Authenticate, and a defect as 500 that names nothing", async () => {
    const { handler, defects } = edgeOver((path) =>
      path === "/limited"
        ? Exit.fail(new RateLimited({ detail: "slow down", retryAfter: 7 }))
        : path === "/denied"
          ? Exit.fail(new InvalidToken({ detail: "no" }))
          : Exit.die(new TypeError("a secret in a message"))
    )
    const limited = await handler(new Request("http://edge.test/limited"))
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).toBe("7")
    expect(limited.headers.get("content-type")).toBe("application/problem+json")
    expect((await limited.text()).endsWith("}\n")).toBe(true)
    const denied = await handler(new Request("http://edge.test/denied", { headers: { authorization: "Bearer x" } }))
    expect(denied.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps", error="invalid_token"')
    const broken = await handler(new Request("http://edge.test/broken"))
    expect(broken.status).toBe(500)
    expect(await broken.text()).not.toContain("secret")
    expect(defects).toEqual(["TypeError"])
  })
})

describe("answers made as text (jsonText, problem documents)", () => {
  it("counts UTF-8 bytes, not UTF-16 units", () => {
    expect(utf8Length('{"a":1}')).toBe(7)
    expect(utf8Length("\t\u007f")).toBe(2)
    expect(utf8Length("é")).toBe(2)
    expect(utf8Length("€")).toBe(3)
    expect(utf8Length("😀")).toBe(4)
    expect(utf8Length("a€😀\n")).toBe(new TextEncoder().encode("a€😀\n").byteLength)
  })
  it("keeps the body text (no bytes made on the way), its length declared in bytes, a final newline", async () => {
    const { handler, answers } = edgeOver(() =>
      Exit.succeed(jsonText({ name: "Café €" }, { status: 201, contentType: "application/json" }))
    )
    const answer = (await answers(new Request("http://edge.test/x"))) as PlainAnswer
    expect(typeof answer.body).toBe("string")
    expect(answer.body).toBe('{"name":"Café €"}\n')
    expect(answer.headers["content-length"]).toBe("21")
    const res = await handler(new Request("http://edge.test/x"))
    expect(res.status).toBe(201)
    expect(res.headers.get("content-type")).toBe("application/json")
    const bytes = new Uint8Array(await res.arrayBuffer())
    expect(bytes.byteLength).toBe(21)
    expect(new TextDecoder().decode(bytes)).toBe('{"name":"Café €"}\n')
    // HEAD: the GET's length, no body.
    const head = (await answers(new Request("http://edge.test/x", { method: "HEAD" }))) as PlainAnswer
    expect(head.body).toBeUndefined()
    expect(head.headers["content-length"]).toBe("21")
  })
  it("adds the newline to a JSON text without one, not to other text", async () => {
    const json = edgeOver(() =>
      Exit.succeed(HttpServerResponse.raw('{"a":1}', { status: 200, contentType: "application/json" }))
    )
    expect(((await json.answers(new Request("http://edge.test/x"))) as PlainAnswer).body).toBe('{"a":1}\n')
    const text = edgeOver(() => Exit.succeed(HttpServerResponse.raw("plain", { contentType: "text/plain" })))
    const answer = (await text.answers(new Request("http://edge.test/x"))) as PlainAnswer
    expect(answer.body).toBe("plain")
    expect(answer.headers["content-length"]).toBe("5")
  })
  it("declares a problem document's length in bytes when its detail is not ASCII", async () => {
    const { handler, answers } = edgeOver(() => Exit.fail(new InvalidRequest({ detail: "champ « nom » refusé" })))
    const answer = (await answers(new Request("http://edge.test/x"))) as PlainAnswer
    expect(typeof answer.body).toBe("string")
    const bytes = new TextEncoder().encode(answer.body as string)
    expect(answer.headers["content-length"]).toBe(String(bytes.byteLength))
    expect(bytes.byteLength).toBeGreaterThan((answer.body as string).length)
    const res = await handler(new Request("http://edge.test/x"))
    expect(((await res.json()) as { detail: string }).detail).toBe("champ « nom » refusé")
  })
})
