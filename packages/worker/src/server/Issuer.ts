/**
 * The issuer as a server on Node, Deno or Bun (SPEC §9): the configuration from the environment,
 * the database it names (migrated at start, under a lock), the same `makeWebHandler` the Worker
 * serves, and a graceful stop. Audit events are JSON lines on standard output (`{"audit":true,…}`),
 * as on Workers.
 */
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { clientAddressFrom } from "@icr-apps/core/issuer/Http"
import { makeWebHandler, type WebHandler } from "@icr-apps/core/issuer/Issuer"
import type { Registry } from "@icr-apps/core/issuer/Registry"
import * as Layer from "effect/Layer"
import { issuerMigrations, migrate } from "../sql/migrate.js"
import { openDatabase } from "../sql/open.js"
import type { ServerSqlDriver } from "../sql/ServerSql.js"
import { useServerDigest } from "./Digest.js"
import { type Environment, publicBaseUrlOf, readServerConfig, type ServerConfig } from "./Config.js"
import { type Listen, type Runtime, readingBodyAhead, runtimeLabel } from "./Listen.js"
import { rateLimiterLayer, registryLayer } from "./Storage.js"

/** A server that is running. */
export interface RunningServer {
  /** Where it listens (`http://HOST:PORT`; `localhost` for a wildcard HOST). */
  readonly url: string
  /** The origin its URLs are built on: `PUBLIC_BASE_URL`, else {@link url}. */
  readonly publicUrl: string
  readonly port: number
  /** Stops gracefully: no new connections, requests in flight finish, the database closes. */
  readonly stop: () => Promise<void>
}

/** Where a server says what it is doing (standard output and error by default). */
export interface ServerLog {
  readonly info: (line: string) => void
  readonly warn: (line: string) => void
}

/** Lines on the console: information on standard output (beside the audit lines), warnings on standard error. */
export const consoleLog: ServerLog = {
  info: (line) => console.log(line),
  warn: (line) => console.error(line)
}

/** The issuer's web handler over an open database, configured as `config` says. */
export const issuerHandler = (driver: ServerSqlDriver, config: ServerConfig, publicBaseUrl: string): WebHandler => {
  // Token digests by `node:crypto`, at once (the same answer as the Worker's `crypto.subtle`).
  useServerDigest()
  const limiter = rateLimiterLayer(
    config.rateLimitStore,
    driver,
    config.addressRatePerMinute,
    config.principalRatePerMinute
  )
  const storage: Layer.Layer<Registry | Entropy.Entropy> = Layer.mergeAll(registryLayer(driver), Entropy.layer)
  return makeWebHandler(storage, {
    auditLog: AuditLog.layerConsole,
    rateLimiter: limiter,
    adminToken: config.adminToken,
    lifetimes: {
      appTokenSeconds: config.appTokenSeconds,
      installationTokenSeconds: config.installationTokenSeconds
    },
    publicBaseUrl,
    clientAddress: clientAddressFrom(config.trustProxy)
  })
}

/**
 * What the database's own settings would let a crash undo, said at start-up: a kill switch that was
 * acknowledged must survive a crash of the server (SPEC §5: kill switches are final). SQLite's
 * connections set `synchronous = FULL` themselves; a Postgres with `synchronous_commit = off` acknowledges
 * commits it may lose, which the issuer does not override on a lone primary. With `DATABASE_STANDBY_URLS` the
 * issuer sets its sessions' `synchronous_commit` itself (`on`, and `remote_apply` per kill switch).
 */
export const durabilityWarnings = async (driver: ServerSqlDriver): Promise<ReadonlyArray<string>> => {
  if (driver.dialect !== "postgres") return []
  // An engine that speaks Postgres's protocol without this setting is asked nothing more.
  const row = await driver
    .first<{ value: string | null }>("SELECT current_setting('synchronous_commit', true) AS value")
    .catch(() => undefined)
  return row?.value === "off"
    ? [
        "synchronous_commit is off for this database: a kill switch (a revocation, a suspension, a key deletion) " +
          "acknowledged in the last moments before the server crashes can be lost, and the tokens it ended work " +
          "again; set it to on (remote_apply where standbys serve reads)"
      ]
    : []
}

/**
 * Starts the issuer: reads the configuration (throws `ConfigError`), opens and migrates the
 * database, listens, and says so in one line. Nothing is left open when it fails.
 */
export const startIssuer = async (
  env: Environment,
  listen: Listen,
  runtime: Runtime,
  log: ServerLog = consoleLog
): Promise<RunningServer> => {
  const config = readServerConfig(env)
  for (const warning of config.warnings) log.warn(`warning: ${warning}`)
  const driver = await openDatabase(config.database, {
    poolSize: config.poolSize,
    standbyUrls: config.standbyUrls,
    standbyApplyTimeoutMs: config.standbyApplyTimeoutMs,
    onWarning: (line) => log.warn(`warning: ${line}`)
  })
  let handler: WebHandler | undefined
  try {
    const report = await migrate(driver, issuerMigrations(driver.dialect))
    if (report.unknown.length > 0)
      log.warn(
        `warning: the database has migrations this version does not know (${report.unknown.join(", ")}): ` +
          "it was migrated by a newer version"
      )
    for (const warning of await durabilityWarnings(driver)) log.warn(`warning: ${warning}`)
    const listener = await listen(
      // The edge reads a small body as the server read it ahead: it needs no copy of it.
      readingBodyAhead((request, connection) =>
        handler === undefined ? Promise.resolve(notReady()) : handler.answer(request, connection)
      ),
      { host: config.host, port: config.port }
    )
    const url = publicBaseUrlOf({ host: config.host, publicBaseUrl: undefined }, listener.port)
    const publicUrl = publicBaseUrlOf(config, listener.port)
    handler = issuerHandler(driver, config, publicUrl)
    const operator =
      config.adminToken !== undefined ? "on" : `off (${config.adminTokenProblem ?? "ADMIN_TOKEN is not set"})`
    const migrated = report.applied.length === 0 ? "" : `, ${report.applied.length} migration(s) applied`
    log.info(
      `icr-apps issuer listening on ${url} (${runtimeLabel(runtime)}; ` +
        (publicUrl === url ? "" : `public URL ${publicUrl}; `) +
        `database ${driver.description}${migrated}; ` +
        `operator API ${operator})`
    )
    let stopping: Promise<void> | undefined
    return {
      url,
      publicUrl,
      port: listener.port,
      stop: () =>
        (stopping ??= (async () => {
          await listener.close()
          await handler?.dispose()
          await driver.close()
        })())
    }
  } catch (error) {
    await driver.close().catch(() => {})
    throw error
  }
}

/** Between listening and the handler being built (a few microseconds): 503, never a crash. */
const notReady = () => new Response(null, { status: 503, headers: { "retry-after": "1", "cache-control": "no-store" } })
