/**
 * The server's configuration, from the environment (SPEC §9). Every problem is collected, so an
 * operator sees all of them at once; a message names the variable and what it must be, and never
 * quotes a value (a `DATABASE_URL` holds a password, `ADMIN_TOKEN` is one).
 */
import * as Redacted from "effect/Redacted"
import { MIN_ADMIN_TOKEN_LENGTH } from "@icr-apps/core/issuer/Issuer"
import type { RateLimitStore } from "./Storage.js"
import { type DatabaseLocation, DEFAULT_POOL_SIZE, parseDatabaseUrl } from "../sql/open.js"

/** The environment, as `process.env` or `Deno.env.toObject()` give it. */
export type Environment = Readonly<Record<string, string | undefined>>

/** The issuer's server settings, once valid. */
export interface ServerConfig {
  readonly database: DatabaseLocation
  /** Connections in the Postgres pool (`DATABASE_POOL_SIZE`, default 10). */
  readonly poolSize: number
  /**
   * Synchronous standbys of a Postgres `DATABASE_URL` that may serve the token-standing read
   * (`DATABASE_STANDBY_URLS`, comma-separated); empty: every read goes to the primary.
   */
  readonly standbyUrls: ReadonlyArray<string>
  /** Most a kill switch waits for every synchronous standby to apply it before 503 (`DATABASE_STANDBY_APPLY_TIMEOUT_MS`). */
  readonly standbyApplyTimeoutMs: number
  /** 0 asks the system for a free port (tests). */
  readonly port: number
  readonly host: string
  /** Absent, or too short to enable the operator API (then `adminTokenProblem` says why). */
  readonly adminToken: Redacted.Redacted<string> | undefined
  readonly adminTokenProblem: string | undefined
  readonly appTokenSeconds: number
  readonly installationTokenSeconds: number
  /** `PUBLIC_BASE_URL` without a trailing slash; absent: built from host and port ({@link publicBaseUrlOf}). */
  readonly publicBaseUrl: string | undefined
  /** The header, lower-case, that names the client address; absent: the TCP peer. */
  readonly trustProxy: string | undefined
  /** Per minute; 0 turns the budget off. */
  readonly addressRatePerMinute: number
  readonly principalRatePerMinute: number
  /** Where budgets are counted: this process (default) or the database, shared by every instance. */
  readonly rateLimitStore: RateLimitStore
  /** Said once at start-up (on standard error), not failures. */
  readonly warnings: ReadonlyArray<string>
}

/** SPEC §9's defaults. */
export const DEFAULTS = {
  DATABASE_URL: "sqlite:./icr-apps.db",
  PORT: 8787,
  HOST: "127.0.0.1",
  APP_TOKEN_TTL_SECONDS: 3600,
  INSTALLATION_TOKEN_TTL_SECONDS: 7200,
  ADDRESS_RATE_LIMIT_PER_MINUTE: 600,
  PRINCIPAL_RATE_LIMIT_PER_MINUTE: 1200,
  DATABASE_STANDBY_APPLY_TIMEOUT_MS: 5000
} as const

/** The configuration is not valid: every problem, each naming its variable. */
export class ConfigError extends Error {
  constructor(readonly problems: ReadonlyArray<string>) {
    super(problems.join("; "))
    this.name = "ConfigError"
  }
}

const present = (value: string | undefined): value is string => value !== undefined && value.trim() !== ""

/** Reads an integer variable in `[min, max]`, or records why it is not one. */
export const integer = (
  env: Environment,
  name: string,
  fallback: number,
  min: number,
  max: number,
  problems: Array<string>
): number => {
  const raw = env[name]
  if (!present(raw)) return fallback
  const text = raw.trim()
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (Number.isSafeInteger(n) && n >= min && n <= max) return n
  problems.push(`${name} must be an integer from ${min} to ${max}`)
  return fallback
}

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** Whether `host` is a wildcard address (every interface). */
export const isWildcardHost = (host: string): boolean => host === "0.0.0.0" || host === "::"

/** Reads a `PUBLIC_BASE_URL`: an absolute http(s) URL, no credentials, query or fragment. */
const baseUrl = (raw: string, problems: Array<string>): string | undefined => {
  const problem = "PUBLIC_BASE_URL must be an absolute http:// or https:// URL without credentials, query or fragment"
  let url: URL
  try {
    url = new URL(raw.trim())
  } catch {
    problems.push(problem)
    return undefined
  }
  if (
    (url.protocol !== "http:" && url.protocol !== "https:") ||
    url.username !== "" ||
    url.password !== "" ||
    url.search !== "" ||
    url.hash !== ""
  ) {
    problems.push(problem)
    return undefined
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, "")
}

