/**
 * Per-shard throughput for `npm run bench:scale`, measured under miniflare (local workerd): one shard
 * as a D1 database and one as a SQLite-backed Durable Object, each behind a tiny bench Worker
 * ({@link WORKER}) that answers
 *
 * - a token use with the token-standing statement (SqlStatements.TOKEN_STANDING_SQL, one statement
 *   per use) — D1: through the binding; Durable Object: the Worker forwards the request to the object
 *   (one Durable Object request), which runs the statement;
 * - a mint with the registry's own read (the app, its keys, the installation) and write (prune +
 *   insert), as SqlRegistry issues them: captured from it here and replayed with a fresh digest —
 *   D1: two batches, as the issuer does; Durable Object: both in one request, one transaction.
 *
 * Both shards hold the same rows, written by the real registry (an app, an installation, the tokens
 * the uses present). The load comes from this process through `dispatchFetch`, a fixed number of
 * requests in flight; each answer carries the rows the statement read and wrote (D1's `meta`, the
 * SQL cursor's `rowsRead`/`rowsWritten`), which the cost model bills.
 */
import { canonical, type Permissions } from "@icr-apps/core/api/Permissions"
import { StoredToken } from "@icr-apps/core/api/Tokens"
import { digestOf } from "@icr-apps/core/issuer/AccessTokens"
import type { SqlDriver, SqlStatement } from "@icr-apps/core/issuer/Sql"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { TOKEN_STANDING_SQL } from "@icr-apps/core/issuer/SqlStatements"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Miniflare } from "miniflare"
import { issuerMigrations, migrate } from "../src/sql/migrate.js"
import { openSqlite } from "../src/sql/sqlite.js"
import { percentile } from "./scale-model.js"

/** What one design measured. */
export interface DesignMeasurement {
  readonly usesPerSecond: number
  readonly mintsPerSecond: number
  /** Uses/s with each use a request from this process (dispatchFetch): bounded by the harness. */
  readonly usesPerSecondEndToEnd: number
  readonly useLatencyMs: { readonly p50: number; readonly p99: number }
  readonly mintLatencyMs: { readonly p50: number; readonly p99: number }
  readonly rowsReadPerUse: number
  readonly rowsReadPerMint: number
  readonly rowsWrittenPerMint: number
  /**
   * The time the database itself reported for a use's statement (D1's `meta.duration`, ms; 0 for the
   * Durable Object, whose SQL API reports none): what one-at-a-time execution would allow, 1000 ÷ this.
   */
  readonly statementMsPerUse: number
  /** Answers that were not 200 (each is a failed measurement, reported). */
  readonly failures: number
}

/** Both designs, measured in this run. */
export interface ShardMeasurements {
  readonly d1: DesignMeasurement
  readonly durableObject: DesignMeasurement
  readonly concurrency: number
  readonly seconds: number
  readonly tokens: number
  readonly how: string
}

/**
 * The bench Worker. `/d1/*` runs on the D1 binding; `/do/*` is forwarded to the one Durable Object
 * (the shard), which runs the same statements on its own SQLite. Every answer: `{ rowsRead, rowsWritten }`.
 */
