// `npm start` as the end-to-end scripts use it: on a free loopback port, with its local KV and D1 in a
// temporary folder and a fresh ADMIN_TOKEN, in its own process group so that stop() ends all of it
// (npm, scripts/icr.mjs, wrangler, workerd).
import { spawn, spawnSync } from "node:child_process"
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
 * The processes under `pid`, itself included, from one `ps` snapshot (Linux and macOS): pid → command
 * line. Taken before a signal, it is the list of what must be gone after it.
 */
export const processTree = (pid) => {
  const rows = psRows()
  const tree = new Map()
  const visit = (p) => {
    const row = rows.get(p)
    if (!row || tree.has(p)) return
    tree.set(p, row.args)
    for (const [child, other] of rows) if (other.ppid === p) visit(child)
  }
  visit(pid)
  return tree
}

/** Every process now: pid → { ppid, state, args }. */
const psRows = () => {
  const ps = spawnSync("ps", ["-A", "-o", "pid=,ppid=,stat=,args="], { encoding: "utf8" })
  if (ps.status !== 0) throw new Error(`ps failed: ${ps.stderr}`)
  const rows = new Map()
  for (const line of ps.stdout.split("\n")) {
    const match = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line)
    if (match) rows.set(Number(match[1]), { ppid: Number(match[2]), state: match[3], args: match[4] })
  }
  return rows
}

/**
 * The processes of `tree` still running: same pid and command line (a reused pid is another process),
 * not a zombie (a zombie has exited; it only waits for its parent to collect its status).
 */
export const survivors = (tree) => {
  const rows = psRows()
  return [...tree].filter(([pid, args]) => {
    const row = rows.get(pid)
    return row !== undefined && row.args === args && !row.state.startsWith("Z")
  })
}

/** Whether a new listener can bind 127.0.0.1:`port` now (nothing left holding it). */
export const portAccepts = (port) =>
  new Promise((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/**
 * A port P such that P (the issuer's) and P + 1 (the broker's) are free on 127.0.0.1, drawn below the
 * ephemeral range (32768 and up on Linux, 49152 and up on macOS and Windows): the kernel hands those
 * to outgoing connections, and one of them could take P + 1 in the seconds before wrangler binds it.
 */
const freePortPair = async () => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    // P + 3: the example resource (SPEC §10) npm start serves beside them.
    if ((await portAccepts(port)) && (await portAccepts(port + 1)) && (await portAccepts(port + 3))) return port
  }
  throw new Error("no two adjacent free ports between 20000 and 32000")
}

/**
 * Runs `npm start` in the repository and resolves once /healthz answers (or rejects, with the tail of
 * its output, if it exits or does not answer within `timeoutMs`).
 */
export async function startLocalIssuer({ timeoutMs = 120_000 } = {}) {
  const port = await freePortPair()
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
  /** Resolves with npm's exit status once it has exited. */
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  /** Resolves once its output has ended: every process that shares npm's stdout and stderr is gone. */
  const closed = new Promise((resolve) => child.once("close", () => resolve(true)))
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

  return { base, port, pid: child.pid, exited, closed, adminToken, call, admin, stop, output: tail }
}
