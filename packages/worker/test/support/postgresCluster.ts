/**
 * A Postgres primary and streaming standbys of its own, for the standby suites and the scale
 * simulation (STORAGE.md, "Postgres with standbys"): `initdb`, `pg_ctl`, `pg_basebackup` from the
 * server binaries (`ICR_PG_BIN`, default /usr/lib/postgresql/15/bin), each server on a free port
 * in one temporary directory, a standby optionally applying WAL late (`recovery_min_apply_delay`).
 * Run as root (as the project's machines do), the binaries run as the `postgres` user (`runuser`):
 * Postgres refuses to run as root. Never a silent skip: missing binaries fail with what to install.
 * Node only.
 */
import { execFile, execFileSync, spawnSync } from "node:child_process"
import { appendFileSync, chownSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"

const run = promisify(execFile)

/** One standby to start. */
export interface StandbySpec {
  /** Its `application_name` on the primary (what `synchronous_standby_names` names). */
  readonly name: string
  /** `recovery_min_apply_delay` in ms (0: applies at once). */
  readonly applyDelayMs?: number | undefined
}

/** What to start. */
export interface ClusterOptions {
  readonly standbys: ReadonlyArray<StandbySpec>
  /** The primary's `synchronous_standby_names` at start ('' for none). */
  readonly synchronousStandbyNames: string
  /** Where initdb, pg_ctl and pg_basebackup are (default `ICR_PG_BIN`, else /usr/lib/postgresql/15/bin). */
  readonly binDir?: string | undefined
}

/** A standby that runs. */
export interface RunningStandby {
  readonly name: string
  readonly port: number
  readonly url: string
  readonly applyDelayMs: number
}

/** A primary and its standbys, running. */
export interface PostgresCluster {
  /** `PostgreSQL 15.x` as the server says. */
  readonly version: string
  readonly binDir: string
  readonly primaryUrl: string
  readonly standbys: ReadonlyArray<RunningStandby>
  /** One line: which Postgres, where, which standbys (synchronous or not, their delay). */
  readonly describe: () => Promise<string>
  /** Sets the primary's `synchronous_standby_names` and waits until its WAL senders follow it. */
  readonly setSynchronousStandbyNames: (value: string) => Promise<void>
  /** Stops a standby (as a crash would: `-m immediate`). */
  readonly stopStandby: (name: string) => Promise<void>
  /** Starts a stopped standby again and waits until it streams. */
  readonly startStandby: (name: string) => Promise<void>
  /** Stops every server and deletes the directory. */
  readonly stop: () => Promise<void>
}

/** The default place of the server binaries on the project's machines (Debian's postgresql-15). */
export const DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject()))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a primary and `options.standbys`, each streaming from it; waits until all stream. */
export const startPostgresCluster = async (options: ClusterOptions): Promise<PostgresCluster> => {
  const binDir = options.binDir ?? (process.env.ICR_PG_BIN || DEFAULT_PG_BIN)
  const missing = ["initdb", "pg_ctl", "pg_basebackup"].filter((tool) => !existsSync(join(binDir, tool)))
  if (missing.length > 0)
    throw new Error(
      `Postgres server binaries not found in ${binDir} (${missing.join(", ")} missing): install PostgreSQL 15 ` +
        "(Debian: apt-get install postgresql-15) or set ICR_PG_BIN to the directory that holds initdb"
    )
  const asRoot = process.getuid?.() === 0
  const user = asRoot ? "postgres" : undefined
  /** A server binary, as the `postgres` user when this process is root. */
  const tool = (name: string, args: ReadonlyArray<string>) =>
    user === undefined
      ? run(join(binDir, name), [...args])
      : run("runuser", ["-u", user, "--", join(binDir, name), ...args])

  const dir = mkdtempSync(join(tmpdir(), "icr-pg-cluster-"))
  if (user !== undefined) {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim())
    chownSync(dir, uid, gid)
  }
  const started: Array<string> = []
  const stopServers = () => {
    for (const data of started.splice(0).reverse()) {
      const args = [join(binDir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]
      spawnSync(
        user === undefined ? args[0]! : "runuser",
        user === undefined ? args.slice(1) : ["-u", user, "--", ...args],
        {
          stdio: "ignore"
        }
      )
    }
    rmSync(dir, { recursive: true, force: true })
  }
  // A run that dies leaves no server behind.
  process.once("exit", stopServers)
  const urlOf = (port: number) => `postgres://postgres@127.0.0.1:${port}/postgres`

  try {
    const primaryPort = await freePort()
    const primaryDir = join(dir, "primary")
    await tool("initdb", ["-D", primaryDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
    appendFileSync(
      join(primaryDir, "postgresql.conf"),
      [
        `port = ${primaryPort}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        "wal_level = replica",
        "max_wal_senders = 16",
        "hot_standby = on",
        // A test machine's disk: durability on crash is not what these suites measure.
        "fsync = off",
        `synchronous_standby_names = '${options.synchronousStandbyNames.replace(/'/g, "''")}'`,
        ""
      ].join("\n")
    )
    await tool("pg_ctl", ["-D", primaryDir, "-l", join(dir, "primary.log"), "-w", "start"])
    started.push(primaryDir)

    const standbys: Array<RunningStandby> = []
    for (const spec of options.standbys) {
      const port = await freePort()
      const data = join(dir, spec.name)
      await tool("pg_basebackup", [
        "-h",
        "127.0.0.1",
        "-p",
        String(primaryPort),
        "-U",
        "postgres",
        "-D",
        data,
        "-R",
        "-X",
        "stream"
      ])
      // Last setting wins: this primary_conninfo (with the standby's name) replaces pg_basebackup's.
      appendFileSync(
        join(data, "postgresql.auto.conf"),
        [
          `port = ${port}`,
          `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=${spec.name}'`,
          `recovery_min_apply_delay = '${spec.applyDelayMs ?? 0}ms'`,
          ""
        ].join("\n")
      )
      await tool("pg_ctl", ["-D", data, "-l", join(dir, `${spec.name}.log`), "-w", "start"])
      started.push(data)
      standbys.push({ name: spec.name, port, url: urlOf(port), applyDelayMs: spec.applyDelayMs ?? 0 })
    }

    const admin = postgres(urlOf(primaryPort), { max: 1, onnotice: () => {} })
    const streaming = async (deadline: number) => {
      for (;;) {
        const rows = await admin<Array<{ name: string; state: string }>>`
          SELECT application_name AS name, state FROM pg_stat_replication`
        if (standbys.every((s) => rows.some((r) => r.name === s.name && r.state === "streaming"))) return
        if (Date.now() > deadline) throw new Error("the standbys did not start streaming within 30 s")
        await sleep(50)
      }
    }
    await streaming(Date.now() + 30_000)
    const version = (await admin<Array<{ version: string }>>`SELECT current_setting('server_version') AS version`)[0]!
      .version

    let stopped = false
    return {
      version: `PostgreSQL ${version}`,
      binDir,
      primaryUrl: urlOf(primaryPort),
      standbys,
      describe: async () => {
        const rows = await admin<Array<{ name: string; sync_state: string }>>`
          SELECT application_name AS name, sync_state FROM pg_stat_replication ORDER BY application_name`
        const names = (
          await admin<Array<{ names: string }>>`SELECT current_setting('synchronous_standby_names') AS names`
        )[0]!.names
        return (
          `PostgreSQL ${version} (${binDir}): primary 127.0.0.1:${primaryPort} ` +
          `(synchronous_standby_names = '${names}'), standbys ` +
          standbys
            .map(
              (s) =>
                `${s.name} 127.0.0.1:${s.port} ${rows.find((r) => r.name === s.name)?.sync_state ?? "?"}` +
                (s.applyDelayMs > 0 ? ` recovery_min_apply_delay ${s.applyDelayMs} ms` : "")
            )
            .join(", ")
        )
      },
      setSynchronousStandbyNames: async (value) => {
        await admin.unsafe(`ALTER SYSTEM SET synchronous_standby_names = '${value.replace(/'/g, "''")}'`)
        await admin`SELECT pg_reload_conf()`
        const listed = (name: string) => new RegExp(`(^|[\\s,(])${name}([\\s,)]|$)`, "i").test(value)
        const deadline = Date.now() + 10_000
        for (;;) {
          const rows = await admin<Array<{ name: string; sync_state: string }>>`
            SELECT application_name AS name, sync_state FROM pg_stat_replication`
          const settled = standbys.every((s) => {
            const state = rows.find((r) => r.name === s.name)?.sync_state
            return listed(s.name) ? state !== "async" : state === "async"
          })
          if (settled) return
          if (Date.now() > deadline)
            throw new Error(`the primary did not follow synchronous_standby_names = '${value}'`)
          await sleep(20)
        }
      },
      stopStandby: async (name) => {
        await tool("pg_ctl", ["-D", join(dir, name), "-m", "immediate", "-w", "stop"])
      },
      startStandby: async (name) => {
        await tool("pg_ctl", ["-D", join(dir, name), "-l", join(dir, `${name}.log`), "-w", "start"])
        await streaming(Date.now() + 30_000)
      },
      stop: async () => {
        if (stopped) return
        stopped = true
        await admin.end({ timeout: 1 }).catch(() => {})
        process.removeListener("exit", stopServers)
        stopServers()
      }
    }
  } catch (error) {
    process.removeListener("exit", stopServers)
    stopServers()
    throw error
  }
}