const WORKER = `
import { DurableObject } from "cloudflare:workers"

const hexDigest = () => {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  let out = ""
  for (const b of bytes) out += b.toString(16).padStart(2, "0")
  return out
}
/** The mint's statements with a fresh digest where the captured one was. */
const freshMint = (mint) => {
  const write = mint.write.map((s) => ({ sql: s.sql, params: [...s.params] }))
  write[mint.digestAt[0]].params[mint.digestAt[1]] = hexDigest()
  return { read: mint.read, write }
}

/** One shard as a SQLite-backed Durable Object: each method call is one Durable Object request. */
export class Shard extends DurableObject {
  run(statement) {
    const cursor = this.ctx.storage.sql.exec(statement.sql, ...statement.params)
    const rows = cursor.toArray()
    return { rows, rowsRead: cursor.rowsRead, rowsWritten: cursor.rowsWritten }
  }
  use(digest) {
    const r = this.run({ sql: this.env.STANDING, params: [digest] })
    return { ok: r.rows.length === 1, rowsRead: r.rowsRead, rowsWritten: r.rowsWritten }
  }
  mint(template) {
    const mint = freshMint(template)
    let rowsRead = 0
    let rowsWritten = 0
    this.ctx.storage.transactionSync(() => {
      for (const s of [...mint.read, ...mint.write]) {
        const r = this.run(s)
        rowsRead += r.rowsRead
        rowsWritten += r.rowsWritten
      }
    })
    return { ok: true, rowsRead, rowsWritten }
  }
  setup(statements) {
    for (const s of statements) this.run(s)
    return { ok: true, rowsRead: 0, rowsWritten: 0 }
  }
}

const d1Batch = async (db, statements) => {
  const results = await db.batch(statements.map((s) => db.prepare(s.sql).bind(...s.params)))
  let rowsRead = 0
  let rowsWritten = 0
  for (const r of results) {
    rowsRead += r.meta.rows_read ?? 0
    rowsWritten += r.meta.rows_written ?? 0
  }
  return { rowsRead, rowsWritten }
}

/** One use or mint on a design's shard, as the issuer's Worker would make it. */
const operations = (env) => {
  const shard = () => env.SHARD.get(env.SHARD.idFromName("shard-0"))
  return {
    d1: {
      // As the issuer's D1 driver reads a token's standing: first(). A metered use asks all() instead,
      // for D1's meta (rows read, the statement's own time), which first() does not return.
      use: async (digest, metered) => {
        const statement = env.DB.prepare(env.STANDING).bind(digest)
        if (!metered) return { ok: (await statement.first()) !== null }
        const r = await statement.all()
        return {
          ok: r.results.length === 1,
          rowsRead: r.meta.rows_read ?? 0,
          rowsWritten: r.meta.rows_written ?? 0,
          statementMs: r.meta.duration ?? 0
        }
      },
      // Two round trips, as the issuer makes them: the read (with the JWT check), then the write.
      mint: async (template) => {
        const mint = freshMint(template)
        const read = await d1Batch(env.DB, mint.read)
        const write = await d1Batch(env.DB, mint.write)
        return { ok: true, rowsRead: read.rowsRead + write.rowsRead, rowsWritten: read.rowsWritten + write.rowsWritten }
      },
      setup: async (statements) => {
        for (const s of statements) await env.DB.prepare(s.sql).bind(...s.params).run()
        return { ok: true, rowsRead: 0, rowsWritten: 0 }
      }
    },
    do: {
      use: (digest) => shard().use(digest),
      mint: (template) => shard().mint(template),
      setup: (statements) => shard().setup(statements)
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    const [, design, what] = url.pathname.split("/")
    const ops = operations(env)[design]
    if (ops === undefined) return new Response("not found", { status: 404 })
    if (what === "setup") return Response.json(await ops.setup(await request.json()))
    if (what === "use") {
      const r = await ops.use(url.searchParams.get("d"))
      return Response.json(r, { status: r.ok ? 200 : 404 })
    }
    if (what === "mint") return Response.json(await ops.mint(await request.json()))
    // A load driven from inside the Worker: n operations, "concurrency" in flight, each timed.
    if (what === "load") {
      const load = await request.json()
      const latencies = []
      let next = 0
      let failures = 0
      let rowsRead = 0
      let rowsWritten = 0
      let statementMs = 0
      let metered = 0
      const one =
        load.kind === "use" ? (i) => ops.use(load.digests[i % load.digests.length], i % 20 === 0) : () => ops.mint(load.mint)
      await Promise.all(
        Array.from({ length: load.concurrency }, async () => {
          while (next < load.n) {
            const i = next++
            const start = Date.now()
            const r = await one(i)
            latencies.push(Date.now() - start)
            if (!r.ok) failures++
            if (r.rowsRead !== undefined) {
              metered++
              rowsRead += r.rowsRead
              rowsWritten += r.rowsWritten
              statementMs += r.statementMs ?? 0
            }
          }
        })
      )
      return Response.json({ done: latencies.length, metered, failures, rowsRead, rowsWritten, statementMs, latencies })
    }
    return new Response("not found", { status: 404 })
  }
}
`

