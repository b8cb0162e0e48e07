/**
 * The load generator of `npm run bench:storage`: a fixed number of keep-alive HTTP/1.1 connections,
 * each sending one request after another (the next as soon as the previous answer is complete) for a
 * fixed time. Requests are prebuilt bytes (App JWTs signed before the run), and answers are parsed
 * only as far as framing needs (status line, `Content-Length` or chunked), so the generator spends
 * a few microseconds per request: `node:http`'s client would cost more than some servers it measures.
 */
import { connect, type Socket } from "node:net"

/** One request, as bytes, per connection (connection `i` sends `requests[i % requests.length]`). */
export interface LoadSpec {
  readonly port: number
  readonly concurrency: number
  readonly requests: ReadonlyArray<Buffer>
  readonly seconds: number
}

/** What a run measured. */
export interface LoadResult {
  /** 200 answers per second of wall time. */
  readonly rate: number
  readonly ok: number
  readonly failed: number
  readonly lastFailure: string
  /** Latency of the 200 answers, ms. */
  readonly p50: number
  readonly p99: number
  /** The generator's own CPU (user + system) per second of wall time: 1 = one core busy. */
  readonly generatorCpu: number
}

/** A request's bytes. */
export const httpRequest = (
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body = ""
): Buffer => {
  const lines = [`${method} ${path} HTTP/1.1`, `host: 127.0.0.1:${port}`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  if (body !== "" || method === "POST") lines.push(`content-length: ${Buffer.byteLength(body)}`)
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n${body}`)
}

const HEAD_END = Buffer.from("\r\n\r\n")
const CRLF = Buffer.from("\r\n")

/**
 * The length of the first complete answer in `buf` and its status, or undefined when more bytes are
 * needed. `close` when the server said it will close the connection.
 */
const parseAnswer = (buf: Buffer): { length: number; status: number; close: boolean } | undefined => {
  const headEnd = buf.indexOf(HEAD_END)
  if (headEnd < 0) return undefined
  const head = buf.toString("latin1", 0, headEnd).toLowerCase()
  const status = Number(head.slice(9, 12))
  const close = /\r\nconnection: *close/.test(head)
  let p = headEnd + 4
  const declared = /\r\ncontent-length: *(\d+)/.exec(head)
  if (declared !== null) {
    const length = p + Number(declared[1])
    return buf.length >= length ? { length, status, close } : undefined
  }
  if (/\r\ntransfer-encoding: *chunked/.test(head)) {
    for (;;) {
      const lineEnd = buf.indexOf(CRLF, p)
      if (lineEnd < 0) return undefined
      const size = Number.parseInt(buf.toString("latin1", p, lineEnd), 16)
      p = lineEnd + 2
      if (size === 0) return buf.length >= p + 2 ? { length: p + 2, status, close } : undefined
      p += size + 2
      if (buf.length < p) return undefined
    }
  }
  // No body (204, 304) or read to close: the bench's servers always frame their answers.
  return { length: p, status, close }
}

const open = (port: number) =>
  new Promise<Socket>((ok, fail) => {
    const socket = connect({ host: "127.0.0.1", port, noDelay: true })
    socket.once("connect", () => {
      socket.off("error", fail)
      ok(socket)
    })
    socket.once("error", fail)
  })

/** Runs one load for `spec.seconds`. */
export const drive = async (spec: LoadSpec): Promise<LoadResult> => {
  const latencies: Array<number> = []
  let ok = 0
  let failed = 0
  let lastFailure = ""
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const end = started + spec.seconds * 1000
  const connection = async (request: Buffer) => {
    let socket = await open(spec.port)
    let pending: Buffer = Buffer.alloc(0)
    let sentAt = 0
    await new Promise<void>((done, fail) => {
      const send = () => {
        sentAt = performance.now()
        socket.write(request)
      }
      const onData = (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
        const answer = parseAnswer(pending)
        if (answer === undefined) return
        const now = performance.now()
        if (answer.status === 200) {
          ok++
          latencies.push(now - sentAt)
        } else {
          failed++
          lastFailure = `${answer.status} ${pending.toString("utf8", 0, Math.min(pending.length, answer.length)).split("\r\n\r\n")[1]?.slice(0, 200)}`
        }
        pending = pending.subarray(answer.length)
        if (now >= end) {
          socket.end()
          done()
        } else if (answer.close) {
          socket.destroy()
          open(spec.port).then((s) => {
            socket = s
            wire()
            send()
          }, fail)
        } else send()
      }
      const wire = () => {
        socket.on("data", onData)
        socket.on("error", (e) => {
          failed++
          lastFailure = String(e)
          done()
        })
      }
      wire()
      send()
    })
  }
  await Promise.all(
    Array.from({ length: spec.concurrency }, (_, i) => connection(spec.requests[i % spec.requests.length]!))
  )
  const elapsed = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpu0)
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN
  return {
    rate: ok / elapsed,
    ok,
    failed,
    lastFailure,
    p50: at(0.5),
    p99: at(0.99),
    generatorCpu: (cpu.user + cpu.system) / 1e6 / elapsed
  }
}
