/**
 * Request bodies as SPEC §1 takes them, read once before routing: at most 16 KiB (declared and as
 * read), JSON objects (or, where an endpoint speaks OAuth, forms too), nested at most
 * {@link MAX_JSON_DEPTH} deep. The router's decoder then takes the object already parsed instead of
 * reading (and parsing) a second copy, and never meets input it cannot read.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import { InvalidRequest, PayloadTooLarge } from "../api/Problems.js"

/** The largest request body accepted (SPEC §1), declared or as read. */
export const MAX_BODY_BYTES = 16 * 1024

/**
 * The deepest nesting of arrays and objects a JSON body may have. The deepest body any endpoint
 * takes is three levels (a JWK object under `publicKey`); 32 leaves room for any honest client and
 * stays far below the depth at which recursive code (decoders, error formatters) runs out of stack:
 * 3,000 levels fit in 16 KiB, and once made a decode error's message overflow it (a 500).
 */
export const MAX_JSON_DEPTH = 32

/** Which bodies an edge takes: JSON only, or (for RFC 6749/8693 endpoints) forms as well. */
export type BodyFormats = "json" | "json-or-form"

/** A request body that passed the checks: the object it holds (`{}` for none), and its text when it was JSON. */
export interface CheckedBody {
  readonly parsed: Record<string, unknown>
  readonly text?: string | undefined
}

/** 413, as SPEC §1 words it. */
export const tooLarge = (): PayloadTooLarge =>
  new PayloadTooLarge({ detail: `Request bodies are limited to ${MAX_BODY_BYTES} bytes` }, true)

const jsonContentType = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i
const formContentType = /^application\/x-www-form-urlencoded\s*(;|$)/i

/** Whether a `Content-Type` names JSON (`application/json`, `application/problem+json`, …). */
export const isJsonContentType = (contentType: string): boolean => jsonContentType.test(contentType)

