/**
 * Graceful shutdown (SPEC §9) on each runtime: after SIGTERM the server accepts no new connection,
 * the request in flight (its body still arriving) is answered in full, the process exits 0, and the
 * port is free again.
 */
import { connect, createServer } from "node:net"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { type RuntimeName, startServer, tempDir } from "./support.js"

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    socket.on("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.on("error", () => resolve(false))
  })

const canListen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

describe("graceful shutdown", () => {
  const temp = tempDir("icr-shutdown-")
  afterAll(temp.remove)

  for (const runtime of ["node", "deno", "bun"] as const satisfies ReadonlyArray<RuntimeName>) {
    it(`${runtime}: SIGTERM lets the request in flight finish, then exits 0 and frees the port`, async () => {
      const server = await startServer(runtime, "serve", {
        DATABASE_URL: `sqlite:${join(temp.dir, `${runtime}.db`)}`,
        ADMIN_TOKEN: "t".repeat(40)
      })
      try {
        const body = JSON.stringify({ name: `app-${runtime}`, permissions: { organization_info: "VIEW" } })
        const socket = connect(server.port, "127.0.0.1")
        await new Promise((resolve) => socket.once("connect", resolve))
        let received = ""
        socket.setEncoding("utf8")
        socket.on("data", (chunk: string) => {
          received += chunk
        })
        const closed = new Promise((resolve) => socket.once("close", resolve))
        // Half of the body: the request is in flight, waiting for the rest.
        socket.write(
          `POST /admin/apps HTTP/1.1\r\nHost: icr.test\r\nAuthorization: Bearer ${"t".repeat(40)}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 10)}`
        )
        await new Promise((resolve) => setTimeout(resolve, 300))
        server.child.kill("SIGTERM")
        for (let i = 0; i < 100 && !server.stderr.some((l) => l.includes("SIGTERM")); i++)
          await new Promise((resolve) => setTimeout(resolve, 50))
        expect(server.stderr.join("\n")).toContain("SIGTERM: finishing requests in flight, then stopping")
        expect(await canConnect(server.port)).toBe(false)
        socket.write(body.slice(10))
        await closed
        // The app needs a public key: a complete answer from the issuer (not a reset connection).
        expect(received).toMatch(/^HTTP\/1\.1 400 /)
        expect(received).toContain('"code":"invalid_request"')
        expect(await server.exited).toBe(0)
        expect(await canListen(server.port)).toBe(true)
      } finally {
        await server.stop("SIGKILL")
      }
    }, 90_000)
  }
})
