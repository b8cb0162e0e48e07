#!/usr/bin/env node
/**
 * `icr-apps-issuer`: serves the issuer (or the broker) off Cloudflare, on whichever runtime runs it.
 *
 *   npx icr-apps-issuer serve                     Node (>= 20)
 *   deno run -A <package>/dist/server/cli.js serve  Deno 2
 *   bun <package>/dist/server/cli.js serve          Bun 1
 *
 * Configured by the environment (SPEC §9); SIGTERM or SIGINT stops it gracefully (exit 0).
 */
import { readFileSync } from "node:fs"
import process from "node:process"
import { ConfigError } from "./Config.js"
import type { RunningServer } from "./Issuer.js"
import { currentRuntime, listenerFor } from "./Listen.js"

/** The package's version (this file is src/server/cli.ts, or dist/server/cli.js once built). */
const version = () =>
  (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version

const USAGE = `usage: icr-apps-issuer <command>

commands:
  serve     serve the issuer (SPEC §9)
  broker    serve the token broker (SPEC §8)
  migrate   apply the issuer's pending migrations to DATABASE_URL, then exit
  copy --from <DATABASE_URL> --to <DATABASE_URL>
            move an issuer's data to another database (SQLite to Postgres, or back); the target
            must hold no app; stop the servers on the source first (STORAGE.md). A password
            in a URL here is visible to every account on the machine: give it in PGPASSWORD

options:
  --help     show this
  --version  show the version

the issuer's environment (defaults in brackets):
  DATABASE_URL                      sqlite:<path> or postgres://user:password@host:port/db  [sqlite:./icr-apps.db]
  DATABASE_POOL_SIZE                Postgres connections  [10]
  DATABASE_STANDBY_URLS             synchronous standbys (comma-separated) that may serve token standing  [none]
  DATABASE_STANDBY_APPLY_TIMEOUT_MS a kill switch's wait for every standby to apply it, then 503  [5000]
  PORT                              [8787]
  HOST                              the address to listen on  [127.0.0.1]
  ADMIN_TOKEN                       at least 32 characters: turns the operator API on  [off]
  APP_TOKEN_TTL_SECONDS             [3600]
  INSTALLATION_TOKEN_TTL_SECONDS    [7200]
  PUBLIC_BASE_URL                   the origin clients reach it on  [http://HOST:PORT]
  TRUST_PROXY                       the header that names the client address  [none: the TCP peer]
  ADDRESS_RATE_LIMIT_PER_MINUTE     per client address, 0 = off, per process  [600]
  PRINCIPAL_RATE_LIMIT_PER_MINUTE   per app or installation, 0 = off, per process  [1200]
  RATE_LIMIT_STORE                  memory (per process) or database (shared by every instance)  [memory]

the broker's: the BROKER_* variables of SPEC §8, and
  BROKER_DATABASE_URL               its token cache  [DATABASE_URL, else sqlite:./icr-apps-broker.db]
  PORT  [8788]   HOST  [127.0.0.1]   TRUST_PROXY  [none]
`

/** The process that started this one, taken first thing: it may be gone before the server listens. */
const parent = process.ppid

/**
 * Stops `server` on SIGTERM or SIGINT, then exits 0; a second signal exits at once. Started by a
 * package manager (`npx icr-apps-issuer serve`: npm, then `sh -c`, then this), it also stops when its
 * parent goes away: npm passes a SIGTERM to that shell only, which dies without passing it on, and
 * this would go on serving with nobody left to stop it.
 */
const stopOnSignal = (server: RunningServer, what: string) => {
  let stopping = false
  const stop = (why: string) => {
    stopping = true
    // Whoever read the logs may be gone (npm was): a write to a closed pipe must not end this early.
    for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})
    console.error(`${what}: ${why}: finishing requests in flight, then stopping`)
    server.stop().then(
      () => {
        console.error(`${what}: stopped`)
        process.exit(0)
      },
      (error: unknown) => {
        console.error(`${what}: stopping failed: ${error instanceof Error ? error.message : String(error)}`)
        process.exit(1)
      }
    )
  }
  const onSignal = (signal: string) => {
    if (!stopping) return stop(signal)
    console.error(`${what}: ${signal} again, exiting now`)
    process.exit(1)
  }
  process.on("SIGTERM", () => onSignal("SIGTERM"))
  process.on("SIGINT", () => onSignal("SIGINT"))
  if (process.env.npm_lifecycle_event !== undefined || process.env.npm_command !== undefined) {
    const parentGone = () => !stopping && process.ppid !== parent && stop("the process that started it is gone")
    const watch = setInterval(parentGone, 500)
    // The server keeps the process alive, not this watch.
    ;(watch as { unref?: () => void }).unref?.()
  }
}

