/**
 * What every runtime's HTTP server offers the issuer and the broker: serve a web-standard handler
 * on a host and port, tell it each request's TCP peer, and stop gracefully. One small adapter per
 * runtime (`node.ts`, `deno.ts`, `bun.ts`); everything else is the same on all three.
 */
import { carryingBodyRead, isSmallDeclaredBody, withBodyRead } from "@icr-apps/core/edge/Body"
import { type Answer, toResponse } from "@icr-apps/core/edge/Edge"
import type { Connection } from "@icr-apps/core/issuer/Http"

/**
 * A web-standard handler that is told the connection's TCP peer. It answers a `Response`, or the
 * edge's {@link Answer} before it is one (which `node:http` writes as it is, and the other servers
 * make a `Response` of).
 */
export type Handler = (request: Request, connection: Connection) => Promise<Answer>

const bodyReaders = new WeakSet<Handler>()

/**
 * `handler`, marked as one that takes a small body only as its server read it ahead (the edge's
 * `readBody`, through `withBodyRead`), never from the `Request`'s own stream: the issuer's. Such a
 * handler is given the request without a body to read — on Deno and Bun the runtime's own, its body
 * already read; on Node one made without the body — rather than a `Request` made only to carry the
 * bytes, which costs Deno about a tenth of a mint's CPU (measured; STORAGE.md, "Benchmark"). Its
 * request's own body is not to be read: it is empty on Node, already used on Deno and Bun. Any other
 * handler (a wrapper around a marked one included: the mark is the function's) is given a `Request`
 * whose body it reads as usual.
 */
export const readingBodyAhead = (handler: Handler): Handler => {
  bodyReaders.add(handler)
  return handler
}

/** Whether `handler` was marked by {@link readingBodyAhead}. */
export const readsBodyAhead = (handler: Handler): boolean => bodyReaders.has(handler)

/** A server that is listening. */
export interface Listener {
  /** The port it listens on (the one the system chose, when asked for port 0). */
  readonly port: number
  /**
   * Stops accepting connections, lets every request in flight finish (idle keep-alive connections
   * are closed), and resolves once none is left.
   */
  readonly close: () => Promise<void>
}

/** Where to listen. */
export interface ListenOptions {
  readonly host: string
  readonly port: number
}

/** Serves `handler`; resolves once listening. */
export type Listen = (handler: Handler, options: ListenOptions) => Promise<Listener>

/**
 * How long a request body may take to arrive once the handler starts reading it: what `node:http`'s
 * own request deadline gives the Node adapter (`REQUEST_TIMEOUTS` in node.ts), for the runtimes whose
 * servers have none (Deno) or only an idle one that a byte now and then defeats (Bun).
 */
export const BODY_DEADLINE_MS = 30_000

/** A body that did not arrive in time. */
export class BodyDeadlineExceeded extends Error {
  override readonly name = "BodyDeadlineExceeded"
}

/** A request whose body has a deadline, and whether that deadline passed. */
export interface DeadlinedRequest {
  readonly request: Request
  /** Whether the body's deadline passed before it arrived: its connection must not be kept. */
  readonly expired: () => boolean
}

/**
 * `request` with a body that fails once `ms` have passed since it was first read, and then cancels
 * the runtime's own body. The handler's read fails, and it answers that it could not read the body,
 * instead of waiting on a client that sends nothing more — or one byte now and then — for as long as
 * that client likes. A request without a body is left as is.
 */
export const withBodyDeadline = (request: Request, ms: number): DeadlinedRequest => {
  const source = request.body
  if (source === null || request.method === "GET" || request.method === "HEAD") {
    return { request, expired: () => false }
  }
  const reader = source.getReader()
  let timer: ReturnType<typeof setTimeout> | undefined
  let deadline: Promise<never> | undefined
  let passed = false
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // The clock starts with the first read: a body nobody reads holds no timer.
      deadline ??= new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          passed = true
          reject(new BodyDeadlineExceeded(`the request body took more than ${ms} ms`))
        }, ms)
      })
      try {
        const { done, value } = await Promise.race([reader.read(), deadline])
        if (done) {
          clearTimeout(timer)
          controller.close()
        } else controller.enqueue(value)
      } catch (error) {
        clearTimeout(timer)
        controller.error(error)
        reader.cancel(error).catch(() => {})
      }
    },
    cancel(reason) {
      clearTimeout(timer)
      return reader.cancel(reason)
    }
  })
  // Not `request.signal`: nothing downstream listens to it, and merely reading it makes Deno print a
  // warning about its legacy abort behaviour on standard error.
  const limited = new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body,
    duplex: "half"
  } as RequestInit)
  return { request: limited, expired: () => passed }
}