const GRANT: Permissions = canonical({ contents: "read", issues: "write" } as Permissions)
const TOKENS = 1000
const CONCURRENCY = 16

/** A driver that runs nothing and records what it was asked: the registry's statements, captured. */
const recorder = () => {
  const calls: Array<ReadonlyArray<SqlStatement>> = []
  const driver: SqlDriver = {
    dialect: "sqlite",
    all: async (sql, params = []) => {
      calls.push([{ sql, params }])
      return []
    },
    first: async (sql, params = []) => {
      calls.push([{ sql, params }])
      return undefined
    },
    run: async (sql, params = []) => {
      calls.push([{ sql, params }])
      return { changes: 1 }
    },
    batch: async (statements) => {
      calls.push([...statements])
      return statements.map(() => ({ rows: [], changes: 0 }))
    },
    isUniqueViolation: () => false
  }
  return { calls, driver }
}

/** The shard's rows, written by the real registry on SQLite: its schema and data as statements, and the tokens' digests. */
const seedShard = async () => {
  const db = await openSqlite(":memory:", ["libsql"])
  await migrate(db, issuerMigrations("sqlite"))
  const registry = SqlRegistry.make(db)
  const now = Date.now()
  const app = await Effect.runPromise(
    registry.createApp(
      { name: "scale-shard", permissions: GRANT, createdAt: now, updatedAt: now },
      { id: crypto.randomUUID(), fingerprint: "SHA256:scale-shard", spki: "c2NhbGU=", createdAt: now }
    )
  )
  const installation = await Effect.runPromise(
    registry.createInstallation({
      id: crypto.randomUUID(),
      appId: app.id,
      organizationId: crypto.randomUUID(),
      permissions: GRANT,
      createdAt: now,
      updatedAt: now,
      suspendedAt: null
    })
  )
  const record = () =>
    new StoredToken({
      id: crypto.randomUUID(),
      kind: "installation",
      appId: app.id,
      installationId: installation.id,
      organizationId: installation.organizationId,
      permissions: GRANT,
      createdAt: Date.now(),
      expiresAt: Date.now() + 7_200_000,
      appEpoch: 0,
      installationEpoch: 0
    })
  const digests: Array<string> = []
  for (let i = 0; i < TOKENS; i++) {
    const digest = await Effect.runPromise(digestOf(`crs_${crypto.randomUUID().replaceAll("-", "")}0123456789abcdef`))
    await Effect.runPromise(registry.putToken(digest, record()))
    digests.push(digest)
  }
  // The standing statement must find a seeded token here first: the measurement is of a real use.
  const standing = await Effect.runPromise(registry.findToken(digests[0]!))
  if (Option.isNone(standing)) throw new Error("the seeded shard does not find its own token")

  const schema = await db.all<{ sql: string }>(
    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND name <> 'd1_migrations' " +
      "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid"
  )
  const statements: Array<SqlStatement> = schema.map((row) => ({ sql: row.sql, params: [] }))
  for (const table of ["apps", "app_keys", "installations", "tokens"]) {
    for (const row of await db.all<Record<string, string | number | null>>(`SELECT * FROM ${table}`)) {
      const columns = Object.keys(row)
      statements.push({
        sql: `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`,
        params: columns.map((c) => row[c]!)
      })
    }
  }
  await db.close()

  // The mint's statements as the registry issues them: its read, then its write (with the digest's place).
  const { calls, driver } = recorder()
  const capture = SqlRegistry.make(driver)
  await Effect.runPromise(capture.getAppWithInstallation(app.id, installation.id))
  const digest = "0".repeat(64)
  await Effect.runPromise(capture.putToken(digest, record()))
  const [read, write] = calls as [ReadonlyArray<SqlStatement>, ReadonlyArray<SqlStatement>]
  const statementAt = write.findIndex((s) => s.params.includes(digest))
  if (calls.length !== 2 || statementAt < 0) throw new Error("the registry's mint no longer reads once and writes once")
  const mint = { read, write, digestAt: [statementAt, write[statementAt]!.params.indexOf(digest)] }
  return { statements, digests, mint: JSON.stringify(mint) }
}

