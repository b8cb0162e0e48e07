/**
 * The yardstick of `npm run bench:storage` (issue 16): issue 12's plain handler (core/bench/plain.ts,
 * every SPEC check of the token-use and mint paths, no framework) over the served issuer's own SQL —
 * the statements of `SqlStatements` through the driver `DATABASE_URL` opens (`openDatabase`: libsql on
 * Node 20, `node:sqlite` on Deno, `bun:sqlite` on Bun, postgres.js), with the same pragmas, statement
 * cache, transactions and pool — served by the runtime's bare HTTP server (`node:http`, `Deno.serve`,
 * `Bun.serve`). What a served issuer costs beyond this is the framework and the design, not the storage.
 *
 * - mint: one batch (the app, its keys, the installation), then the token's write (SQLite: prune and
 *   insert in one batch; Postgres: one statement), as `SqlRegistry.getAppWithInstallation`/`putToken`;
 * - describe: one statement (the token with its standing), as `SqlRegistry.findToken`.
 *
 * It opens the database the served issuer migrated and seeded (it never migrates). With
 * `BENCH_TRIVIAL=1` it instead answers every request with a fixed 200 and does nothing else: the load
 * generator's ceiling. Audit lines go to standard output, as the served issuer's do.
 *
 *   DATABASE_URL=sqlite:./x.db PORT=8790 node|deno|bun storage-plain.ts
 *
 * If the issuer's statements change (SqlStatements), this follows by itself; if its storage design
 * changes (the number of round trips), change it here too, or the comparison stops being "same work".
 */
import { sql } from "@icr-apps/core/issuer/Sql"
import { appRowId, putTokenParams, type TokenRecordFields } from "@icr-apps/core/issuer/SqlRegistry"
import { statementsFor } from "@icr-apps/core/issuer/SqlStatements"
import { makePlainHandler, type PlainInstallation, type PlainStorage, type PlainToken } from "../../core/bench/plain.js"
import { openDatabase, parseDatabaseUrl } from "../src/sql/open.js"
import type { ServerSqlDriver } from "../src/sql/ServerSql.js"

interface InstallationRow {
  readonly id: string
  readonly app_id: number
  readonly organization_id: string
  readonly permissions: string
  readonly suspended_at: number | null
  readonly token_epoch: number
  readonly app_token_epoch: number
}
const toInstallation = (row: InstallationRow): PlainInstallation => ({
  id: row.id,
  appId: String(row.app_id),
  organizationId: row.organization_id,
  permissions: JSON.parse(row.permissions),
  suspendedAt: row.suspended_at,
  tokenEpoch: row.token_epoch,
  appTokenEpoch: row.app_token_epoch
})

/** The plain handler's storage over a server driver: the issuer's statements, as many round trips. */
export const sqlPlainStorage = (driver: ServerSqlDriver): PlainStorage => {
  const S = statementsFor(driver.dialect)
  return {
    loadForMint: async (appId, installationId) => {
      const id = appRowId(appId)
      const [apps, keys, installations] = await driver.batch([
        sql(S.app, id ?? 0),
        sql(S.keysOfApp, id ?? 0),
        sql(S.installation, installationId)
      ])
      const app = id === undefined ? undefined : (apps?.rows[0] as Record<string, any> | undefined)
      const installation = installations?.rows[0] as InstallationRow | undefined
      return {
        app:
          app === undefined
            ? undefined
            : {
                id: String(app.id),
                permissions: JSON.parse(app.permissions),
                keys: (keys?.rows ?? []).map((k: Record<string, any>) => ({
                  id: k.id,
                  fingerprint: k.fingerprint,
                  spki: k.spki,
                  notBefore: k.not_before
                }))
              },
        installation: installation === undefined ? undefined : toInstallation(installation)
      }
    },
    putToken: async (digest, token) => {
      // The issuer's own parameters (app id, permissions' text, prune bound), so the two write alike.
      const { prune, insert } = putTokenParams(digest, token as TokenRecordFields)
      if (S.putToken.length === 1) await driver.run(S.putToken[0]!, [...prune, ...insert])
      else await driver.batch([sql(S.putToken[0]!, ...prune), sql(S.putToken[1]!, ...insert)])
    },
    findToken: async (digest) => {
      const row = await driver.first<Record<string, any>>(S.findToken, [digest])
      if (row === undefined) return undefined
      const token: PlainToken = {
        id: row.t_id,
        kind: row.kind,
        appId: String(row.t_app_id),
        ...(row.installation_id === null ? {} : { installationId: row.installation_id }),
        ...(row.t_organization_id === null ? {} : { organizationId: row.t_organization_id }),
        permissions: JSON.parse(row.t_permissions),
        createdAt: row.t_created_at,
        expiresAt: row.expires_at,
        appEpoch: row.app_epoch,
        installationEpoch: row.installation_epoch
      }
      return {
        token,
        revoked: row.revoked_at !== null,
        installation:
          token.kind === "installation" && row.id !== null && row.app_token_epoch !== null
            ? toInstallation(row as InstallationRow)
            : undefined,
        appExists: token.kind === "app" && row.app_token_epoch !== null
      }
    }
  }
}

