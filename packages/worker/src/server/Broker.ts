/**
 * The token broker (SPEC §8) as a server on Node, Deno or Bun: the same broker the Worker serves,
 * configured by the same `BROKER_*` variables from the environment, with its token cache in a
 * database instead of KV (sealed exactly as in KV: see `EncryptedTokenCache`).
 *
 * - Database: `BROKER_DATABASE_URL`, else `DATABASE_URL`, else `sqlite:./icr-apps-broker.db`;
 *   migrated from migrations-broker/ at start (recorded in `broker_migrations`).
 * - `PORT` (default 8788), `HOST` (default 127.0.0.1).
 * - `TRUST_PROXY`: as for the issuer. The broker counts failed attempts per `cf-connecting-ip`,
 *   which only Cloudflare sets truthfully; here that header is always replaced by the TCP peer (or
 *   the trusted proxy's header), so a client cannot pick the address it is counted under.
 * - No service bindings off Cloudflare: callers authenticate with identity tokens.
 */
import { withHeaders } from "@icr-apps/core/edge/Body"
import { clientAddressFrom } from "@icr-apps/core/issuer/Http"
import { makeHandler } from "../broker/Broker.js"
import { brokerMigrations, migrate } from "../sql/migrate.js"
import { DEFAULT_POOL_SIZE, openDatabase, parseDatabaseUrl } from "../sql/open.js"
import { ConfigError, type Environment, integer, publicBaseUrlOf } from "./Config.js"
import type { RunningServer, ServerLog } from "./Issuer.js"
import { consoleLog } from "./Issuer.js"
import { type Listen, type Runtime, runtimeLabel } from "./Listen.js"
import * as SqlKv from "./SqlKv.js"

/** The broker's defaults off Cloudflare. */
export const BROKER_DEFAULTS = {
  DATABASE_URL: "sqlite:./icr-apps-broker.db",
  PORT: 8788,
  HOST: "127.0.0.1"
} as const

const present = (value: string | undefined): value is string => value !== undefined && value.trim() !== ""

/**
 * BROKER_ISSUER_URL as the start-up line shows it: origin and path only — never a `user:password@`
 * (which the broker refuses anyway), a query or a fragment, where an operator may have put a secret.
 */
export const issuerForLog = (value: string | undefined): string => {
  const given = value?.trim() || "https://api.carbonregistry.com"
  try {
    const url = new URL(given)
    return `${url.origin}${url.pathname === "/" ? "" : url.pathname}`
  } catch {
    return "(BROKER_ISSUER_URL is not a URL)"
  }
}

/** The broker's bindings from the environment: every `BROKER_*` variable, as the Worker's vars and secrets. */
export const brokerVars = (env: Environment): Record<string, string> =>
  Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => entry[0].startsWith("BROKER_") && entry[1] !== undefined
    )
  )

/**
 * Starts the broker: opens and migrates its database, listens, says so in one line. A broker whose
 * `BROKER_*` configuration is incomplete still starts (its `/healthz` says what is missing and
 * `/token` answers 503), as on Workers; the server's own variables (`PORT`, the database) must be valid.
 */
export const startBroker = async (
  env: Environment,
  listen: Listen,
  runtime: Runtime,
  log: ServerLog = consoleLog
): Promise<RunningServer> => {
  const problems: Array<string> = []
  const urlVariable = present(env.BROKER_DATABASE_URL) ? "BROKER_DATABASE_URL" : "DATABASE_URL"
  const database = parseDatabaseUrl(env[urlVariable]?.trim() || BROKER_DEFAULTS.DATABASE_URL)
  if (typeof database === "string") problems.push(database.replace(/^DATABASE_URL/, urlVariable))
  const poolSize = integer(env, "DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE, 1, 1000, problems)
  const port = integer(env, "PORT", BROKER_DEFAULTS.PORT, 0, 65535, problems)
  const host = present(env.HOST) ? env.HOST.trim().replace(/^\[(.*)\]$/, "$1") : BROKER_DEFAULTS.HOST
  if (!/^[0-9A-Za-z.:[\]-]+$/.test(host)) problems.push("HOST must be a host name or an IP address")
  const trustProxy = present(env.TRUST_PROXY) ? env.TRUST_PROXY.trim().toLowerCase() : undefined
  if (trustProxy !== undefined && !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(trustProxy))
    problems.push("TRUST_PROXY must be an HTTP header name (for example x-forwarded-for)")
  if (problems.length > 0 || typeof database === "string") throw new ConfigError(problems)

  const driver = await openDatabase(database, { poolSize })
  try {
    const report = await migrate(driver, brokerMigrations(driver.dialect))
    const broker = makeHandler({ ...brokerVars(env), BROKER_CACHE: SqlKv.make(driver) })
    const addressOf = clientAddressFrom(trustProxy)
    const listener = await listen(
      (request, connection) => {
        const headers = new Headers(request.headers)
        headers.delete("cf-connecting-ip")
        const address = addressOf(request, connection)
        if (address !== undefined) headers.set("cf-connecting-ip", address)
        return broker.handler(withHeaders(request, headers))
      },
      { host, port }
    )
    const url = publicBaseUrlOf({ host, publicBaseUrl: undefined }, listener.port)
    const migrated = report.applied.length === 0 ? "" : `, ${report.applied.length} migration(s) applied`
    log.info(
      `icr-apps broker listening on ${url} (${runtimeLabel(runtime)}; cache ${driver.description}${migrated}; ` +
        `issuer ${issuerForLog(env.BROKER_ISSUER_URL)}; GET /healthz says whether it is configured)`
    )
    let stopping: Promise<void> | undefined
    return {
      url,
      publicUrl: url,
      port: listener.port,
      stop: () =>
        (stopping ??= (async () => {
          await listener.close()
          await broker.dispose()
          await driver.close()
        })())
    }
  } catch (error) {
    await driver.close().catch(() => {})
    throw error
  }
}