interface Load {
  readonly perSecond: number
  readonly latencies: Array<number>
  readonly rowsRead: number
  readonly rowsWritten: number
  /** Time the database reported running the statements (D1's `meta.duration`; 0 where none is reported). */
  readonly statementMs: number
  readonly done: number
  /** Operations whose rows (and statement time) were reported: the rows and time above are theirs. */
  readonly metered: number
  readonly failures: number
}

const CHUNK = { use: 400, mint: 100 } as const

/**
 * A load driven from inside the Worker for `seconds`: requests of CHUNK operations each, CONCURRENCY
 * operations in flight within the Worker; per-operation latencies as the Worker clocked them.
 */
const driveInWorker = async (
  mf: Miniflare,
  design: "d1" | "do",
  kind: "use" | "mint",
  seconds: number,
  seeded: { digests: ReadonlyArray<string>; mint: string }
): Promise<Load> => {
  const body = `{"kind":"${kind}","n":${CHUNK[kind]},"concurrency":${CONCURRENCY},"digests":${JSON.stringify(
    kind === "use" ? seeded.digests : []
  )},"mint":${seeded.mint}}`
  const latencies: Array<number> = []
  let rowsRead = 0
  let rowsWritten = 0
  let statementMs = 0
  let metered = 0
  let failures = 0
  const began = performance.now()
  while (performance.now() - began < seconds * 1000) {
    const response = await mf.dispatchFetch(`http://shard/${design}/load`, { method: "POST", body })
    if (response.status !== 200) throw new Error(`${design} ${kind} load failed: ${await response.text()}`)
    const r = (await response.json()) as {
      done: number
      metered: number
      failures: number
      rowsRead: number
      rowsWritten: number
      statementMs: number
      latencies: Array<number>
    }
    for (const l of r.latencies) latencies.push(l)
    failures += r.failures
    rowsRead += r.rowsRead
    rowsWritten += r.rowsWritten
    statementMs += r.statementMs
    metered += r.metered
  }
  const elapsed = (performance.now() - began) / 1000
  return {
    perSecond: (latencies.length - failures) / elapsed,
    latencies,
    rowsRead,
    rowsWritten,
    statementMs,
    done: latencies.length,
    metered,
    failures
  }
}

/** Requests from this process for `seconds`, CONCURRENCY in flight: the end-to-end figure, harness included. */
const driveFromNode = async (mf: Miniflare, seconds: number, next: () => string): Promise<number> => {
  let done = 0
  const began = performance.now()
  const client = async () => {
    while (performance.now() - began < seconds * 1000) {
      const response = await mf.dispatchFetch(next())
      await response.arrayBuffer()
      if (response.status === 200) done++
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, client))
  return done / ((performance.now() - began) / 1000)
}