/** Reads at most `limit` bytes of a body; `undefined` when it is longer (reading stops there). */
export const readCapped = async (body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | undefined> => {
  const reader = body.getReader()
  const chunks: Array<Uint8Array> = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

/**
 * Whether JSON text nests arrays and objects deeper than `limit`: one pass over the text, skipping
 * strings, before anything recursive (the parser, a decoder, an error formatter) walks it.
 */
export const nestsDeeperThan = (text: string, limit: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c)
        i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

/** Checks JSON text: parseable, nested at most {@link MAX_JSON_DEPTH} deep, an object. */
const parseJson = (text: string): CheckedBody | InvalidRequest => {
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
    return new InvalidRequest({ detail: `The request body nests deeper than ${MAX_JSON_DEPTH} levels` }, true)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return new InvalidRequest({ detail: "The request body is not valid JSON" }, true)
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return new InvalidRequest({ detail: "The request body must be a JSON object" }, true)
  }
  return { parsed: parsed as Record<string, unknown>, text }
}

/** A form's parameters as one object of strings; a parameter sent twice is refused (RFC 6749 §3.2). */
const parseForm = (text: string): CheckedBody | InvalidRequest => {
  const parsed: Record<string, string> = {}
  for (const [name, value] of new URLSearchParams(text)) {
    if (Object.hasOwn(parsed, name)) {
      return new InvalidRequest({ detail: `${name.slice(0, 64)} is given more than once` }, true)
    }
    parsed[name] = value
  }
  return { parsed }
}

/**
 * Whether a body's framing lets its server read it whole before handing the request on: a declared
 * `Content-Length` within {@link MAX_BODY_BYTES} (the server holds the client to it) and no
 * `Transfer-Encoding`. Every request the workers take is so; anything else is streamed (and a
 * larger one answered 413 by the edge from its headers).
 */
export const isSmallDeclaredBody = (
  contentLength: string | null | undefined,
  transferEncoding: string | null | undefined
): boolean =>
  (transferEncoding === undefined || transferEncoding === null) &&
  typeof contentLength === "string" &&
  /^[0-9]{1,5}$/.test(contentLength) &&
  Number(contentLength) <= MAX_BODY_BYTES

/** The bodies servers read whole before handing their requests on (see {@link withBodyRead}). */
const readAhead = new WeakMap<Request, Uint8Array | "unreadable">()

/**
 * `request`, whose body its server already read whole (`body`), or failed to read in time
 * (`"unreadable"`): {@link readBody} takes it from here, and the request itself need carry none (a
 * web `Request` and its body stream cost Node tens of microseconds more than the bytes). The body
 * is checked as one read from the request would be: cap, content type, JSON.
 */
export const withBodyRead = (request: Request, body: Uint8Array | "unreadable"): Request => {
  readAhead.set(request, body)
  return request
}

/**
 * A `Request` for `url` whose body its server read ahead ({@link withBodyRead}), the bytes in its own
 * body too: a handler that reads it as usual gets them, and whoever looks at `request.body` (the
 * broker strips a stranger's before it is read) sees that there is one.
 */
export const carryingBodyRead = (
  url: string,
  init: { readonly method: string; readonly headers: Headers },
  body: Uint8Array | "unreadable"
): Request =>
  withBodyRead(
    new Request(url, body === "unreadable" ? init : { ...init, body: body as Uint8Array<ArrayBuffer> }),
    body
  )

/**
 * A copy of `request` with other headers. Its body is the one its server read ahead, if it did (a
 * `Request` made from another would not keep that, and could not read a body already read).
 */
export const withHeaders = (request: Request, headers: Headers): Request => {
  const body = readAhead.get(request)
  return body === undefined
    ? new Request(request, { headers })
    : carryingBodyRead(request.url, { method: request.method, headers }, body)
}

/**
 * Reads and checks the body of a request that may have one: at most {@link MAX_BODY_BYTES} as read
 * (a declared larger length is refused before, with the other header checks), then by its
 * `Content-Type`. An empty body is `{}`.
 */
export const readBody = async (
  request: Request,
  formats: BodyFormats
): Promise<CheckedBody | InvalidRequest | PayloadTooLarge> => {
  let text = ""
  const ahead = readAhead.get(request)
  if (ahead !== undefined || request.body !== null) {
    let bytes: Uint8Array | undefined
    try {
      if (ahead === "unreadable") throw new Error("unreadable")
      bytes =
        ahead === undefined
          ? await readCapped(request.body!, MAX_BODY_BYTES)
          : ahead.byteLength > MAX_BODY_BYTES
            ? undefined
            : ahead
    } catch {
      return new InvalidRequest({ detail: "The request body could not be read" }, true)
    }
    if (bytes === undefined) return tooLarge()
    text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: false }).decode(bytes)
  }
  if (text.trim() === "") return { parsed: {}, text: "{}" }
  const contentType = request.headers.get("content-type") ?? ""
  if (jsonContentType.test(contentType)) return parseJson(text)
  if (formats === "json-or-form") {
    if (formContentType.test(contentType)) return parseForm(text)
    return new InvalidRequest(
      { detail: "Send the body as application/x-www-form-urlencoded or application/json" },
      true
    )
  }
  return new InvalidRequest({ detail: "Request bodies must be JSON (Content-Type: application/json)" }, true)
}

/**
 * The request as a router sees it. With a body, the body is the object already read and checked,
 * as JSON: the router's decoder takes `json` from here rather than reading a second copy.
 */
export const toServerRequest = (
  request: Request,
  body: CheckedBody | undefined
): HttpServerRequest.HttpServerRequest => {
  const serverRequest = HttpServerRequest.fromWeb(request)
  if (body === undefined) return serverRequest
  const headers = Headers.set(
    Headers.remove(serverRequest.headers, "content-length"),
    "content-type",
    "application/json"
  )
  const text = body.text
  const textOf = text === undefined ? Effect.sync(() => JSON.stringify(body.parsed)) : Effect.succeed(text)
  return Object.create(serverRequest, {
    headers: { value: headers },
    json: { value: Effect.succeed(body.parsed) },
    text: { value: textOf },
    arrayBuffer: { value: Effect.map(textOf, (t) => new TextEncoder().encode(t).buffer) }
  }) as HttpServerRequest.HttpServerRequest
}
