// `npm start` as the end-to-end scripts use it: on a free loopback port, with its local KV and D1 in a
// temporary folder and a fresh ADMIN_TOKEN, in its own process group so that stop() ends all of it
// (npm, scripts/icr.mjs, wrangler, workerd).
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** A port the kernel says is free on 127.0.0.1. */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

/**
 * Runs `npm start` in the repository and resolves once /healthz answers (or rejects, with the tail of
 * its output, if it exits or does not answer within `timeoutMs`).
 */
export async function startLocalIssuer({ timeoutMs = 120_000 } = {}) {
  const port = await freePort()
  const adminToken = randomBytes(16).toString("hex")
  const state = mkdtempSync(join(tmpdir(), "icr-apps-start-"))
  const base = `http://127.0.0.1:${port}`
  const output = []
  const child = spawn("npm", ["start", "--silent"], {
    cwd: root,
    env: { ...process.env, PORT: String(port), ADMIN_TOKEN: adminToken, ICR_PERSIST_TO: state },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  child.stdout.on("data", (d) => output.push(String(d)))
  child.stderr.on("data", (d) => output.push(String(d)))
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try {
      process.kill(-child.pid, "SIGTERM")
    } catch {}
    rmSync(state, { recursive: true, force: true })
  }
  process.on("exit", stop)
  const tail = () => output.join("").slice(-4000)

  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      stop()
      throw new Error(`npm start exited early (${child.exitCode ?? child.signalCode})\n--- its output ---\n${tail()}`)
    }
    if (Date.now() > deadline) {
      stop()
      throw new Error(`npm start: no answer on /healthz within ${timeoutMs / 1000} s\n--- its output ---\n${tail()}`)
    }
    try {
      const res = await fetch(`${base}/healthz`)
      if (res.ok) {
        const body = JSON.stringify(await res.json())
        if (body !== '{"status":"ok"}') throw new Error(`/healthz answered ${body}`)
        break
      }
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("/healthz")) {
        stop()
        throw e
      }
    }
    await new Promise((r) => setTimeout(r, 500))
  }

  /** One JSON call with a bearer token; resolves to the status and the parsed body (if any). */
  const call = async (method, path, token, body) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: res.status, json: await res.json().catch(() => undefined) }
  }
  /** An operator API call (SPEC §5) with this run's ADMIN_TOKEN. */
  const admin = (method, path, body) => call(method, path, adminToken, body)

  return { base, adminToken, call, admin, stop, output: tail }
}
