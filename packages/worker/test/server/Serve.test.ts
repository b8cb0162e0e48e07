/**
 * `npm run serve -- --runtime node|deno|bun` in this repository: bootstrapped as npm start is, it
 * prints a generated ADMIN_TOKEN when none is set (as npm start does), serves the README's
 * walk-through (register an app, install it, mint, describe, list, revoke) on SQLite in the folder
 * the command was typed in, and on SIGTERM stops the server and exits 0 with nothing left running.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readdirSync } from "node:fs"
import { join } from "node:path"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { afterAll, describe, expect, it } from "vitest"
import { lines, root, type RuntimeName, tempDir } from "./support.js"

/** A fresh database gets every file of migrations/ applied. */
const issuerMigrationCount = readdirSync(join(root, "packages/worker/migrations")).filter((f) =>
  f.endsWith(".sql")
).length

const groupRuns = (pid: number) => {
  try {
    process.kill(-pid, 0)
    return true
  } catch {
    return false
  }
}

describe("npm run serve", () => {
  const temp = tempDir("icr-serve-")
  afterAll(temp.remove)

  for (const runtime of ["node", "deno", "bun"] as const satisfies ReadonlyArray<RuntimeName>) {
    it(`--runtime ${runtime}: the README's walk-through on SQLite, then SIGTERM stops it all`, async () => {
      const cwd = join(temp.dir, runtime)
      mkdirSync(cwd)
      const env: Record<string, string | undefined> = { ...process.env, PORT: "0", INIT_CWD: cwd }
      delete env.ADMIN_TOKEN
      delete env.DATABASE_URL
      const child = spawn(process.execPath, [join(root, "scripts/icr.mjs"), "serve", "--runtime", runtime], {
        cwd: root,
        env,
        stdio: ["ignore", "pipe", "pipe"],
        detached: true
      })
      const out: Array<string> = []
      const err: Array<string> = []
      const exited = new Promise<number | string>((resolve) =>
        child.on("exit", (code, signal) => resolve(code ?? signal!))
      )
      try {
        const listening = new Promise<string>((resolve, reject) => {
          lines(child.stdout!, out, (line) => {
            const match = / listening on (http:\/\/\S+) /.exec(line)
            if (match !== null) resolve(match[1]!)
          })
          lines(child.stderr!, err, () => {})
          void exited.then((code) => reject(new Error(`exited ${code}:\n${out.join("\n")}\n${err.join("\n")}`)))
        })
        const api = await listening
        const token = out
          .map((l) => /^ {4}export ADMIN_TOKEN=([0-9a-f]{48})$/.exec(l)?.[1])
          .find((t) => t !== undefined)
        expect(token, out.join("\n")).toBeDefined()
        expect(out.join("\n")).toMatch(
          new RegExp(
            `listening on ${api} \\(${runtime} [^;]+; database sqlite:\\./icr-apps\\.db \\([a-z:]+\\), ${issuerMigrationCount} migration`
          )
        )

        const call = async (method: string, path: string, credential: string, body?: unknown) => {
          const response = await fetch(`${api}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${credential}`,
              ...(body === undefined ? {} : { "content-type": "application/json" })
            },
            ...(body === undefined ? {} : { body: JSON.stringify(body) })
          })
          const text = await response.text()
          return { status: response.status, json: text === "" ? undefined : JSON.parse(text) }
        }
        const keys = await generateAppKeyPair()
        const app = await call("POST", "/admin/apps", token!, {
          name: "my-app",
          permissions: { organization_info: "VIEW", organization_inventory: "REQUEST" },
          publicKey: keys.publicPem
        })
        expect(app.status).toBe(201)
        const installation = await call("POST", "/admin/installations", token!, {
          appId: app.json.id,
          organizationId: crypto.randomUUID(),
          permissions: { organization_info: "VIEW" }
        })
        expect(installation.status).toBe(201)
        const jwt = await signRs256(keys.privateKey, appClaims(String(app.json.id)))
        const minted = await call("POST", `/app/installations/${installation.json.id}/accessTokens`, jwt)
        expect(minted.status).toBe(200)
        expect((await call("GET", "/app/installations/token", minted.json.token)).status).toBe(200)
        expect((await call("GET", "/app/installations?limit=10&page=0", jwt)).json.total).toBe(1)
        expect((await call("POST", "/app/accessTokens", jwt)).status).toBe(200)
        expect((await call("DELETE", "/app/installations/token", minted.json.token)).status).toBe(204)
        expect((await call("GET", "/app/installations/token", minted.json.token)).json.code).toBe("invalid_token")
        // The database is where the command was typed.
        expect(existsSync(join(cwd, "icr-apps.db"))).toBe(true)

        process.kill(child.pid!, "SIGTERM")
        expect(await exited).toBe(0)
        expect(groupRuns(child.pid!)).toBe(false)
        expect(err.join("\n")).toContain("SIGTERM: finishing requests in flight, then stopping")
      } finally {
        // A test that failed half-way: npm run serve stops its server's group itself on SIGTERM.
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(child.pid!, "SIGTERM")
          await exited
        }
      }
    }, 120_000)
  }
})
