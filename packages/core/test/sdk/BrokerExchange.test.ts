/**
 * `exchangeAtBroker` and `icr-apps exchange` against a broker stand-in on 127.0.0.1: the identity
 * token goes to the broker named and nowhere else (no redirect followed, no plain HTTP off this
 * machine), and the CLI's standard output carries the token alone (the Actions mask on stderr).
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BrokerExchangeError, exchangeAtBroker } from "../../src/sdk/BrokerExchange.js"

const TOKEN = "crs_0123456789abcdef0123456789abcdef0123456789abcdef"
const SUBJECT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmljci9hcHBzIn0.c2ln"
const INSTALLATION = "00000000-0000-4000-8000-000000000001"

/** Every body posted, by path. */
const posted: Array<{ path: string; body: string }> = []
let server: ReturnType<typeof createServer>
let origin = ""

const handle = (req: IncomingMessage, res: ServerResponse) => {
  let body = ""
  req.on("data", (c) => (body += c))
  req.on("end", () => {
    const path = req.url ?? "/"
    posted.push({ path, body })
    if (path.startsWith("/oidc")) return void res.end(JSON.stringify({ value: SUBJECT }))
    if (path === "/moved/token") {
      res.writeHead(307, { location: `${origin}/elsewhere` })
      return void res.end()
    }
    res.setHeader("content-type", "application/json")
    res.end(JSON.stringify({ access_token: TOKEN, expires_in: 3600, scope: "organization_info:VIEW" }))
  })
}

beforeAll(async () => {
  server = createServer(handle)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

const options = (broker: string) => ({ broker, installation: INSTALLATION, subjectToken: SUBJECT })

describe("exchangeAtBroker", () => {
  it("exchanges at a loopback broker over http", async () => {
    expect((await exchangeAtBroker(options(origin))).accessToken).toBe(TOKEN)
  })

  it("follows no redirect: a 307 is an error, and the identity token is posted nowhere else", async () => {
    posted.length = 0
    const failure = await exchangeAtBroker(options(`${origin}/moved`)).catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(BrokerExchangeError)
    expect((failure as BrokerExchangeError).code).toBe("redirect")
    expect(posted.map((p) => p.path)).toEqual(["/moved/token"])
  })

  it("refuses plain http off this machine, before sending anything", async () => {
    let sent = 0
    const fetch = (async () => {
      sent++
      return Response.json({ access_token: TOKEN })
    }) as typeof globalThis.fetch
    for (const broker of [
      "http://broker.example",
      "http://10.0.0.1:8080",
      "http://127.evil.example",
      "ftp://x",
      "nope"
    ]) {
      const failure = await exchangeAtBroker(options(broker), fetch).catch((e: unknown) => e)
      expect([broker, (failure as BrokerExchangeError).code]).toEqual([broker, "usage"])
    }
    expect(sent).toBe(0)
    for (const broker of ["https://broker.example", "http://localhost:1", "http://127.0.0.2", "http://[::1]:9"]) {
      expect((await exchangeAtBroker(options(broker), fetch)).accessToken).toBe(TOKEN)
    }
    expect(sent).toBe(4)
  })
})

describe("icr-apps exchange", () => {
  const cli = (args: ReadonlyArray<string>, env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn(
        join(process.cwd(), "node_modules/.bin/tsx"),
        [join(process.cwd(), "cli/icr-apps.ts"), "exchange", ...args],
        { env: { PATH: process.env.PATH ?? "", ...env } }
      )
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (d) => (stdout += d))
      child.stderr.on("data", (d) => (stderr += d))
      child.on("close", (code) => done({ code, stdout, stderr }))
    })
  const actions = () => ({
    GITHUB_ACTIONS: "true",
    ACTIONS_ID_TOKEN_REQUEST_URL: `${origin}/oidc`,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: "request-token"
  })
  const common = () => ["--broker", origin, "--audience", "aud", "--installation", INSTALLATION]

  it("in GitHub Actions, prints the token alone on stdout and the ::add-mask:: line on stderr", async () => {
    const run = await cli(common(), actions())
    expect(run.code).toBe(0)
    // What TOKEN=$(icr-apps exchange …) captures: the token, nothing else.
    expect(run.stdout).toBe(`${TOKEN}\n`)
    expect(run.stderr.split("\n")).toContain(`::add-mask::${TOKEN}`)
  }, 30_000)

  it("--github-output writes token= to $GITHUB_OUTPUT, not to stdout; without GITHUB_OUTPUT it is a usage error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "icr-exchange-"))
    try {
      const output = join(dir, "output")
      writeFileSync(output, "earlier=1\n")
      const run = await cli([...common(), "--github-output"], { ...actions(), GITHUB_OUTPUT: output })
      expect([run.code, run.stdout]).toEqual([0, ""])
      expect(readFileSync(output, "utf8")).toBe(`earlier=1\ntoken=${TOKEN}\n`)
      expect(run.stderr.split("\n")).toContain(`::add-mask::${TOKEN}`)
      posted.length = 0
      const unset = await cli([...common(), "--github-output"], actions())
      expect([unset.code, unset.stdout]).toEqual([2, ""])
      expect(posted).toEqual([]) // refused before an identity token was asked for
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 30_000)
})
