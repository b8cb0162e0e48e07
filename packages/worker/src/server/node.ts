/**
 * The server on Node: a `node:http` server adapted to a web-standard handler. The request body is
 * streamed into the `Request` (the issuer reads at most 16 KiB of it, then answers 413), the
 * `Response` is streamed back with backpressure, and the TCP peer is the connection's
 * `remoteAddress`. The `Request`'s URL is built on the socket's own address, never on the client's
 * `Host` header (the issuer builds the URLs it returns on its configured origin anyway).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { Readable } from "node:stream"
import { carryingBodyRead, isSmallDeclaredBody, withBodyRead } from "@icr-apps/core/edge/Body"
import type { Answer, PlainAnswer } from "@icr-apps/core/edge/Edge"
import { type Handler, internalError, type Listen, peerAddress, readsBodyAhead } from "./Listen.js"

/** How long a graceful stop waits for requests in flight before it closes their connections. */
const DRAIN_TIMEOUT_MS = 30_000

/** How long a request may take to arrive, and how often that is checked (Node answers 408 past it). */
export interface RequestTimeouts {
  /** From the connection's first byte (or the previous request's end) to the end of the headers. */
  readonly headersMs: number
  /** To the end of the body: every request the issuer takes is at most 16 KiB. */
  readonly requestMs: number
  /** How often the deadlines are checked: a late request ends at most this much after its deadline. */
  readonly checkEveryMs: number
}

/**
 * The deadlines of a server exposed as it is (TRUST_PROXY unset is the direct case): a client that
 * opens connections and sends their headers or bodies a byte at a time — or never ends them — holds
 * each one (a socket, a file descriptor, a handler waiting for its body) for Node's defaults of 60 s
 * and 300 s, checked every 30 s: enough for a few connections a second to exhaust the descriptors.
 * Bun drops a connection idle for 10 s. An honest client sends 16 KiB in far less than 30 s.
 */
export const REQUEST_TIMEOUTS: RequestTimeouts = { headersMs: 20_000, requestMs: 30_000, checkEveryMs: 5_000 }

/** Each connection's origin, asked of the socket once: its local address is a system call per read. */
const origins = new WeakMap<Socket, string>()

const originOf = (socket: Socket): string => {
  let origin = origins.get(socket)
  if (origin === undefined) {
    const address = socket.localAddress ?? "127.0.0.1"
    origin = `http://${address.includes(":") ? `[${address}]` : address}:${socket.localPort ?? 80}`
    origins.set(socket, origin)
  }
  return origin
}

/** The largest body written in one piece (read whole, then one write): every answer the workers give is far smaller. */
const WHOLE_BODY_BYTES = 64 * 1024

/** The path and query of a request target (origin-form `/x?y`, or absolute-form from a proxy). */
const targetOf = (url: string): string => {
  if (url.startsWith("/")) return url
  try {
    const parsed = new URL(url)
    return `${parsed.pathname}${parsed.search}`
  } catch {
    return `/${url}`
  }
}

/** Whether requests with this method carry a body the handler may read. */
const hasBody = (method: string) => method !== "GET" && method !== "HEAD"

/**
 * A web `Request` for an incoming Node request; its body (for methods that have one) is streamed,
 * and `signal` (given for those only) aborts it when the client goes away. With `body` (read whole
 * already, {@link readSmallBody}) the `Request` carries those bytes, which the edge takes as they
 * are (`withBodyRead`) rather than through the `Request`'s stream.
 */
export const toRequest = (
  req: IncomingMessage,
  signal: AbortSignal | undefined,
  body?: Uint8Array | undefined,
  bodyReadAhead = false
): Request => {
  const headers = new Headers()
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!)
  const method = req.method ?? "GET"
  const url = `${originOf(req.socket)}${targetOf(req.url ?? "/")}`
  // The edge takes the bytes as they are (`withBodyRead`). They go in the `Request` too, so that any
  // other handler reads it as usual — but for one that takes the body only as read ahead
  // (`readingBodyAhead`), which gets no copy of it.
  if (body !== undefined) {
    return bodyReadAhead
      ? withBodyRead(new Request(url, { method, headers }), body)
      : carryingBodyRead(url, { method, headers }, body)
  }
  return new Request(url, {
    method,
    headers,
    ...(signal === undefined ? {} : { signal }),
    ...(hasBody(method) ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {})
  } as RequestInit)
}

/** Whether a request's body is read whole before it is handed on: a method with a body, and {@link isSmallDeclaredBody}. */
const isSmallBody = (req: IncomingMessage): boolean =>
  hasBody(req.method ?? "GET") && isSmallDeclaredBody(req.headers["content-length"], req.headers["transfer-encoding"])

/**
 * A small body read whole (Node holds it to its declared length, and `requestTimeout` to a
 * deadline); `undefined` when the client went away, or the deadline passed, first.
 */
const readSmallBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    // After `end`, these settle nothing.
    req.once("close", () => resolve(undefined))
    req.once("error", () => resolve(undefined))
  })

