/**
 * Under whichever runtime runs this file (Deno, Bun): the issuer served by that runtime's adapter with
 * a body deadline of `argv[2]` ms, sent a request whose body stops after one byte (Content-Length 10),
 * then one whose body trickles a byte every 100 ms; prints `body-deadline <json>` with the status line
 * each got (empty when none came within 8 s), whether the server then closed the connection (within
 * 2 s), and how many bytes of the trickle were sent.
 */
import { connect } from "node:net"
import process from "node:process"
import { startIssuer } from "../../../src/server/Issuer.js"
import { currentRuntime, type Listen } from "../../../src/server/Listen.js"

const runtime = currentRuntime()
const bodyMs = Number(process.argv[2] ?? "300")
const { listenWith } = (
  runtime === "bun" ? await import("../../../src/server/bun.js") : await import("../../../src/server/deno.js")
) as { listenWith: (deadlines: { readonly bodyMs: number }) => Listen }
const quiet = { info: () => {}, warn: () => {} }
const server = await startIssuer({ DATABASE_URL: "sqlite::memory:", PORT: "0" }, listenWith({ bodyMs }), runtime, quiet)

/**
 * Sends `head` and `first`, then (when `trickle`) a byte every 100 ms: the status line ("" when none
 * came in 8 s), and whether the server closed the connection within 2 s of it.
 */
const statusLine = (head: string, first: string, trickle: boolean) =>
  new Promise<{ status: string; closed: boolean; sent: number }>((resolve) => {
    let received = ""
    let sent = first.length
    let status: string | undefined
    let ticker: ReturnType<typeof setInterval> | undefined
    let giveUp: ReturnType<typeof setTimeout> | undefined
    const done = (closed: boolean) => {
      clearInterval(ticker)
      clearTimeout(giveUp)
      socket.destroy()
      resolve({ status: status ?? "", closed, sent })
    }
    const socket = connect(server.port, "127.0.0.1", () => {
      socket.write(head + first)
      if (trickle)
        ticker = setInterval(() => {
          if (sent < 10 && status === undefined) {
            socket.write(" ")
            sent++
          }
        }, 100)
    })
    giveUp = setTimeout(() => done(false), 8000)
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => {
      received += chunk
      if (status === undefined && received.includes("\r\n")) {
        status = received.split("\r\n")[0]!
        clearTimeout(giveUp)
        giveUp = setTimeout(() => done(false), 2000)
      }
    })
    socket.on("end", () => done(status !== undefined))
    socket.on("close", () => done(status !== undefined))
    socket.on("error", () => done(status !== undefined))
  })

const head = "POST /admin/apps HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n"
const stalled = await statusLine(head, "{", false)
const trickled = await statusLine(head, "{", true)
console.log(`body-deadline ${JSON.stringify({ stalled, trickled })}`)
await server.stop()
process.exit(0)