/** Says why it could not start, without a stack (nor anything a message might not already redact). */
const fail = (what: string, error: unknown): never => {
  if (error instanceof ConfigError) for (const problem of error.problems) console.error(`${what}: ${problem}`)
  else console.error(`${what}: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}

const main = async (args: ReadonlyArray<string>) => {
  const command = args[0]
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE)
    return process.exit(command === undefined ? 2 : 0)
  }
  if (command === "--version" || command === "-v") {
    console.log(version())
    return process.exit(0)
  }
  const runtime = currentRuntime()
  const env = process.env
  if (command === "serve") {
    const { startIssuer } = await import("./Issuer.js")
    const server = await startIssuer(env, await listenerFor(runtime), runtime).catch((e) => fail("icr-apps-issuer", e))
    return stopOnSignal(server, "icr-apps-issuer")
  }
  if (command === "broker") {
    const { startBroker } = await import("./Broker.js")
    const server = await startBroker(env, await listenerFor(runtime), runtime).catch((e) => fail("icr-apps-broker", e))
    return stopOnSignal(server, "icr-apps-broker")
  }
  if (command === "migrate") {
    const { readServerConfig } = await import("./Config.js")
    const { openDatabase } = await import("../sql/open.js")
    const { issuerMigrations, migrate } = await import("../sql/migrate.js")
    try {
      const config = readServerConfig(env)
      const driver = await openDatabase(config.database, { poolSize: 1 })
      try {
        const report = await migrate(driver, issuerMigrations(driver.dialect))
        console.log(
          `${driver.description}: ${report.applied.length} migration(s) applied` +
            (report.applied.length > 0 ? ` (${report.applied.join(", ")})` : "") +
            `, ${report.recorded.length} recorded`
        )
      } finally {
        await driver.close()
      }
      return process.exit(0)
    } catch (error) {
      return fail("icr-apps-issuer", error)
    }
  }
  if (command === "copy") {
    const { parseDatabaseUrl, openDatabase } = await import("../sql/open.js")
    const { copyIssuerData } = await import("./Copy.js")
    const option = (name: string) => {
      const at = args.indexOf(name)
      return at > 0 ? args[at + 1] : undefined
    }
    const [from, to] = [option("--from"), option("--to")].map((url, i) => {
      const location = parseDatabaseUrl(url ?? "")
      // The message says what is wrong with the URL without quoting it (it may hold a password).
      if (typeof location === "string")
        fail("icr-apps-issuer copy", new Error(`${i === 0 ? "--from" : "--to"}: ${location}`))
      return location as Exclude<typeof location, string>
    }) as [Exclude<ReturnType<typeof parseDatabaseUrl>, string>, Exclude<ReturnType<typeof parseDatabaseUrl>, string>]
    try {
      const source = await openDatabase(from, { poolSize: 1 })
      const target = await openDatabase(to, { poolSize: 1 })
      try {
        const report = await copyIssuerData(source, target)
        console.log(
          `copied ${source.description} to ${target.description}: ` +
            Object.entries(report)
              .map(([table, n]) => `${n} ${table}`)
              .join(", ")
        )
      } finally {
        await source.close()
        await target.close()
      }
      return process.exit(0)
    } catch (error) {
      return fail("icr-apps-issuer copy", error)
    }
  }
  console.error(`icr-apps-issuer: unknown command ${JSON.stringify(command.slice(0, 40))}\n\n${USAGE}`)
  process.exit(2)
}

await main(process.argv.slice(2))