/** Writes an answer the edge built whole: its headers and body in one write. */
const writeAnswer = (answer: PlainAnswer, res: ServerResponse, method: string): void => {
  const headers = answer.headers
  const body = answer.body
  const sent =
    body === undefined || method === "HEAD"
      ? undefined
      : typeof body === "string"
        ? body
        : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  if (sent !== undefined && headers["content-length"] === undefined) {
    headers["content-length"] = String(Buffer.byteLength(sent))
  }
  res.writeHead(answer.status, headers)
  res.end(sent)
}

/** Writes `response` to `res`, streaming its body (none for HEAD), waiting on `drain` when asked. */
export const writeResponse = async (response: Response, res: ServerResponse, method: string): Promise<void> => {
  const headers: Record<string, string | Array<string>> = {}
  response.headers.forEach((value, name) => {
    headers[name] = value
  })
  const cookies = response.headers.getSetCookie()
  if (cookies.length > 0) headers["set-cookie"] = cookies
  // A Response built without a status text gets Node's standard one ("OK"), not an empty reason.
  if (response.statusText === "") res.writeHead(response.status, headers)
  else res.writeHead(response.status, response.statusText, headers)
  if (response.body === null || method === "HEAD") {
    await response.body?.cancel()
    res.end()
    return
  }
  const reader = response.body.getReader()
  // A small body of a declared length (every JSON answer): read whole and written with the headers,
  // in one write, rather than a write per chunk and one more to end. Read by its reader, not
  // `arrayBuffer()` (which costs Node ≈ 10 µs more a response): one chunk is written as it is.
  const declared = Number(headers["content-length"] ?? Number.NaN)
  if (declared <= WHOLE_BODY_BYTES) {
    const chunks: Array<Uint8Array> = []
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
    }
    const only = chunks.length === 1 ? chunks[0]! : undefined
    res.end(only === undefined ? Buffer.concat(chunks) : Buffer.from(only.buffer, only.byteOffset, only.byteLength))
    return
  }
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (res.destroyed) break
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const settle = () => {
            res.off("drain", settle)
            res.off("close", settle)
            resolve()
          }
          res.on("drain", settle)
          res.on("close", settle)
        })
      }
    }
  } finally {
    if (res.destroyed) await reader.cancel().catch(() => {})
    else res.end()
  }
}

/** Serves `handler` with `node:http`, under the given request deadlines. */
export const listenWith =
  (timeouts: RequestTimeouts): Listen =>
  (handler: Handler, { host, port }) =>
    new Promise((resolve, reject) => {
      let closing = false
      const readsBody = readsBodyAhead(handler)
      const serve = async (req: IncomingMessage, res: ServerResponse) => {
        // A client that goes away aborts the body still being read. Without a body nothing listens
        // to the signal (the handlers never read request.signal), and a Request given one costs
        // Node 20 ~25–45 µs more (measured here; bench:storage, STORAGE.md): GET and HEAD go without.
        // A small body is read whole first (no stream, no signal: it is here before the handler runs).
        let body: Buffer | undefined
        let abort: AbortController | undefined
        if (isSmallBody(req)) {
          body = await readSmallBody(req)
          if (body === undefined) {
            res.destroy()
            return
          }
        } else if (hasBody(req.method ?? "GET")) {
          const controller = new AbortController()
          res.on("close", () => {
            if (!res.writableFinished) controller.abort()
          })
          abort = controller
        }
        let response: Answer
        try {
          const request = toRequest(req, abort?.signal, body, readsBody)
          response = await handler(request, { remoteAddress: peerAddress(req.socket.remoteAddress) })
        } catch {
          response = internalError()
        }
        // Stopping: this connection is not kept for another request.
        if (closing) res.shouldKeepAlive = false
        // A body the handler did not read to its end (a 413) is not drained: the connection closes.
        if (!req.complete && req.method !== "GET" && req.method !== "HEAD") res.shouldKeepAlive = false
        try {
          if (response instanceof Response) await writeResponse(response, res, req.method ?? "GET")
          else writeAnswer(response, res, req.method ?? "GET")
        } catch {
          res.destroy()
        }
      }
      const server = createServer(
        {
          headersTimeout: timeouts.headersMs,
          requestTimeout: timeouts.requestMs,
          connectionsCheckingInterval: timeouts.checkEveryMs
        },
        (req, res) => void serve(req, res)
      )
      server.once("error", reject)
      server.listen(port, host, () => {
        server.off("error", reject)
        const address = server.address()
        resolve({
          port: typeof address === "object" && address !== null ? address.port : port,
          close: () =>
            new Promise<void>((done) => {
              closing = true
              const deadline = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS)
              deadline.unref()
              server.close(() => {
                clearTimeout(deadline)
                done()
              })
              // Keep-alive connections with no request in flight would hold close() open.
              server.closeIdleConnections()
            })
        })
      })
    })

/** Serves `handler` with `node:http`, under {@link REQUEST_TIMEOUTS}. */
export const listen: Listen = listenWith(REQUEST_TIMEOUTS)
