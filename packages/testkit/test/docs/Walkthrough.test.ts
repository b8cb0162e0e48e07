import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeFakeIssuer } from "../../src/FakeIssuer.js"

const root = fileURLToPath(new URL("../../../..", import.meta.url))
const readme = readFileSync(join(root, "README.md"), "utf8")

/** The first `sh` block of the README's "Try it" section, as a user pastes it. */
const block = (() => {
  const section = readme.slice(readme.indexOf("## Try it"))
  const match = /```sh\n([\s\S]*?)```/.exec(section)
  if (match === null) throw new Error("no sh block under ## Try it")
  return match[1]!
})()

/** Standard error without openssl's key-generation progress (lines of dots and pluses). */
const errors = (stderr: string) =>
  stderr
    .split("\n")
    .filter((line) => !/^[.+*]*$/.test(line))
    .join("\n")

/** Runs the block in bash, as pasted into an interactive shell, against `api`; then reports what the shell holds. */
const paste = (cwd: string, api: string, adminToken: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const script = `${block.replace(/^API=.*$/m, `API=${api}`)}\necho "after: APP_ID=\${APP_ID:-} INSTALLATION_ID=\${INSTALLATION_ID:-}"\n`
    execFile(
      "bash",
      ["-c", script],
      { cwd, env: { ...process.env, ADMIN_TOKEN: adminToken }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr })
    )
  })

// The README's walk-through, run as a new user would: twice in a row in one folder, and once with a
// wrong ADMIN_TOKEN. Real bash, curl, openssl and node, HTTP on loopback to the in-memory issuer.
describe("the README's walk-through", () => {
  const issuer = makeFakeIssuer()
  let server: Server
  let api: string

  beforeAll(async () => {
    server = createServer(async (req, res) => {
      const chunks: Array<Buffer> = []
      for await (const chunk of req) chunks.push(chunk as Buffer)
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined
      const response = await issuer.fetch(`http://${req.headers.host}${req.url}`, {
        method: req.method ?? "GET",
        headers: req.headers as Record<string, string>,
        ...(body !== undefined && body.length > 0 ? { body } : {})
      })
      res.writeHead(response.status, Object.fromEntries(response.headers))
      res.end(Buffer.from(await response.arrayBuffer()))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("runs twice: the second run reuses app.pem, the app and its installation, and prints the same ids", async () => {
    const dir = mkdtempSync(join(tmpdir(), "icr-apps-walkthrough-"))
    const first = await paste(dir, api, issuer.adminToken)
    expect(errors(first.stderr)).toBe("")
    expect(first.code).toBe(0)
    const ids = /export APP_ID=(\S+)\nexport INSTALLATION_ID=(\S+)\n/.exec(first.stdout)
    expect(ids).not.toBeNull()
    const [, appId, installationId] = ids!
    expect(appId).toMatch(/^\S+$/)
    expect(installationId).toMatch(/^[0-9a-f-]{36}$/)
    expect(first.stdout).toContain(`after: APP_ID=${appId} INSTALLATION_ID=${installationId}`)
    expect(first.stdout).toContain("204\n")
    expect(first.stdout).toContain('"code":"invalid_token"')
    const key = readFileSync(join(dir, "app.pem"), "utf8")

    const second = await paste(dir, api, issuer.adminToken)
    expect(second.stderr).toBe("") // not even openssl: app.pem is kept
    expect(second.code).toBe(0)
    expect(second.stdout).toContain(`export APP_ID=${appId}\nexport INSTALLATION_ID=${installationId}\n`)
    expect(readFileSync(join(dir, "app.pem"), "utf8")).toBe(key)
    expect(readFileSync(join(dir, "try-it.env"), "utf8")).toBe(
      `export APP_ID=${appId}\nexport INSTALLATION_ID=${installationId}\n`
    )
  }, 120_000)

  it("stops loudly at the first failing step, with no ids and no undefined", async () => {
    const dir = mkdtempSync(join(tmpdir(), "icr-apps-walkthrough-"))
    const wrong = await paste(dir, api, "not-the-admin-token-but-long-enough-to-look-like-one")
    expect(wrong.code).toBe(0) // the shell itself goes on: only the subshell stopped
    expect(errors(wrong.stderr)).toBe(
      '✗ {"type":"urn:icr:problem:invalid_token","title":"Invalid access token","status":401,"code":"invalid_token",' +
        '"detail":"The operator token is not valid"}\n' +
        "✗ stopped at step 2. registering the app"
    )
    expect(wrong.stdout).not.toContain("export APP_ID")
    expect(wrong.stdout).toContain("after: APP_ID= INSTALLATION_ID=")
    expect(`${wrong.stdout}${wrong.stderr}`).not.toContain("undefined")

    const unset = await paste(dir, api, "")
    expect(unset.stderr).toContain("ADMIN_TOKEN: export ADMIN_TOKEN first, as npm start printed it")
  }, 60_000)
})
