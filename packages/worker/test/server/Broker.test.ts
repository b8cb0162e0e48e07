/**
 * The broker off Cloudflare: its KV-shaped token cache over SQL (SQLite and Postgres), and the broker
 * served on Node, Deno and Bun — a real token exchange against a served issuer and an identity
 * provider over HTTP, the cached token sealed in the database exactly as in KV, and served again.
 */
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { makeOidcProvider, type OidcProvider } from "@icr-apps/testkit/Oidc"
import { generateAppKeyPair } from "@icr-apps/testkit/Keys"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker } from "../../src/server/Broker.js"
import { startIssuer } from "../../src/server/Issuer.js"
import type { Listener } from "../../src/server/Listen.js"
import { listen } from "../../src/server/node.js"
import * as SqlKv from "../../src/server/SqlKv.js"
import { brokerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { postgresDatabase, type RuntimeName, startServer, tempDir } from "./support.js"

const quiet = { info: () => {}, warn: () => {} }

/** The KV contract the broker's cache relies on, on one driver. */
const kvChecks = async (driver: ServerSqlDriver) => {
  await migrate(driver, brokerMigrations(driver.dialect))
  let now = 1_000_000
  const kv = SqlKv.make(driver, () => now)
  expect(await kv.get("a", "text")).toBeNull()
  await kv.put("a", "one", { expirationTtl: 60 })
  await kv.put("b", "two", { expirationTtl: 120 })
  expect([await kv.get("a", "text"), await kv.get("b", "text")]).toEqual(["one", "two"])
  await kv.put("a", "uno", { expirationTtl: 60 })
  expect(await kv.get("a", "text")).toBe("uno")
  await kv.delete("b")
  expect(await kv.get("b", "text")).toBeNull()
  await kv.put("b", "two", { expirationTtl: 120 })
  // Past a's expiry: invisible at once, and pruned by the next write.
  now += 60_000
  expect([await kv.get("a", "text"), await kv.get("b", "text")]).toEqual([null, "two"])
  expect(await driver.all("SELECT key FROM broker_kv ORDER BY key")).toEqual([{ key: "a" }, { key: "b" }])
  await kv.put("c", "three", { expirationTtl: 60 })
  expect(await driver.all("SELECT key, value, expires_at FROM broker_kv ORDER BY key")).toEqual([
    { key: "b", value: "two", expires_at: 1_000_000 + 120_000 },
    { key: "c", value: "three", expires_at: now + 60_000 }
  ])
  await driver.close()
}

describe("the broker's KV over SQL", () => {
  it("SQLite", async () => {
    const temp = tempDir("icr-kv-")
    try {
      await kvChecks(await openSqlite(join(temp.dir, "kv.db")))
    } finally {
      temp.remove()
    }
  })
  it("Postgres", async () => {
    const database = await postgresDatabase()
    try {
      await kvChecks(openPostgres(database.url, { poolSize: 2 }))
    } finally {
      await database.drop()
    }
  })
})

describe("the broker served", () => {
  const ADMIN_TOKEN = "broker-suite-admin-token-of-32-characters-at-least"
  const AUDIENCE = "https://broker.test"
  const temp = tempDir("icr-broker-")
  let issuer: Awaited<ReturnType<typeof startIssuer>>
  let oidcListener: Listener
  let oidc: OidcProvider
  let app: { id: string; privatePem: string; installation: string }

  beforeAll(async () => {
    issuer = await startIssuer(
      { DATABASE_URL: `sqlite:${join(temp.dir, "issuer.db")}`, PORT: "0", ADMIN_TOKEN },
      listen,
      "node",
      quiet
    )
    oidcListener = await listen((request) => oidc.fetch(request), { host: "127.0.0.1", port: 0 })
    oidc = makeOidcProvider({ issuer: `http://127.0.0.1:${oidcListener.port}` })
    const admin = async (path: string, body: unknown) => {
      const response = await fetch(`${issuer.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      expect(response.status).toBe(201)
      return (await response.json()) as { id: string }
    }
    const keys = await generateAppKeyPair()
    const created = await admin("/admin/apps", {
      name: `broker-${Date.now()}`,
      permissions: { organization_info: "VIEW", organization_inventory: "WRITE" },
      publicKey: keys.publicPem
    })
    const installation = await admin("/admin/installations", {
      appId: created.id,
      organizationId: crypto.randomUUID(),
      permissions: { organization_info: "VIEW", organization_inventory: "WRITE" }
    })
    app = { id: String(created.id), privatePem: keys.privatePem, installation: installation.id }
  }, 60_000)
  afterAll(async () => {
    await oidcListener?.close()
    await issuer?.stop()
    temp.remove()
  })

  /** The broker served in this process on Node, over SQLite, for this app and policy. */
  const inProcess = async (vars: Record<string, string> = {}) => {
    const lines: Array<string> = []
    const broker = await startBroker(
      {
        DATABASE_URL: `sqlite:${join(temp.dir, `broker-${crypto.randomUUID()}.db`)}`,
        PORT: "0",
        BROKER_APP_ID: app.id,
        BROKER_PRIVATE_KEY: app.privatePem,
        BROKER_ISSUER_URL: issuer.url,
        BROKER_AUDIENCE: AUDIENCE,
        BROKER_OIDC_ISSUERS: JSON.stringify([oidc.issuer]),
        BROKER_POLICIES: JSON.stringify([
          {
            name: "ci",
            identity: { issuer: oidc.issuer, sub: "repo:icr/apps" },
            installations: [app.installation],
            permissions: { organization_info: "VIEW" }
          }
        ]),
        BROKER_CACHE_SECRET: "a-test-cache-secret-that-is-long-enough-0123456789",
        ...vars
      },
      listen,
      "node",
      { info: (line) => void lines.push(line), warn: (line) => void lines.push(line) }
    )
    const exchange = async (headers: Record<string, string> = {}) => {
      const response = await fetch(`${broker.url}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams({
          grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
          subject_token: await oidc.issue({ sub: "repo:icr/apps", aud: AUDIENCE }),
          subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
          resource: app.installation
        })
      })
      return {
        status: response.status,
        body: (await response.json()) as Record<string, any>,
        headers: response.headers
      }
    }
    return { broker, lines, exchange }
  }

  it("node, in process: a revocation between two exchanges reaches the cache; Cache-Control: no-cache mints afresh", async () => {
    const { broker, exchange } = await inProcess()
    try {
      const first = await exchange()
      expect(first.status).toBe(200)
      const revoked = await fetch(`${issuer.url}/app/installations/token`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${first.body.access_token}` }
      })
      expect(revoked.status).toBe(204)
      const second = await exchange()
      expect(second.status).toBe(200)
      expect(second.body.access_token).not.toBe(first.body.access_token)
      const described = await fetch(`${issuer.url}/app/installations/token`, {
        headers: { authorization: `Bearer ${second.body.access_token}` }
      })
      expect(described.status).toBe(200)
      expect((await exchange()).body.access_token).toBe(second.body.access_token)
      const fresh = await exchange({ "cache-control": "no-cache" })
      expect(fresh.body.access_token).not.toBe(second.body.access_token)
    } finally {
      await broker.stop()
    }
  })

  it("node, in process: an identity provider that is down is 503 with Retry-After, never invalid_grant", async () => {
    const { broker, exchange } = await inProcess()
    try {
      expect((await exchange()).status).toBe(200)
      oidc.setAvailable(false)
      await oidc.rotate() // a new kid the broker cannot fetch
      const down = await exchange()
      expect(down.status).toBe(503)
      expect(down.body.code).toBe("unavailable")
      expect(down.headers.get("retry-after")).toBe("5")
    } finally {
      oidc.setAvailable(true)
      await broker.stop()
    }
  })

  it("icr-apps exchange: GitHub Actions' identity token (or a file) exchanged at the broker, masked in the log", async () => {
    const { broker } = await inProcess()
    // GitHub's OIDC token endpoint, as a job sees it.
    let asked: URL | undefined
    const actions = await listen(
      async (request) => {
        asked = new URL(request.url)
        if (request.headers.get("authorization") !== "Bearer actions-request-token")
          return new Response("{}", { status: 401 })
        const aud = asked.searchParams.get("audience")!
        return Response.json({ value: await oidc.issue({ sub: "repo:icr/apps", aud }) })
      },
      { host: "127.0.0.1", port: 0 }
    )
    const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolveRun) => {
        const child = spawn(
          join(process.cwd(), "node_modules/.bin/tsx"),
          [join(process.cwd(), "../core/cli/icr-apps.ts"), "exchange", ...args],
          { env: { PATH: process.env.PATH ?? "", ...env } }
        )
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d) => (stdout += d))
        child.stderr.on("data", (d) => (stderr += d))
        child.on("close", (code) => resolveRun({ code, stdout, stderr }))
      })
    try {
      const common = ["--broker", broker.url, "--installation", app.installation, "--scope", "organization_info:VIEW"]
      const run = await cli([...common, "--audience", AUDIENCE], {
        GITHUB_ACTIONS: "true",
        ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${actions.port}/token?api-version=2.0`,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: "actions-request-token"
      })
      expect(run.code).toBe(0)
      // Standard output is the token alone (TOKEN=$(…) captures it); the mask goes to standard error.
      const token = run.stdout.trim()
      expect(token).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(run.stderr.split("\n")).toContain(`::add-mask::${token}`)
      expect(asked?.searchParams.get("audience")).toBe(AUDIENCE)
      expect(asked?.searchParams.get("api-version")).toBe("2.0")
      // A Kubernetes projected token: a file.
      const file = join(temp.dir, "sa-token")
      writeFileSync(file, `${await oidc.issue({ sub: "repo:icr/apps", aud: AUDIENCE })}\n`)
      const fromFile = await cli([...common, "--token-file", file])
      expect(fromFile.code).toBe(0)
      expect(fromFile.stdout.trim()).toMatch(/^crs_[0-9a-f]{48}$/)
      // A refusal says the broker's code, exit 1; nothing to exchange is a usage error, exit 2.
      writeFileSync(file, await oidc.issue({ sub: "someone-else", aud: AUDIENCE }))
      const refused = await cli([...common, "--token-file", file])
      expect([refused.code, refused.stdout]).toEqual([1, ""])
      expect(refused.stderr).toContain("403 unauthorized_client")
      expect((await cli([...common, "--audience", AUDIENCE])).code).toBe(2)
    } finally {
      await actions.close()
      await broker.stop()
    }
  }, 60_000)

  it("a third-party OAuth client (openid-client) discovers the broker by RFC 8414 and exchanges a token (RFC 8693)", async () => {
    const { broker } = await inProcess()
    try {
      const oauth = await import("openid-client")
      const config = await oauth.discovery(new URL(broker.url), "any-workload", undefined, oauth.None(), {
        algorithm: "oauth2",
        execute: [oauth.allowInsecureRequests] // the broker here is on http://127.0.0.1
      })
      expect(config.serverMetadata().token_endpoint).toBe(`${broker.url}/token`)
      const answer = await oauth.genericGrantRequest(config, "urn:ietf:params:oauth:grant-type:token-exchange", {
        subject_token: await oidc.issue({ sub: "repo:icr/apps", aud: AUDIENCE }),
        subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
        resource: `urn:icr:installation:${app.installation}`,
        scope: "organization_info:VIEW"
      })
      expect(answer.access_token).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(answer.token_type).toBe("bearer")
      expect(answer.issued_token_type).toBe("urn:ietf:params:oauth:token-type:access_token")
      // And its error handling understands the broker's refusals (RFC 6749 error bodies).
      const refused = await oauth
        .genericGrantRequest(config, "urn:ietf:params:oauth:grant-type:token-exchange", {
          subject_token: await oidc.issue({ sub: "someone-else", aud: AUDIENCE }),
          subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
          resource: app.installation
        })
        .then(
          () => undefined,
          (e: { error?: string; status?: number }) => ({ error: e.error, status: e.status })
        )
      expect(refused).toEqual({ error: "unauthorized_client", status: 403 })
    } finally {
      await broker.stop()
    }
  })

  it("node, in process: policies put through /admin/policies live in the database, sealed, and survive a restart", async () => {
    const ADMIN = "broker-operator-token-of-at-least-32-characters"
    const file = join(temp.dir, `broker-admin-${crypto.randomUUID()}.db`)
    const vars = { DATABASE_URL: `sqlite:${file}`, BROKER_ADMIN_TOKEN: ADMIN, BROKER_POLICIES: "[]" }
    const put = (url: string, policies: unknown) =>
      fetch(`${url}/admin/policies`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", "if-match": '"0"' },
        body: JSON.stringify({ policies })
      })
    const first = await inProcess(vars)
    try {
      expect((await first.exchange()).status).toBe(403)
      const policy = {
        name: "ci-pattern",
        identity: { issuer: oidc.issuer, subjectPattern: "repo:icr/[a-z]+" },
        installations: [app.installation],
        permissions: { organization_info: "VIEW" }
      }
      const answer = await put(first.broker.url, [policy])
      expect(answer.status).toBe(200)
      expect(((await answer.json()) as { version: number }).version).toBe(1)
      expect((await first.exchange()).status).toBe(200)
    } finally {
      await first.broker.stop()
    }
    const reader = await openSqlite(file)
    const rows = await reader.all<{ value: string }>("SELECT value FROM broker_kv")
    await reader.close()
    expect(JSON.stringify(rows)).not.toContain("ci-pattern")
    const second = await inProcess(vars)
    try {
      expect((await second.exchange()).status).toBe(200)
      const shown = await fetch(`${second.broker.url}/admin/policies`, {
        headers: { authorization: `Bearer ${ADMIN}` }
      })
      expect(await shown.json()).toMatchObject({ version: 1, source: "store" })
    } finally {
      await second.broker.stop()
    }
  })

  it("node, in process: prints BROKER_ISSUER_URL without its user:password, query or fragment", async () => {
    const { broker, lines } = await inProcess({
      BROKER_ISSUER_URL: "https://operator:hunter2-secret@issuer.example/base?token=abc#frag"
    })
    try {
      const line = lines.find((l) => l.startsWith("icr-apps broker listening"))!
      expect(line).toContain("issuer https://issuer.example/base;")
      for (const secret of ["operator", "hunter2", "token=abc", "frag"]) expect(line).not.toContain(secret)
    } finally {
      await broker.stop()
    }
  })

  for (const runtime of ["node", "deno", "bun"] as const satisfies ReadonlyArray<RuntimeName>) {
    it(`${runtime}: exchanges an identity token, caches the token sealed in SQLite, serves it again`, async () => {
      const file = join(temp.dir, `broker-${runtime}.db`)
      const broker = await startServer(runtime, "broker", {
        DATABASE_URL: `sqlite:${file}`,
        BROKER_APP_ID: app.id,
        BROKER_PRIVATE_KEY: app.privatePem,
        BROKER_ISSUER_URL: issuer.url,
        BROKER_AUDIENCE: AUDIENCE,
        BROKER_OIDC_ISSUERS: JSON.stringify([oidc.issuer]),
        BROKER_POLICIES: JSON.stringify([
          {
            name: "ci",
            identity: { issuer: oidc.issuer, sub: "repo:icr/apps" },
            installations: [app.installation],
            permissions: { organization_info: "VIEW" }
          }
        ]),
        BROKER_CACHE_SECRET: "a-test-cache-secret-that-is-long-enough-0123456789"
      })
      try {
        expect(broker.stdout[0]).toMatch(
          new RegExp(`^icr-apps broker listening on http://127\\.0\\.0\\.1:${broker.port} \\(${runtime} `)
        )
        const health = await fetch(`${broker.url}/healthz`)
        expect(health.status).toBe(200)
        const exchange = async () => {
          const response = await fetch(`${broker.url}/token`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({
              grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
              subject_token: await oidc.issue({ sub: "repo:icr/apps", aud: AUDIENCE }),
              subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
              resource: app.installation
            })
          })
          const body = (await response.json()) as Record<string, unknown>
          expect({ status: response.status, scope: body.scope, type: body.token_type }).toEqual({
            status: 200,
            scope: "organization_info:VIEW",
            type: "Bearer"
          })
          return body.access_token as string
        }
        const token = await exchange()
        expect(token).toMatch(/^crs_[0-9a-f]{48}$/)

        // In the database: one entry, under an HMAC name, sealed (AES-GCM), never the token itself.
        const reader = await openSqlite(file)
        const rows = await reader.all<{ key: string; value: string; expires_at: number }>("SELECT * FROM broker_kv")
        await reader.close()
        expect(rows.length).toBe(1)
        expect(rows[0]!.key).toMatch(/^broker:token:[0-9a-f]{64}$/)
        expect(rows[0]!.value).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/)
        expect(rows[0]!.value.includes(token) || rows[0]!.value.includes(token.slice(4))).toBe(false)
        expect(rows[0]!.expires_at).toBeGreaterThan(Date.now())

        // The same caller again: the cached token, its standing confirmed by the issuer.
        expect(await exchange()).toBe(token)

        if (runtime === "node") {
          // Failed attempts count against the TCP peer: a client-sent cf-connecting-ip, different on
          // every attempt, is replaced, so the 31st failure from this address is refused (30 a minute).
          const statuses: Array<number> = []
          for (let i = 0; i < 31; i++) {
            const response = await fetch(`${broker.url}/token`, {
              method: "POST",
              headers: { "content-type": "application/json", "cf-connecting-ip": `198.51.100.${i}` },
              body: JSON.stringify({
                grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
                subject_token: "not.a.token",
                subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
                resource: app.installation
              })
            })
            statuses.push(response.status)
            await response.arrayBuffer()
          }
          expect(statuses).toEqual([...Array(30).fill(400), 429])
        }
        expect(await broker.stop()).toBe(0)
      } finally {
        await broker.stop("SIGKILL")
      }
    }, 90_000)
  }
})
