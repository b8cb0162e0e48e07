/**
 * `icr-apps-issuer copy`: an issuer's data moved SQLite → Postgres → SQLite arrives exactly, live
 * tokens keep their standing (revoked ones stay revoked, kill switches stay pulled, a re-registered
 * key keeps refusing old JWTs), new apps never reuse a copied id, and a copy into a database that
 * holds apps, or one that fails half-way, writes nothing.
 */
import { join } from "node:path"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { StoredToken } from "@icr-apps/core/api/Tokens"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { afterAll, describe, expect, it } from "vitest"
import { issuerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { COPIED_TABLES, copyIssuerData } from "../../src/server/Copy.js"
import { cli, postgresDatabase, runFile, tempDir } from "./support.js"

const temp = tempDir("icr-copy-")
const cleanups: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  temp.remove()
})

let files = 0
const sqlite = async () => {
  const path = join(temp.dir, `db-${files++}.db`)
  const driver = await openSqlite(path, ["libsql"])
  cleanups.push(() => driver.close())
  return { driver, url: `sqlite:${path}` }
}
const postgres = async () => {
  const database = await postgresDatabase()
  const driver = openPostgres(database.url, { poolSize: 2 })
  cleanups.push(() => database.drop())
  cleanups.push(() => driver.close())
  return { driver, url: database.url }
}

/** Every copied table's rows, in a stable order, as the engines return them. */
const dump = async (driver: ServerSqlDriver) => {
  const out: Record<string, unknown> = {}
  for (const { table, columns } of COPIED_TABLES) {
    out[table] = await driver.all(`SELECT ${columns.join(", ")} FROM ${table} ORDER BY ${columns.join(", ")}`)
  }
  return out
}

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)
const hex = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("")

/** An issuer's worth of data: two apps, keys (one deleted and registered again), installations, tokens. */
const seed = async (driver: ServerSqlDriver) => {
  await migrate(driver, issuerMigrations(driver.dialect))
  const registry = SqlRegistry.make(driver)
  const key = (n: number) => ({
    id: crypto.randomUUID(),
    fingerprint: `SHA256:k${n}`,
    spki: `spki${n}`,
    createdAt: 1000 + n
  })
  const first = await run(
    registry.createApp(
      { name: "first", permissions: { organization_info: "VIEW" }, createdAt: 1, updatedAt: 1 },
      key(1)
    )
  )
  const second = await run(
    registry.createApp(
      { name: "second", permissions: { organization_info: "VIEW" }, createdAt: 2, updatedAt: 2 },
      key(2)
    )
  )
  const extra = await run(registry.addKey({ ...key(3), appId: first.id }))
  await run(registry.deleteKey(first.id, extra.id, 5_000))
  const again = await run(registry.addKey({ ...key(3), id: crypto.randomUUID(), appId: first.id }))
  const installation = (appId: string, n: number) =>
    run(
      registry.createInstallation({
        id: crypto.randomUUID(),
        appId,
        organizationId: crypto.randomUUID(),
        permissions: { organization_info: "VIEW" },
        createdAt: 10 + n,
        updatedAt: 10 + n,
        suspendedAt: null
      })
    )
  const live = await installation(first.id, 1)
  const suspended = await installation(second.id, 2)
  await run(registry.updateInstallation(suspended.id, { suspendedAt: 20, updatedAt: 20 }))
  const token = (installationId: string, organizationId: string, appId: string) =>
    new StoredToken({
      id: crypto.randomUUID(),
      kind: "installation",
      appId,
      installationId,
      organizationId,
      permissions: { organization_info: "VIEW" },
      createdAt: Date.now(),
      expiresAt: Date.now() + 3_600_000,
      appEpoch: 1,
      installationEpoch: 0
    })
  const digests = { live: hex(), revoked: hex(), suspended: hex() }
  await run(registry.putToken(digests.live, token(live.id, live.organizationId, first.id)))
  await run(registry.putToken(digests.revoked, token(live.id, live.organizationId, first.id)))
  await run(registry.revokeToken(digests.revoked, Date.now()))
  await run(registry.putToken(digests.suspended, token(suspended.id, suspended.organizationId, second.id)))
  return { digests, again, first }
}