/**
 * `response` with `Connection: close`: the server closes the connection once it is sent, rather than
 * wait on it for the rest of a body that did not come (the next request would start after it).
 */
export const closingConnection = (response: Response): Response => {
  const headers = new Headers(response.headers)
  headers.set("connection", "close")
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
}

/**
 * Serves one request with a body deadline: `handler`'s answer, closing the connection when the
 * deadline passed.
 */
export const serveWithBodyDeadline = async (
  handler: Handler,
  request: Request,
  connection: Connection,
  bodyMs: number
): Promise<Response> => {
  if (hasSmallBody(request)) {
    // Read whole, within the deadline, before the handler runs: no stream wrapped around the body.
    // The edge takes the bytes as they are; any other handler gets them in a `Request` as usual.
    const body = await readWithin(request, bodyMs)
    const bytes = typeof body === "string" ? "unreadable" : body
    const read = readsBodyAhead(handler)
      ? withBodyRead(request, bytes)
      : carryingBodyRead(request.url, { method: request.method, headers: request.headers }, bytes)
    const response = toResponse(await handler(read, connection))
    return body === "late" ? closingConnection(response) : response
  }
  const limited = withBodyDeadline(request, bodyMs)
  const response = toResponse(await handler(limited.request, connection))
  return limited.expired() ? closingConnection(response) : response
}

/** Whether a request has a body, and {@link isSmallDeclaredBody}. */
export const hasSmallBody = (request: Request): boolean =>
  request.body !== null &&
  request.method !== "GET" &&
  request.method !== "HEAD" &&
  isSmallDeclaredBody(request.headers.get("content-length"), request.headers.get("transfer-encoding"))

/**
 * A request's body read whole within `ms`: its bytes, `"unreadable"`, or `"late"` past the deadline
 * (the read is then cancelled: the runtime lets go of the body and its connection).
 */
const readWithin = async (request: Request, ms: number): Promise<Uint8Array | "unreadable" | "late"> => {
  const reader = request.body!.getReader()
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), ms)
  })
  try {
    const chunks: Array<Uint8Array> = []
    for (;;) {
      const next = await Promise.race([reader.read(), deadline])
      if (next === "late") {
        reader.cancel().catch(() => {})
        return "late"
      }
      if (next.done) break
      chunks.push(next.value)
    }
    if (chunks.length === 1) return chunks[0]!
    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
    let at = 0
    for (const chunk of chunks) {
      whole.set(chunk, at)
      at += chunk.byteLength
    }
    return whole
  } catch {
    return "unreadable"
  } finally {
    clearTimeout(timer)
  }
}

/** The runtimes a server runs on. */
export type Runtime = "node" | "deno" | "bun"

/** Which runtime this is. */
export const currentRuntime = (): Runtime => ("Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node")

/** The runtime and its version, for the start-up line (`node v20.20.2`, `deno 2.9.6`, `bun 1.4.5`). */
export const runtimeLabel = (runtime: Runtime = currentRuntime()): string =>
  runtime === "bun"
    ? `bun ${Bun.version}`
    : runtime === "deno"
      ? `deno ${Deno.version.deno}`
      : `node ${(globalThis as unknown as { process: { version: string } }).process.version}`

/** The adapter of a runtime, loaded only there. */
export const listenerFor = async (runtime: Runtime = currentRuntime()): Promise<Listen> =>
  runtime === "bun"
    ? (await import("./bun.js")).listen
    : runtime === "deno"
      ? (await import("./deno.js")).listen
      : (await import("./node.js")).listen

/** The answer when the handler itself threw (it should not: the issuer answers every failure). */
export const internalError = (): Response =>
  new Response(
    JSON.stringify({
      type: "about:blank",
      title: "Internal Server Error",
      status: 500,
      code: "internal",
      detail: "Internal error"
    }),
    { status: 500, headers: { "content-type": "application/problem+json" } }
  )

/** A TCP peer as the rate limiter wants it: an IPv4 address mapped into IPv6 is given as IPv4. */
export const peerAddress = (address: string | undefined): string | undefined =>
  address?.startsWith("::ffff:") && address.includes(".") ? address.slice("::ffff:".length) : address