type Handler = (request: Request) => Promise<Response>

/** The trivial server: a fixed answer about the size of a describe's, no work. */
const TRIVIAL_BODY = `${JSON.stringify({ id: "0".repeat(36), kind: "installation", pad: "x".repeat(300) })}\n`
const trivial: Handler = async () => new Response(TRIVIAL_BODY, { headers: { "content-type": "application/json" } })

/** `node:http`, bare: the body read whole, one `Request` in, one `Response` out, its length declared. */
const serveNode = async (handler: Handler, port: number) => {
  const { createServer } = await import("node:http")
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", async () => {
      const headers = new Headers()
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!)
      const method = req.method ?? "GET"
      const request = new Request(`http://127.0.0.1:${port}${req.url ?? "/"}`, {
        method,
        headers,
        ...(method === "GET" || method === "HEAD" ? {} : { body: Buffer.concat(chunks) })
      })
      const response = await handler(request)
      const body = Buffer.from(await response.arrayBuffer())
      const out: Record<string, string> = {}
      response.headers.forEach((value, name) => {
        out[name] = value
      })
      out["content-length"] = String(body.length)
      res.writeHead(response.status, out)
      res.end(method === "HEAD" ? undefined : body)
    })
  })
  await new Promise<void>((ok) => server.listen(port, "127.0.0.1", ok))
  return () => new Promise<void>((ok) => server.close(() => ok()))
}

const g = globalThis as unknown as {
  Deno?: {
    env: { get: (name: string) => string | undefined }
    serve: (options: Record<string, unknown>, handler: Handler) => { shutdown: () => Promise<void> }
    addSignalListener: (signal: string, f: () => void) => void
    exit: (code: number) => never
  }
  Bun?: { serve: (options: Record<string, unknown>) => { stop: (force?: boolean) => void } }
  process?: {
    env: Record<string, string | undefined>
    on: (signal: string, f: () => void) => void
    exit: (code: number) => never
  }
}
const getEnv = (name: string) => (g.Deno ? g.Deno.env.get(name) : g.process?.env[name])

const main = async () => {
  const port = Number(getEnv("PORT") ?? "8790")
  let handler: Handler
  let close = async () => {}
  if (getEnv("BENCH_TRIVIAL") === "1") handler = trivial
  else {
    const location = parseDatabaseUrl(getEnv("DATABASE_URL") ?? "")
    if (typeof location === "string") throw new Error(location)
    const driver = await openDatabase(location)
    handler = makePlainHandler(sqlPlainStorage(driver), {
      installationTokenSeconds: Number(getEnv("INSTALLATION_TOKEN_TTL_SECONDS")) || 7200
    })
    close = () => driver.close()
  }
  let stop: () => Promise<void>
  if (g.Bun) {
    const server = g.Bun.serve({ hostname: "127.0.0.1", port, development: false, fetch: handler })
    stop = async () => server.stop(false)
  } else if (g.Deno) {
    const server = g.Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, handler)
    stop = () => server.shutdown()
  } else stop = await serveNode(handler, port)
  const exit = () =>
    void stop()
      .then(close)
      .finally(() => (g.Deno ? g.Deno.exit(0) : g.process!.exit(0)))
  if (g.Deno) for (const signal of ["SIGTERM", "SIGINT"]) g.Deno.addSignalListener(signal, exit)
  else for (const signal of ["SIGTERM", "SIGINT"]) g.process!.on(signal, exit)
}

await main()