/** Reads the issuer's server configuration; throws {@link ConfigError} naming every problem. */
export const readServerConfig = (env: Environment): ServerConfig => {
  const problems: Array<string> = []
  const warnings: Array<string> = []

  const parsed = parseDatabaseUrl(present(env.DATABASE_URL) ? env.DATABASE_URL.trim() : DEFAULTS.DATABASE_URL)
  if (typeof parsed === "string") problems.push(parsed)
  const poolSize = integer(env, "DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE, 1, 1000, problems)
  const standbyUrls: Array<string> = []
  if (present(env.DATABASE_STANDBY_URLS)) {
    const urls = env.DATABASE_STANDBY_URLS.split(",").map((url) => url.trim())
    if (typeof parsed !== "string" && parsed.kind !== "postgres")
      problems.push("DATABASE_STANDBY_URLS needs a postgres:// DATABASE_URL (the primary)")
    urls.forEach((url, i) => {
      // Said by position: a URL may hold a password.
      const standby = url === "" ? "is empty" : parseDatabaseUrl(url)
      if (typeof standby === "string" || standby.kind !== "postgres")
        problems.push(`DATABASE_STANDBY_URLS entry ${i + 1} must be a postgres:// URL of a synchronous standby`)
      else standbyUrls.push(standby.url)
    })
  }
  const standbyApplyTimeoutMs = integer(
    env,
    "DATABASE_STANDBY_APPLY_TIMEOUT_MS",
    DEFAULTS.DATABASE_STANDBY_APPLY_TIMEOUT_MS,
    100,
    600_000,
    problems
  )

  const port = integer(env, "PORT", DEFAULTS.PORT, 0, 65535, problems)
  // `[::1]` as in a URL is `::1` to listen on.
  const host = present(env.HOST) ? env.HOST.trim().replace(/^\[(.*)\]$/, "$1") : DEFAULTS.HOST
  if (!/^[0-9A-Za-z.:[\]-]+$/.test(host)) problems.push("HOST must be a host name or an IP address")

  let adminToken: Redacted.Redacted<string> | undefined
  let adminTokenProblem: string | undefined
  if (env.ADMIN_TOKEN !== undefined && env.ADMIN_TOKEN !== "") {
    if (env.ADMIN_TOKEN.length < MIN_ADMIN_TOKEN_LENGTH) {
      adminTokenProblem = `ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters`
      warnings.push(`${adminTokenProblem}: the operator API stays off (403 admin_disabled)`)
    } else adminToken = Redacted.make(env.ADMIN_TOKEN)
  }

  // A token shorter than a minute is refused: clients refresh ahead of expiry by about that much.
  const appTokenSeconds = integer(env, "APP_TOKEN_TTL_SECONDS", DEFAULTS.APP_TOKEN_TTL_SECONDS, 60, 86400, problems)
  const installationTokenSeconds = integer(
    env,
    "INSTALLATION_TOKEN_TTL_SECONDS",
    DEFAULTS.INSTALLATION_TOKEN_TTL_SECONDS,
    60,
    86400,
    problems
  )

  const publicBaseUrl = present(env.PUBLIC_BASE_URL) ? baseUrl(env.PUBLIC_BASE_URL, problems) : undefined
  if (publicBaseUrl === undefined && isWildcardHost(host) && problems.length === 0)
    warnings.push(
      `PUBLIC_BASE_URL is not set and HOST ${host} listens on every interface: URLs the issuer returns ` +
        "(accessTokensUrl, Link) name localhost; set PUBLIC_BASE_URL to the address clients use"
    )

  let trustProxy: string | undefined
  if (present(env.TRUST_PROXY)) {
    const name = env.TRUST_PROXY.trim()
    if (HEADER_NAME.test(name)) trustProxy = name.toLowerCase()
    else problems.push("TRUST_PROXY must be an HTTP header name (for example x-forwarded-for or cf-connecting-ip)")
  }

  const addressRatePerMinute = integer(
    env,
    "ADDRESS_RATE_LIMIT_PER_MINUTE",
    DEFAULTS.ADDRESS_RATE_LIMIT_PER_MINUTE,
    0,
    1_000_000_000,
    problems
  )
  const principalRatePerMinute = integer(
    env,
    "PRINCIPAL_RATE_LIMIT_PER_MINUTE",
    DEFAULTS.PRINCIPAL_RATE_LIMIT_PER_MINUTE,
    0,
    1_000_000_000,
    problems
  )

  let rateLimitStore: RateLimitStore = "memory"
  if (present(env.RATE_LIMIT_STORE)) {
    const store = env.RATE_LIMIT_STORE.trim()
    if (store === "memory" || store === "database") rateLimitStore = store
    else problems.push("RATE_LIMIT_STORE must be memory or database")
  }

  if (problems.length > 0 || typeof parsed === "string") throw new ConfigError(problems)
  return {
    database: parsed,
    poolSize,
    standbyUrls,
    standbyApplyTimeoutMs,
    port,
    host,
    adminToken,
    adminTokenProblem,
    appTokenSeconds,
    installationTokenSeconds,
    publicBaseUrl,
    trustProxy,
    addressRatePerMinute,
    principalRatePerMinute,
    rateLimitStore,
    warnings
  }
}

/**
 * The origin URLs are built on: `PUBLIC_BASE_URL`, else the configured host and the port the server
 * listens on — never a client's `Host` header (SPEC §9). A wildcard host becomes `localhost`.
 */
export const publicBaseUrlOf = (config: Pick<ServerConfig, "publicBaseUrl" | "host">, port: number): string => {
  if (config.publicBaseUrl !== undefined) return config.publicBaseUrl
  const host = isWildcardHost(config.host) ? "localhost" : config.host
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host
  return `http://${bracketed}:${port}`
}