/** Measures uses/s and mints/s of one shard as D1 and as a Durable Object. */
export const measureShards = async (options: {
  readonly seconds: number
  readonly log: (line: string) => void
}): Promise<ShardMeasurements> => {
  const seeded = await seedShard()
  const mf = new Miniflare({
    modules: true,
    script: WORKER,
    compatibilityDate: "2026-04-20",
    d1Databases: ["DB"],
    durableObjects: { SHARD: { className: "Shard", useSQLite: true } },
    bindings: { STANDING: TOKEN_STANDING_SQL }
  })
  try {
    await mf.ready
    for (const design of ["d1", "do"]) {
      const response = await mf.dispatchFetch(`http://shard/${design}/setup`, {
        method: "POST",
        body: JSON.stringify(seeded.statements)
      })
      if (response.status !== 200) throw new Error(`${design} setup failed: ${await response.text()}`)
    }
    // Warm both (workerd compiles the Worker, D1 and the object open their databases).
    await driveInWorker(mf, "d1", "use", 0.3, seeded)
    await driveInWorker(mf, "do", "use", 0.3, seeded)
    const half = options.seconds / 2
    const loads: Record<string, Array<Load>> = { d1Use: [], doUse: [], d1Mint: [], doMint: [] }
    // Two rounds, the designs alternating, so a noisy neighbour strikes both alike.
    for (let round = 0; round < 2; round++) {
      loads.d1Use!.push(await driveInWorker(mf, "d1", "use", half, seeded))
      loads.doUse!.push(await driveInWorker(mf, "do", "use", half, seeded))
      loads.d1Mint!.push(await driveInWorker(mf, "d1", "mint", half, seeded))
      loads.doMint!.push(await driveInWorker(mf, "do", "mint", half, seeded))
    }
    let i = 0
    const endToEnd = {
      d1: await driveFromNode(mf, half, () => `http://shard/d1/use?d=${seeded.digests[i++ % seeded.digests.length]}`),
      do: await driveFromNode(mf, half, () => `http://shard/do/use?d=${seeded.digests[i++ % seeded.digests.length]}`)
    }
    const summary = (uses: Array<Load>, mints: Array<Load>, endToEndUses: number): DesignMeasurement => {
      const u = uses.flatMap((l) => l.latencies)
      const m = mints.flatMap((l) => l.latencies)
      const sum = (ls: Array<Load>, f: (l: Load) => number) => ls.reduce((n, l) => n + f(l), 0)
      return {
        usesPerSecond: sum(uses, (l) => l.perSecond) / uses.length,
        mintsPerSecond: sum(mints, (l) => l.perSecond) / mints.length,
        usesPerSecondEndToEnd: endToEndUses,
        useLatencyMs: { p50: percentile(u, 0.5), p99: percentile(u, 0.99) },
        mintLatencyMs: { p50: percentile(m, 0.5), p99: percentile(m, 0.99) },
        rowsReadPerUse: sum(uses, (l) => l.rowsRead) / sum(uses, (l) => l.metered),
        rowsReadPerMint: sum(mints, (l) => l.rowsRead) / sum(mints, (l) => l.metered),
        rowsWrittenPerMint: sum(mints, (l) => l.rowsWritten) / sum(mints, (l) => l.metered),
        statementMsPerUse: sum(uses, (l) => l.statementMs) / sum(uses, (l) => l.metered),
        failures: sum([...uses, ...mints], (l) => l.failures)
      }
    }
    const d1 = summary(loads.d1Use!, loads.d1Mint!, endToEnd.d1)
    const durableObject = summary(loads.doUse!, loads.doMint!, endToEnd.do)
    for (const [name, m] of [
      ["D1", d1],
      ["Durable Object", durableObject]
    ] as const) {
      options.log(
        `  ${name}: ${Math.round(m.usesPerSecond)} uses/s (p50 ${m.useLatencyMs.p50} ms, p99 ${m.useLatencyMs.p99} ms; ` +
          `${Math.round(m.usesPerSecondEndToEnd)}/s end to end from this process), ` +
          `${Math.round(m.mintsPerSecond)} mints/s (p50 ${m.mintLatencyMs.p50} ms, p99 ${m.mintLatencyMs.p99} ms); ` +
          `rows read/use ${m.rowsReadPerUse.toFixed(2)}, read/mint ${m.rowsReadPerMint.toFixed(2)}, ` +
          `written/mint ${m.rowsWrittenPerMint.toFixed(2)}` +
          (m.statementMsPerUse > 0 ? `; the statement itself ${m.statementMsPerUse.toFixed(3)} ms` : "") +
          `; failures ${m.failures}`
      )
    }
    if (d1.failures + durableObject.failures > 0) throw new Error("a measured use did not find its token")
    return {
      d1,
      durableObject,
      concurrency: CONCURRENCY,
      seconds: options.seconds,
      tokens: TOKENS,
      how:
        `miniflare (local workerd), one shard per design; the load runs inside the bench Worker ` +
        `(${CONCURRENCY} operations in flight, requests of ${CHUNK.use} uses or ${CHUNK.mint} mints; a D1 use reads ` +
        `with first() as the issuer's D1 driver does, every 20th with all() for its rows and time), ` +
        `2 alternating rounds of ${half} s per figure after a warm-up; latencies as the Worker clocks them (1 ms steps); ` +
        `end to end: ${CONCURRENCY} requests in flight from this process through dispatchFetch`
    }
  } finally {
    await mf.dispose()
  }
}
