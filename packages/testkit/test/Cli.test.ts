import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, statSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { UNKNOWN_APP_OR_WRONG_KEY } from "@icr-apps/core/issuer/JwtVerifier"
import { makeFakeIssuer } from "../src/FakeIssuer.js"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const cli = join(root, "packages/core/cli/icr-apps.ts")
const tsx = join(root, "node_modules/.bin/tsx")

const run = (args: ReadonlyArray<string>, cwd: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      tsx,
      [cli, ...args],
      { cwd, env: { ...process.env, ICR_PRIVATE_KEY: "", ICR_BASE_URL: "" } },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr })
    )
  })

// The CLI end to end: a real process, real files, HTTP on loopback to the in-memory issuer.
describe("icr-apps CLI", () => {
  const issuer = makeFakeIssuer()
  let server: Server
  let baseUrl: string
  const dir = mkdtempSync(join(tmpdir(), "icr-apps-cli-"))

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
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("keygen, then jwt, token and installations against the issuer", async () => {
    const keygen = await run(["keygen"], dir)
    expect(keygen.code).toBe(0)
    expect(statSync(join(dir, "app.pem")).mode & 0o777).toBe(0o600)
    const again = await run(["keygen"], dir)
    expect(again.code).toBe(2)
    // One line saying why, not the whole usage text: the command was right, the folder is not.
    expect(again.stderr).toMatch(/refusing to overwrite a private key/)
    expect(again.stderr).not.toMatch(/usage:/)

    const admin = (path: string, body: unknown) => issuer.admin("POST", path, body)
    const app = await admin("/admin/apps", {
      name: "cli-app",
      permissions: { organization_info: "VIEW" },
      publicKey: readFileSync(join(dir, "app.pub.pem"), "utf8")
    })
    const made: Array<{ id: string; createdAt: string }> = []
    for (let i = 0; i < 3; i++) {
      made.push(
        await admin("/admin/installations", {
          appId: app.id,
          organizationId: crypto.randomUUID(),
          permissions: { organization_info: "VIEW" }
        })
      )
    }
    // The API's order: createdAt, then id (installs made in the same millisecond tie on time).
    const ids = made
      .sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt) || (a.id < b.id ? -1 : 1))
      .map((i) => i.id)
    const common = ["--app-id", app.id, "--key", "app.pem", "--base-url", baseUrl]

    // jwt only signs: no base URL asked for, nothing on standard error.
    const jwt = await run(["jwt", "--app-id", app.id, "--key", "app.pem"], dir)
    expect(jwt).toMatchObject({ code: 0, stderr: "" })
    expect(jwt.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)

    // A command that calls the API without a base URL: a usage error that says which flag, never a
    // silent call to production; and one without a scheme is refused before anything is sent.
    const noBase = await run(["token", "--app-id", app.id, "--key", "app.pem", "--installation", ids[0]!], dir)
    expect(noBase.code).toBe(2)
    expect(noBase.stderr).toContain("--base-url URL (or ICR_BASE_URL) required")
    expect(noBase.stdout).toBe("")
    const noScheme = await run(["installations", ...common.slice(0, 4), "--base-url", baseUrl.slice(7)], dir)
    expect(noScheme.code).toBe(2)
    expect(noScheme.stderr).toContain(`it has no scheme; write it with one, e.g. ${baseUrl}`)

    const token = await run(["token", ...common, "--installation", ids[0]!], dir)
    expect(token).toMatchObject({ code: 0, stderr: "" })
    expect((await run(["token", ...common, "--verbose", "--installation", ids[0]!], dir)).stderr).toBe(
      `icr-apps: ${baseUrl}\n`
    )
    expect(JSON.parse(token.stdout)).toMatchObject({ installationId: ids[0], token: expect.stringMatching(/^crs_/) })

    const table = await run(["installations", ...common], dir)
    expect(table.stdout.split("\n")[0]).toMatch(/^ID\s+ORGANIZATION\s+CREATED\s+PERMISSIONS$/)
    for (const id of ids) expect(table.stdout).toContain(id)

    const json = await run(["installations", ...common, "--json"], dir)
    expect(
      json.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).id)
    ).toEqual(ids)

    const missing = await run(["token", ...common, "--installation", crypto.randomUUID()], dir)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("installation_not_found")

    // A failure names its tag, code and reason (and where it came from); the cause is in the words.
    const wrongApp = await run(["token", ...common.slice(2), "--app-id", "no-such-app", "--installation", ids[0]!], dir)
    expect(wrongApp.code).toBe(1)
    expect(wrongApp.stderr).toBe(
      "icr-apps: InvalidJwt (code invalid_jwt, reason invalid_signature): Unknown app or wrong key: " +
        `${UNKNOWN_APP_OR_WRONG_KEY.slice("Unknown app or wrong key: ".length)} (from ${baseUrl})\n`
    )
  }, 60_000)

  it("--version prints the version alone; an unknown option is a short usage error", async () => {
    const version = await run(["--version"], dir)
    const { version: expected } = JSON.parse(readFileSync(join(root, "packages/core/package.json"), "utf8"))
    expect(version).toEqual({ code: 0, stdout: `${expected}\n`, stderr: "" })
    const unknown = await run(["jwt", "--nope"], dir)
    expect(unknown.code).toBe(2)
    expect(unknown.stderr.split("\n")[0]).toBe("icr-apps: unknown option --nope")
    expect(unknown.stderr).not.toContain("positional")
  }, 30_000)
})