describe("icr-apps-issuer copy", () => {
  it("moves every row SQLite → Postgres → SQLite exactly; tokens keep their standing; ids are never reused", async () => {
    const source = await sqlite()
    const { digests, again, first } = await seed(source.driver)
    const before = await dump(source.driver)
    const middle = await postgres()
    expect(await copyIssuerData(source.driver, middle.driver)).toEqual({
      apps: 2,
      app_keys: 3,
      deleted_app_keys: 1,
      installations: 2,
      tokens: 3
    })
    expect(await dump(middle.driver)).toEqual(before)
    const back = await sqlite()
    await copyIssuerData(middle.driver, back.driver)
    expect(await dump(back.driver)).toEqual(before)

    for (const target of [middle.driver, back.driver]) {
      const registry = SqlRegistry.make(target)
      const standing = async (digest: string) => Option.getOrThrow(await run(registry.findToken(digest)))
      const live = await standing(digests.live)
      expect([live.revoked, Option.map(live.installation, (i) => [i.suspendedAt, i.appTokenEpoch])]).toEqual([
        false,
        Option.some([null, 1])
      ])
      expect((await standing(digests.revoked)).revoked).toBe(true)
      expect(Option.map((await standing(digests.suspended)).installation, (i) => i.suspendedAt)).toEqual(
        Option.some(20)
      )
      // The key registered again after its deletion still refuses JWTs issued before it.
      const app = Option.getOrThrow(await run(registry.getApp(first.id)))
      expect(app.keys.find((k) => k.id === again.id)?.notBefore).toBe(5_000)
      // A new app takes a new id.
      const created = await run(
        registry.createApp(
          { name: `new-${target.dialect}`, permissions: {}, createdAt: 3, updatedAt: 3 },
          { id: crypto.randomUUID(), fingerprint: "SHA256:new", spki: "x", createdAt: 3 }
        )
      )
      expect(Number(created.id)).toBe(3)
    }
  })

  it("refuses a target that holds apps, and writes nothing when a copy fails half-way", async () => {
    const source = await sqlite()
    await seed(source.driver)
    const full = await sqlite()
    await seed(full.driver)
    const fullBefore = await dump(full.driver)
    await expect(copyIssuerData(source.driver, full.driver)).rejects.toThrow(/already holds apps/)
    expect(await dump(full.driver)).toEqual(fullBefore)

    // A token row Postgres cannot take (SQLite keeps text in an INTEGER column): the last table fails.
    await source.driver.run(
      "INSERT INTO tokens (digest, id, kind, app_id, permissions, created_at, expires_at, app_epoch, installation_epoch) VALUES (?, ?, 'app', 'not-a-number', '{}', 1, 2, 0, 0)",
      [hex(), crypto.randomUUID()]
    )
    const target = await postgres()
    await expect(copyIssuerData(source.driver, target.driver)).rejects.toThrow()
    for (const { table } of COPIED_TABLES) {
      expect(await target.driver.first(`SELECT COUNT(*) AS n FROM ${table}`), table).toEqual({ n: 0 })
    }
  })

  it("from the CLI: one line saying what moved; a bad URL exits 1 without quoting it", async () => {
    const source = await sqlite()
    await seed(source.driver)
    const target = await postgres()
    const done = await runFile("node", cli, ["copy", "--from", source.url, "--to", target.url])
    expect(done.code).toBe(0)
    expect(done.stdout).toMatch(
      /^copied sqlite:.* \(libsql\) to postgres:\/\/.*: 2 apps, 3 app_keys, 1 deleted_app_keys, 2 installations, 3 tokens\n$/
    )
    const bad = await runFile("node", cli, ["copy", "--from", source.url, "--to", "mysql://user:hunter2@db/x"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/--to: DATABASE_URL must be sqlite:<path> or postgres:/)
    expect(`${bad.stdout}${bad.stderr}`).not.toMatch(/hunter2/)
  }, 60_000)
})
