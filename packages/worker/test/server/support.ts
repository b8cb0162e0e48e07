/**
 * What the server suites share: how to run code under Node (tsx), Deno and Bun from the workspace's
 * sources, how to start the CLI as a child process and read its start-up line and audit lines, a
 * `fetch` that reaches a served issuer over real HTTP while keeping the request's own `Host`, and a
 * fresh Postgres database per suite (on the run's server, see test/support).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { request as httpRequest, Agent } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { inject } from "vitest"
import { createTestDatabase, type TestDatabase } from "../support/postgres.js"

/** The repository's root. */
export const root = fileURLToPath(new URL("../../../../", import.meta.url))
/** The worker package. */
export const worker = join(root, "packages/worker")
/** The CLI's source. */
export const cli = join(worker, "src/server/cli.ts")

/** The runtimes a server runs on. */
export type RuntimeName = "node" | "deno" | "bun"

const source = "--conditions=@icr-apps/source"
const tool = (name: string) => join(root, ".tools/node_modules/.bin", name)

/** The command line that runs `file` (TypeScript, from the workspace's sources) under `runtime`. */
export const commandFor = (runtime: RuntimeName, file: string, args: ReadonlyArray<string> = []) => {
  // Node runs tsx's loader in-process (no `tsx` launcher in between): a signal reaches the server
  // itself, and its exit status is the server's own, never the launcher's 143 when the server takes
  // longer than the launcher waits.
  const [command, prefix]: [string, ReadonlyArray<string>] =
    runtime === "node"
      ? [process.execPath, [source, "--import", pathToFileURL(join(root, "node_modules/tsx/dist/loader.mjs")).href]]
      : runtime === "deno"
        ? [tool("deno"), ["run", "-A", "--unstable-sloppy-imports", source]]
        : [tool("bun"), [source]]
  // npm test's bootstrap installs deno and bun into .tools/: without it this fails, never skips.
  if (!existsSync(command)) throw new Error(`${command} is missing: run npm test (its bootstrap installs it)`)
  return { command, args: [...prefix, file, ...args] }
}

/** Runs `file` under `runtime` to its end. */
export const runFile = (runtime: RuntimeName, file: string, args: ReadonlyArray<string> = [], env = process.env) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const { command, args: argv } = commandFor(runtime, file, args)
    execFile(command, argv, { cwd: worker, env, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr })
    )
  })

/** A server started as a child process. */
export interface ServedProcess {
  readonly child: ChildProcess
  /** Its URL, as its start-up line says. */
  readonly url: string
  readonly port: number
  /** Every line it wrote on standard output so far (the start-up line, audit lines). */
  readonly stdout: Array<string>
  readonly stderr: Array<string>
  /** Sends `signal` and resolves with the exit code (or the signal that ended it). */
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | string>
  readonly exited: Promise<number | string>
}

/** Calls `onLine` with each line `stream` writes, and keeps them in `into`. */
export const lines = (stream: NodeJS.ReadableStream, into: Array<string>, onLine: (line: string) => void) => {
  let rest = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    rest += chunk
    let newline = rest.indexOf("\n")
    while (newline >= 0) {
      const line = rest.slice(0, newline)
      rest = rest.slice(newline + 1)
      into.push(line)
      onLine(line)
      newline = rest.indexOf("\n")
    }
  })
}

/**
 * Starts `icr-apps-issuer <command>` under `runtime` with `env` (PORT 0 unless given) and resolves
 * once it says it listens; rejects with its output if it exits first.
 */
export const startServer = (
  runtime: RuntimeName,
  command: "serve" | "broker",
  env: Record<string, string | undefined>,
  cwd = worker
): Promise<ServedProcess> =>
  new Promise((resolve, reject) => {
    const { command: bin, args } = commandFor(runtime, cli, [command])
    // A process group of its own, signalled whole: tsx's launcher and the node it starts go together,
    // and a test that fails half-way leaves nothing running.
    const child = spawn(bin, args, {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: "0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal)
      } catch {
        // The group is gone already.
      }
    }
    const stdout: Array<string> = []
    const stderr: Array<string> = []
    const exited = new Promise<number | string>((done) =>
      child.on("exit", (code, signal) => done(code ?? signal ?? "unknown"))
    )
    const timer = setTimeout(() => {
      signalGroup("SIGKILL")
      reject(new Error(`no start-up line in 60 s:\n${stdout.join("\n")}\n${stderr.join("\n")}`))
    }, 60_000)
    lines(child.stdout!, stdout, (line) => {
      const match = / listening on (http:\/\/\S+) /.exec(line)
      if (match === null) return
      clearTimeout(timer)
      const url = match[1]!
      resolve({
        child,
        url,
        port: Number(new URL(url).port),
        stdout,
        stderr,
        exited,
        stop: (signal = "SIGTERM") => {
          if (child.exitCode === null && child.signalCode === null) signalGroup(signal)
          else if (signal === "SIGKILL") signalGroup(signal)
          return exited
        }
      })
    })
    lines(child.stderr!, stderr, () => {})
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`exited (${code}) before listening:\n${stdout.join("\n")}\n${stderr.join("\n")}`))
    })
  })

const agent = new Agent({ keepAlive: true, maxSockets: 16 })

/**
 * A `fetch` that sends each request to the server at `base` over HTTP/1.1, keeping the request's own
 * host in the `Host` header (so the issuer sees what a client behind that name would send).
 */
export const httpFetch =
  (base: string) =>
  async (request: Request): Promise<Response> => {
    const url = new URL(request.url)
    const target = new URL(base)
    const body = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer())
    const headers: Record<string, string> = {}
    request.headers.forEach((value, name) => {
      headers[name] = value
    })
    headers.host = url.host
    if (body !== undefined) headers["content-length"] = String(body.byteLength)
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          agent,
          host: target.hostname,
          port: target.port,
          method: request.method,
          path: `${url.pathname}${url.search}`,
          headers
        },
        (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (chunk: Buffer) => chunks.push(chunk))
          res.on("end", () => {
            const out = new Headers()
            for (let i = 0; i + 1 < res.rawHeaders.length; i += 2)
              out.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!)
            const status = res.statusCode ?? 500
            const nullBody = request.method === "HEAD" || status === 204 || status === 304
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: out }))
          })
          res.on("error", reject)
        }
      )
      req.on("error", reject)
      req.end(body)
    })
  }

/** A temporary folder, removed by the returned function. */
export const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * A fresh Postgres database for one suite, on the run's server (test/support/postgres-setup.ts:
 * ICR_TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded one), and how to drop it.
 */
export const postgresDatabase = (): Promise<TestDatabase> => createTestDatabase(inject("postgres").url)
