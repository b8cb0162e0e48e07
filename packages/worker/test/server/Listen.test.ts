/**
 * `serveWithBodyDeadline` (Deno's and Bun's servers): a small body is read whole before the handler
 * runs; a handler marked `readingBodyAhead` (the issuer's) is given the runtime's own request, its
 * body already read and taken from `readBody`, and any other handler a copy it reads as usual.
 */
import { readBody } from "@icr-apps/core/edge/Body"
import type { PlainAnswer } from "@icr-apps/core/edge/Edge"
import { describe, expect, it } from "vitest"
import { type Handler, readingBodyAhead, readsBodyAhead, serveWithBodyDeadline } from "../../src/server/Listen.js"

const ok: PlainAnswer = { status: 204, headers: {}, body: undefined }

/** A POST with a small JSON body of declared length, as Deno and Bun hand it over. */
const post = (text: string) =>
  new Request("http://server.test/app/installations/x/accessTokens", {
    method: "POST",
    headers: { "content-type": "application/json", "content-length": String(new TextEncoder().encode(text).length) },
    body: text
  })

/** A POST whose declared body never arrives in full. */
const stalled = () =>
  new Request("http://server.test/x", {
    method: "POST",
    headers: { "content-type": "application/json", "content-length": "100" },
    body: new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"a":'))
      }
    }),
    duplex: "half"
  } as RequestInit)

describe("serveWithBodyDeadline", () => {
  it("marks only the handlers it is given", () => {
    const plain: Handler = async () => ok
    const marked = readingBodyAhead(async () => ok)
    expect(readsBodyAhead(plain)).toBe(false)
    expect(readsBodyAhead(marked)).toBe(true)
  })

  it("hands a marked handler the request it received, its body read ahead for readBody", async () => {
    const received = post('{"permissions":{"credits":"read"}}')
    let seen: Request | undefined
    let body: unknown
    const handler = readingBodyAhead(async (request) => {
      seen = request
      body = await readBody(request, "json")
      return ok
    })
    const response = await serveWithBodyDeadline(handler, received, {}, 1_000)
    expect(response.status).toBe(204)
    expect(seen).toBe(received)
    expect(received.bodyUsed).toBe(true)
    expect(body).toMatchObject({ parsed: { permissions: { credits: "read" } } })
  })

  it("hands any other handler a copy whose body it reads as usual", async () => {
    const received = post('{"a":1}')
    let seen: Request | undefined
    let text = ""
    let body: unknown
    const handler: Handler = async (request) => {
      seen = request
      body = await readBody(request, "json")
      text = await request.text()
      return ok
    }
    await serveWithBodyDeadline(handler, received, {}, 1_000)
    expect(seen).not.toBe(received)
    expect(text).toBe('{"a":1}')
    expect(body).toMatchObject({ parsed: { a: 1 } })
  })

  it("a body that does not arrive within the deadline is unreadable to either, and the connection closes", async () => {
    for (const mark of [true, false]) {
      let body: unknown
      const inner: Handler = async (request) => {
        body = await readBody(request, "json")
        return ok
      }
      const handler = mark ? readingBodyAhead(inner) : inner
      const response = await serveWithBodyDeadline(handler, stalled(), {}, 50)
      expect(body).toMatchObject({ status: 400, detail: "The request body could not be read" })
      expect(response.headers.get("connection")).toBe("close")
    }
  })
})
