/**
 * The server's configuration (SPEC §9): names and defaults, every invalid value named by its
 * variable and never quoted, URLs built on the configured host (never a client's `Host`), and the
 * CLI exiting 1 with those messages.
 */
import { describe, expect, it } from "vitest"
import * as Redacted from "effect/Redacted"
import { ConfigError, publicBaseUrlOf, readServerConfig } from "../../src/server/Config.js"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { cli, runFile, worker } from "./support.js"

const problemsOf = (env: Record<string, string>) => {
  try {
    readServerConfig(env)
    return []
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as ConfigError).problems
  }
}

describe("server configuration", () => {
  it("SPEC §9's defaults", () => {
    const config = readServerConfig({})
    expect({ ...config, adminToken: undefined }).toEqual({
      database: { kind: "sqlite", path: "./icr-apps.db" },
      poolSize: 10,
      standbyUrls: [],
      standbyApplyTimeoutMs: 5000,
      port: 8787,
      host: "127.0.0.1",
      adminToken: undefined,
      adminTokenProblem: undefined,
      appTokenSeconds: 3600,
      installationTokenSeconds: 7200,
      publicBaseUrl: undefined,
      trustProxy: undefined,
      addressRatePerMinute: 600,
      principalRatePerMinute: 1200,
      rateLimitStore: "memory",
      warnings: []
    })
    expect(publicBaseUrlOf(config, 8787)).toBe("http://127.0.0.1:8787")
  })

  it("reads every variable", () => {
    const token = "a".repeat(32)
    const config = readServerConfig({
      DATABASE_URL: "postgresql://icr:pw@db:5432/icr",
      DATABASE_POOL_SIZE: "25",
      PORT: "9000",
      HOST: "::1",
      ADMIN_TOKEN: token,
      APP_TOKEN_TTL_SECONDS: "600",
      INSTALLATION_TOKEN_TTL_SECONDS: "900",
      PUBLIC_BASE_URL: "https://icr.example.com/",
      TRUST_PROXY: "X-Forwarded-For",
      ADDRESS_RATE_LIMIT_PER_MINUTE: "0",
      PRINCIPAL_RATE_LIMIT_PER_MINUTE: "50",
      RATE_LIMIT_STORE: "database",
      DATABASE_STANDBY_URLS: "postgres://icr:pw@standby-1:5432/icr, postgres://icr:pw@standby-2:5432/icr",
      DATABASE_STANDBY_APPLY_TIMEOUT_MS: "2000"
    })
    expect(config.standbyUrls).toEqual(["postgres://icr:pw@standby-1:5432/icr", "postgres://icr:pw@standby-2:5432/icr"])
    expect(config.standbyApplyTimeoutMs).toBe(2000)
    expect(config.database).toEqual({ kind: "postgres", url: "postgresql://icr:pw@db:5432/icr" })
    expect(config.adminToken && Redacted.value(config.adminToken)).toBe(token)
    expect(config).toMatchObject({
      poolSize: 25,
      port: 9000,
      host: "::1",
      appTokenSeconds: 600,
      installationTokenSeconds: 900,
      publicBaseUrl: "https://icr.example.com",
      trustProxy: "x-forwarded-for",
      addressRatePerMinute: 0,
      principalRatePerMinute: 50,
      rateLimitStore: "database",
      warnings: []
    })
    expect(publicBaseUrlOf(config, 9000)).toBe("https://icr.example.com")
    expect(publicBaseUrlOf({ host: "::1", publicBaseUrl: undefined }, 9000)).toBe("http://[::1]:9000")
    expect(readServerConfig({ HOST: "[::1]" }).host).toBe("::1")
    expect(publicBaseUrlOf(readServerConfig({ HOST: "[::]" }), 80)).toBe("http://localhost:80")
  })

  it("a wildcard HOST without PUBLIC_BASE_URL builds URLs on localhost, with a warning", () => {
    const config = readServerConfig({ HOST: "0.0.0.0" })
    expect(publicBaseUrlOf(config, 8787)).toBe("http://localhost:8787")
    expect(config.warnings).toEqual([
      "PUBLIC_BASE_URL is not set and HOST 0.0.0.0 listens on every interface: URLs the issuer returns " +
        "(accessTokensUrl, Link) name localhost; set PUBLIC_BASE_URL to the address clients use"
    ])
  })

  it("a short ADMIN_TOKEN keeps the operator API off, with a warning that does not quote it", () => {
    const config = readServerConfig({ ADMIN_TOKEN: "short-secret-value" })
    expect(config.adminToken).toBeUndefined()
    expect(config.adminTokenProblem).toBe("ADMIN_TOKEN is shorter than 32 characters")
    expect(config.warnings.join()).not.toContain("short-secret-value")
  })

  it("names each invalid variable, all at once, without quoting a value", () => {
    const secret = "hunter2-secret"
    const problems = problemsOf({
      DATABASE_URL: `mysql://root:${secret}@db/icr`,
      DATABASE_POOL_SIZE: "0",
      PORT: "80a",
      HOST: "bad host!",
      APP_TOKEN_TTL_SECONDS: "59",
      INSTALLATION_TOKEN_TTL_SECONDS: "1.5",
      PUBLIC_BASE_URL: `https://user:${secret}@icr.example.com`,
      TRUST_PROXY: "x forwarded",
      ADDRESS_RATE_LIMIT_PER_MINUTE: "-1",
      PRINCIPAL_RATE_LIMIT_PER_MINUTE: "lots",
      RATE_LIMIT_STORE: "redis"
    })
    expect(problems).toEqual([
      "DATABASE_URL must be sqlite:<path> or postgres://user:password@host:port/database",
      "DATABASE_POOL_SIZE must be an integer from 1 to 1000",
      "PORT must be an integer from 0 to 65535",
      "HOST must be a host name or an IP address",
      "APP_TOKEN_TTL_SECONDS must be an integer from 60 to 86400",
      "INSTALLATION_TOKEN_TTL_SECONDS must be an integer from 60 to 86400",
      "PUBLIC_BASE_URL must be an absolute http:// or https:// URL without credentials, query or fragment",
      "TRUST_PROXY must be an HTTP header name (for example x-forwarded-for or cf-connecting-ip)",
      "ADDRESS_RATE_LIMIT_PER_MINUTE must be an integer from 0 to 1000000000",
      "PRINCIPAL_RATE_LIMIT_PER_MINUTE must be an integer from 0 to 1000000000",
      "RATE_LIMIT_STORE must be memory or database"
    ])
    expect(problemsOf({ DATABASE_URL: "sqlite:" })).toEqual([
      "DATABASE_URL sqlite: needs a path (sqlite:./icr-apps.db)"
    ])
    expect(problemsOf({ DATABASE_URL: `postgres://u:${secret}@[::1` })).toEqual([
      "DATABASE_URL is not a valid postgres:// URL"
    ])
    // A password with a bare % (not percent-encoded): said at once, never "URI malformed" at start-up.
    expect(problemsOf({ DATABASE_URL: `postgres://u:${secret}%zz@db/icr` })).toEqual([
      "DATABASE_URL: the user name or password is not percent-encoded (write % as %25)"
    ])
    expect(problemsOf({ DATABASE_URL: `postgres://u%:${secret}@db/icr` })).toEqual([
      "DATABASE_URL: the user name or password is not percent-encoded (write % as %25)"
    ])
  })

  it("standbys: postgres:// URLs beside a postgres:// primary, said by position without quoting them", () => {
    const secret = "pw-never-echoed-7c1d"
    expect(
      problemsOf({
        DATABASE_URL: "sqlite:./icr-apps.db",
        DATABASE_STANDBY_URLS: `postgres://u:${secret}@standby/icr,,mysql://u:${secret}@db/icr`,
        DATABASE_STANDBY_APPLY_TIMEOUT_MS: "10"
      })
    ).toEqual([
      "DATABASE_STANDBY_URLS needs a postgres:// DATABASE_URL (the primary)",
      "DATABASE_STANDBY_URLS entry 2 must be a postgres:// URL of a synchronous standby",
      "DATABASE_STANDBY_URLS entry 3 must be a postgres:// URL of a synchronous standby",
      "DATABASE_STANDBY_APPLY_TIMEOUT_MS must be an integer from 100 to 600000"
    ])
  })

  it("the CLI exits 1 naming the variables, never echoing a secret", async () => {
    const secret = "pw-never-echoed-0b5e"
    const { code, stdout, stderr } = await runFile("node", cli, ["serve"], {
      PATH: process.env.PATH,
      PORT: "http",
      DATABASE_URL: `mysql://root:${secret}@db/icr`,
      ADMIN_TOKEN: secret
    })
    expect(stderr.trim().split("\n")).toEqual([
      "icr-apps-issuer: DATABASE_URL must be sqlite:<path> or postgres://user:password@host:port/database",
      "icr-apps-issuer: PORT must be an integer from 0 to 65535"
    ])
    expect(stdout).toBe("")
    expect(code).toBe(1)
  }, 60_000)

  it("--help, --version, and an unknown command", async () => {
    const help = await runFile("node", cli, ["--help"])
    expect(help.stdout).toMatch(/^usage: icr-apps-issuer <command>/)
    expect(help.stdout).toContain("DATABASE_URL")
    expect(help.code).toBe(0)
    const version = await runFile("node", cli, ["--version"])
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(worker, "package.json"), "utf8")).version)
    const unknown = await runFile("node", cli, ["serv"])
    expect(unknown.stderr).toMatch(/^icr-apps-issuer: unknown command "serv"/)
    expect(unknown.code).toBe(2)
  }, 60_000)
})
