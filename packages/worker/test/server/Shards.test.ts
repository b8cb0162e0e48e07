/**
 * The registry split over several databases (core's ShardedRegistry, SCALE.md): the testkit's
 * registry contract unchanged over three SQLite shards and over two Postgres shards, then what only
 * shards can get wrong — a use reading one statement on one shard, an app's kill switch reaching
 * every shard before it is acknowledged (and never acknowledged while one cannot be written),
 * installations unique across shards, listings merged in order, and growing from one database.
 */
import { join } from "node:path"
import * as AccessTokens from "@icr-apps/core/issuer/AccessTokens"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { Registry, type StorageUnavailable } from "@icr-apps/core/issuer/Registry"
import * as ShardedRegistry from "@icr-apps/core/issuer/ShardedRegistry"
import { shardOfInstallation, shardOfSecret } from "@icr-apps/core/issuer/Shards"
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { issuerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import type { ServerSqlDriver } from "../../src/sql/ServerSql.js"
import { openSqlite } from "../../src/sql/sqlite.js"
import { postgresDatabase, tempDir } from "./support.js"

const runner = { afterAll, beforeAll, describe, expect, it }

/** `count` migrated SQLite databases (libsql), opened before the suite and closed after. */
const sqliteShards = (count: number) => {
  const opened: Array<ServerSqlDriver> = []
  const temp = tempDir("icr-shards-")
  beforeAll(async () => {
    for (let i = 0; i < count; i++) {
      const driver = await openSqlite(join(temp.dir, `shard-${i}.db`), ["libsql"])
      await migrate(driver, issuerMigrations("sqlite"))
      opened.push(driver)
    }
  }, 60_000)
  afterAll(async () => {
    for (const driver of opened) await driver.close()
    temp.remove()
  })
  return opened
}

/** `count` migrated Postgres databases (postgres.js pools of `poolSize`), made before the suite and dropped after. */
const postgresShards = (count: number, poolSize: number) => {
  const opened: Array<{ driver: ServerSqlDriver; drop: () => Promise<void> }> = []
  beforeAll(async () => {
    for (let i = 0; i < count; i++) {
      const database = await postgresDatabase()
      const driver = openPostgres(database.url, { poolSize })
      await migrate(driver, issuerMigrations("postgres"))
      opened.push({ driver, drop: database.drop })
    }
  }, 120_000)
  afterAll(async () => {
    for (const { driver, drop } of opened) {
      await driver.close()
      await drop()
    }
  })
  return () => opened.map((o) => o.driver)
}

/**
 * A driver that counts its calls, fails every call while `down` is set, and runs `before` (when set)
 * ahead of each call with the call's statements: a test's way to interleave another operation.
 */
const observed = (driver: SqlDriver) => {
  const state: {
    calls: number
    down: boolean
    before: ((texts: ReadonlyArray<string>) => Promise<void>) | undefined
  } = { calls: 0, down: false, before: undefined }
  const gate = async <A>(texts: ReadonlyArray<string>, f: () => Promise<A>): Promise<A> => {
    state.calls++
    await state.before?.(texts)
    if (state.down) throw new Error("shard down (test)")
    return f()
  }
  const wrapped: SqlDriver = {
    dialect: driver.dialect,
    all: (text, params) => gate([text], () => driver.all(text, params)),
    first: (text, params) => gate([text], () => driver.first(text, params)),
    run: (text, params) => gate([text], () => driver.run(text, params)),
    batch: (statements) =>
      gate(
        statements.map((s) => s.sql),
        () => driver.batch(statements)
      ),
    isUniqueViolation: driver.isUniqueViolation
  }
  return { driver: wrapped, state }
}

const run = <A, E>(registry: Registry["Type"], f: (r: Registry["Type"]) => Effect.Effect<A, E>) =>
  Effect.runPromise(f(registry))
const attempt = <A, E>(registry: Registry["Type"], f: (r: Registry["Type"]) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.either(f(registry)))

const FULL = { organization_info: "VIEW", organization_inventory: "WRITE" } as const
let counter = 0
const newApp = (registry: Registry["Type"]) => {
  const now = Date.now()
  return run(registry, (r) =>
    r.createApp(
      { name: `sharded-${now.toString(36)}-${counter++}`, permissions: FULL, createdAt: now, updatedAt: now },
      { id: crypto.randomUUID(), fingerprint: `SHA256:${crypto.randomUUID()}`, spki: "c3BraQ==", createdAt: now }
    )
  )
}
const newInstallation = (registry: Registry["Type"], appId: string, organizationId = crypto.randomUUID()) => {
  const now = Date.now()
  return run(registry, (r) =>
    r.createInstallation({
      id: crypto.randomUUID(),
      appId,
      organizationId,
      permissions: FULL,
      createdAt: now,
      updatedAt: now,
      suspendedAt: null
    })
  )
}

/** Mints an installation token through the real AccessTokens service; uses and revokes it by its secret. */
const tokensOver = (registry: Registry["Type"]) => {
  const layer = AccessTokens.layer().pipe(
    Layer.provide(Layer.mergeAll(Layer.succeed(Registry, registry), Entropy.layer))
  )
  const use = <A, E>(f: (t: AccessTokens.AccessTokens["Type"]) => Effect.Effect<A, E>) =>
    Effect.runPromise(Effect.either(Effect.flatMap(AccessTokens.AccessTokens, f).pipe(Effect.provide(layer))))
  return {
    mint: async (appId: string, installationId: string) => {
      const installation = Option.getOrThrow(await run(registry, (r) => r.getInstallation(installationId)))
      const minted = await use((t) =>
        t.mintInstallationToken(appId, installationId, undefined, installation.appTokenEpoch)
      )
      return Redacted.value(Either.getOrThrow(minted).secret)
    },
    authenticate: (secret: string) => use((t) => t.authenticate(secret)),
    revoke: async (secret: string) => {
      const found = Either.getOrThrow(await use((t) => t.authenticate(secret)))
      return use((t) => t.revoke(found.digest, found.shard))
    }
  }
}

describe("three SQLite shards", () => {
  const shards = sqliteShards(3)
  let turn = 0
  registryContract(
    "sharded over three SQLite databases (libsql)",
    () => ShardedRegistry.layer(shards, { pick: (n) => turn++ % n }),
    runner
  )
})

describe("two Postgres shards", () => {
  const shards = postgresShards(2, 4)
  let turn = 0
  registryContract(
    "sharded over two Postgres databases (postgres.js)",
    () => ShardedRegistry.layer(shards(), { pick: (n) => turn++ % n }),
    runner
  )
})

describe("two Postgres shards under concurrent kill switches", () => {
  const shards = postgresShards(2, 8)

  it("leaves every copy at home's epoch after racing kill switches (each statement of a batch is its own snapshot there)", async () => {
    let turn = 0
    const registry = ShardedRegistry.make(shards(), { pick: (n) => turn++ % n })
    for (let round = 0; round < 5; round++) {
      const app = await newApp(registry)
      await newInstallation(registry, app.id)
      const onOne = await newInstallation(registry, app.id)
      expect(shardOfInstallation(onOne.id)).toBe(1)
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, () => attempt(registry, (r) => r.revokeAppTokens(app.id)))
      )
      expect(outcomes.every(Either.isRight)).toBe(true)
      const home = Option.getOrThrow(await run(registry, (r) => r.getApp(app.id)))
      const copy = await run(registry, (r) => r.getAppWithInstallation(app.id, onOne.id))
      expect(home.tokenEpoch).toBe(12)
      expect(Option.getOrThrow(copy.installation).appTokenEpoch).toBe(12)
    }
  })
})

describe("what only shards can get wrong", () => {
  const shards = sqliteShards(3)
  const setup = (open?: ReadonlyArray<number>) => {
    const seen = shards.map(observed)
    let turn = 0
    const registry = ShardedRegistry.make(
      seen.map((s) => s.driver),
      { open, pick: (n) => turn++ % n }
    )
    return { registry, seen }
  }

  it("names each installation's shard in its id and each token's in its secret; a use is one statement on that shard", async () => {
    const { registry, seen } = setup()
    const app = await newApp(registry)
    const installations = [
      await newInstallation(registry, app.id),
      await newInstallation(registry, app.id),
      await newInstallation(registry, app.id)
    ]
    expect(installations.map((i) => shardOfInstallation(i.id))).toEqual([0, 1, 2])
    for (const i of installations)
      expect(i.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    const tokens = tokensOver(registry)
    for (const [shard, installation] of installations.entries()) {
      const secret = await tokens.mint(app.id, installation.id)
      expect(secret).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(shardOfSecret(secret)).toBe(shard)
      const before = seen.map((s) => s.state.calls)
      expect(Either.isRight(await tokens.authenticate(secret))).toBe(true)
      const after = seen.map((s, k) => s.state.calls - before[k]!)
      expect(after).toEqual(seen.map((_, k) => (k === shard ? 1 : 0)))
    }
    // The same secret with another shard's digits is unknown there, and on a shard that does not exist.
    const secret = await tokens.mint(app.id, installations[2]!.id)
    for (const digits of ["0000", "0001", "00ff"]) {
      const moved = `crs_${digits}${secret.slice(8)}`
      expect(Either.isLeft(await tokens.authenticate(moved))).toBe(true)
    }
  })

  it("acknowledges an app's kill switch only once every shard holding its installations has it", async () => {
    const { registry, seen } = setup()
    const app = await newApp(registry)
    const [, onOne, onTwo] = [
      await newInstallation(registry, app.id),
      await newInstallation(registry, app.id),
      await newInstallation(registry, app.id)
    ]
    const tokens = tokensOver(registry)
    const onShardTwo = await tokens.mint(app.id, onTwo!.id)
    const onShardOne = await tokens.mint(app.id, onOne!.id)

    // Shard 2 cannot be written: the kill switch is not acknowledged, however often it is asked.
    seen[2]!.state.down = true
    for (let i = 0; i < 3; i++) {
      const outcome = await attempt(registry, (r) => r.revokeAppTokens(app.id))
      expect(Either.isLeft(outcome) && (outcome.left as StorageUnavailable)._tag).toBe("StorageUnavailable")
    }
    // Shard 1 was reachable: its copy already refuses the app's older tokens.
    expect(Either.isLeft(await tokens.authenticate(onShardOne))).toBe(true)
    seen[2]!.state.down = false
    // Not yet acknowledged, shard 2 may still honour its token; the next call on the app completes the copy.
    const keyId = app.keys[0]!.id
    expect(Either.isRight(await attempt(registry, (r) => r.deleteKey(app.id, keyId, Date.now())))).toBe(true)
    expect(Either.isLeft(await tokens.authenticate(onShardTwo))).toBe(true)
    // A kill switch retried after it took effect on home still completes the copies before it answers.
    const again = await newApp(registry)
    const [, , elsewhere] = [
      await newInstallation(registry, again.id),
      await newInstallation(registry, again.id),
      await newInstallation(registry, again.id)
    ]
    const lagging = await tokens.mint(again.id, elsewhere!.id)
    seen[2]!.state.down = true
    const first = await attempt(registry, (r) => r.deleteKey(again.id, again.keys[0]!.id, Date.now()))
    expect(Either.isLeft(first)).toBe(true)
    seen[2]!.state.down = false
    const retried = await attempt(registry, (r) => r.deleteKey(again.id, again.keys[0]!.id, Date.now()))
    expect(Either.isLeft(retried) && retried.left._tag).toBe("KeyMissing")
    expect(Either.isLeft(await tokens.authenticate(lagging))).toBe(true)
    // And the shard's copy has the key gone (a JWT check there would no longer find it).
    const copy = await run(registry, (r) => r.getAppWithInstallation(again.id, elsewhere!.id))
    expect(Option.getOrThrow(copy.app).keys).toEqual([])
  })

  it("a key added reaches every shard before it is acknowledged", async () => {
    const { registry } = setup()
    const app = await newApp(registry)
    const placed = [await newInstallation(registry, app.id), await newInstallation(registry, app.id)]
    placed.push(await newInstallation(registry, app.id))
    const key = {
      id: crypto.randomUUID(),
      appId: app.id,
      fingerprint: "SHA256:added",
      spki: "YWRkZWQ=",
      createdAt: Date.now() + 1
    }
    await run(registry, (r) => r.addKey(key))
    for (const installation of placed) {
      const read = await run(registry, (r) => r.getAppWithInstallation(app.id, installation.id))
      expect(Option.getOrThrow(read.app).keys.map((k) => k.id)).toEqual([app.keys[0]!.id, key.id])
    }
  })

  it("a retried kill switch answers only once every copy has it: 503 while a shard is down, never a 404 that guarantees nothing", async () => {
    const { registry, seen } = setup()
    const app = await newApp(registry)
    const placed = [await newInstallation(registry, app.id), await newInstallation(registry, app.id)]
    const onOne = placed[1]!
    expect(shardOfInstallation(onOne.id)).toBe(1)
    seen[1]!.state.down = true
    const keyId = app.keys[0]!.id
    for (let i = 0; i < 3; i++) {
      const outcome = await attempt(registry, (r) => r.deleteKey(app.id, keyId, Date.now()))
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("StorageUnavailable")
    }
    seen[1]!.state.down = false
    const done = await attempt(registry, (r) => r.deleteKey(app.id, keyId, Date.now()))
    expect(Either.isLeft(done) && done.left._tag).toBe("KeyMissing")
    const copy = await run(registry, (r) => r.getAppWithInstallation(app.id, onOne.id))
    expect(Option.getOrThrow(copy.app).keys).toEqual([])
  })

  it("never brings an uninstalled installation back: a claim completed late cannot write its id again", async () => {
    const { registry, seen } = setup()
    const app = await newApp(registry)
    await newInstallation(registry, app.id)
    const organizationId = crypto.randomUUID()
    // The first creation succeeds, but marking its claim done fails: the claim stays "creating".
    seen[0]!.state.before = async (texts) => {
      if (texts.some((t) => t.includes("SET state = 'active'"))) {
        seen[0]!.state.before = undefined
        throw new Error("lost (test)")
      }
    }
    const first = await newInstallation(registry, app.id, organizationId)
    expect(shardOfInstallation(first.id)).toBe(1)
    const tokens = tokensOver(registry)
    const old = await tokens.mint(app.id, first.id)
    // A second creation reads that claim and, just before it writes, the installation is uninstalled.
    let uninstalled = false
    seen[1]!.state.before = async (texts) => {
      if (!uninstalled && texts.some((t) => t.includes("INSERT INTO installations"))) {
        uninstalled = true
        await run(registry, (r) => r.deleteInstallation(first.id))
      }
    }
    const second = await newInstallation(registry, app.id, organizationId)
    seen[1]!.state.before = undefined
    expect(uninstalled).toBe(true)
    expect(second.id).not.toBe(first.id)
    expect(Option.isNone(await run(registry, (r) => r.getInstallation(first.id)))).toBe(true)
    expect(Either.isLeft(await tokens.authenticate(old))).toBe(true)
    const listed = await run(registry, (r) =>
      r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 100, offset: 0 })
    )
    expect(listed.items.filter((i) => i.organizationId === organizationId).map((i) => i.id)).toEqual([second.id])
    const third = await attempt(registry, (r) =>
      r.createInstallation({ ...second, id: crypto.randomUUID(), createdAt: 1, updatedAt: 1, suspendedAt: null })
    )
    expect(Either.isLeft(third) && third.left._tag).toBe("AlreadyInstalled")
  })

  it("answers 'no such installation' as one database does: another app's, or a shard it lacks", async () => {
    const { registry } = setup()
    const owner = await newApp(registry)
    const other = await newApp(registry)
    await newInstallation(registry, owner.id)
    const onOne = await newInstallation(registry, owner.id)
    expect(shardOfInstallation(onOne.id)).toBe(1)
    // The other app has no copy on shard 1: its JWT is checked against home's app all the same.
    const read = await run(registry, (r) => r.getAppWithInstallation(other.id, onOne.id))
    expect(Option.getOrThrow(read.app).id).toBe(other.id)
    const nowhere = `00ff${crypto.randomUUID().slice(4, 14)}8${crypto.randomUUID().slice(15)}`
    const missing = await run(registry, (r) => r.getAppWithInstallation(owner.id, nowhere))
    expect([Option.isSome(missing.app), Option.isNone(missing.installation)]).toEqual([true, true])
    const deleted = await attempt(registry, (r) => r.deleteInstallation(nowhere))
    expect(Either.isLeft(deleted) && deleted.left._tag).toBe("InstallationMissing")
  })

  it("installs an app in an organization once across shards, and finishes a claim a failed call left", async () => {
    const { registry, seen } = setup()
    const app = await newApp(registry)
    const organizationId = crypto.randomUUID()
    const racers = await Promise.all(
      Array.from({ length: 9 }, () =>
        attempt(registry, (r) =>
          r.createInstallation({
            id: crypto.randomUUID(),
            appId: app.id,
            organizationId,
            permissions: FULL,
            createdAt: 1,
            updatedAt: 1,
            suspendedAt: null
          })
        )
      )
    )
    expect(racers.map((r) => (Either.isRight(r) ? "ok" : r.left._tag)).sort()).toEqual([
      ...Array(8).fill("AlreadyInstalled"),
      "ok"
    ])
    // The shard a new installation goes to is down: 503, and the organization is not lost.
    const other = crypto.randomUUID()
    seen[1]!.state.down = true
    seen[2]!.state.down = true
    const failed = [
      await attempt(registry, (r) =>
        r.createInstallation({
          id: crypto.randomUUID(),
          appId: app.id,
          organizationId: other,
          permissions: FULL,
          createdAt: 2,
          updatedAt: 2,
          suspendedAt: null
        })
      )
    ]
    seen[1]!.state.down = false
    seen[2]!.state.down = false
    if (Either.isLeft(failed[0]!)) expect(failed[0]!.left._tag).toBe("StorageUnavailable")
    const retried = await newInstallation(registry, app.id, other).catch(() => undefined)
    const listed = await run(registry, (r) =>
      r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 100, offset: 0 })
    )
    expect(listed.items.filter((i) => i.organizationId === other)).toHaveLength(1)
    if (Either.isLeft(failed[0]!)) expect(retried?.organizationId).toBe(other)
  })

  it("uninstalls for good: the organization can install again, under a new id, and old tokens stay refused", async () => {
    const { registry } = setup()
    const app = await newApp(registry)
    const organizationId = crypto.randomUUID()
    await newInstallation(registry, app.id)
    const first = await newInstallation(registry, app.id, organizationId)
    expect(shardOfInstallation(first.id)).toBe(1)
    const tokens = tokensOver(registry)
    const secret = await tokens.mint(app.id, first.id)
    await run(registry, (r) => r.deleteInstallation(first.id))
    const second = await newInstallation(registry, app.id, organizationId)
    expect(second.id).not.toBe(first.id)
    expect(Either.isLeft(await tokens.authenticate(secret))).toBe(true)
    expect(Either.isRight(await tokens.authenticate(await tokens.mint(app.id, second.id)))).toBe(true)
    // Revoking one token is one statement on its shard, and final.
    const third = await tokens.mint(app.id, second.id)
    await tokens.revoke(third)
    expect(Either.isLeft(await tokens.authenticate(third))).toBe(true)
  })

  it("merges listings from every shard in (createdAt, id) order, by offset and by cursor", async () => {
    const { registry } = setup()
    const app = await newApp(registry)
    const made = []
    for (let i = 0; i < 11; i++) {
      const now = 1_000 + (i % 4)
      made.push(
        await run(registry, (r) =>
          r.createInstallation({
            id: crypto.randomUUID(),
            appId: app.id,
            organizationId: crypto.randomUUID(),
            permissions: FULL,
            createdAt: now,
            updatedAt: now,
            suspendedAt: null
          })
        )
      )
    }
    const inOrder = [...made].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)).map((i) => i.id)
    expect(new Set(made.map((i) => shardOfInstallation(i.id)))).toEqual(new Set([0, 1, 2]))
    const filter = { appId: app.id, activeOnly: false }
    const byOffset = []
    for (let offset = 0; offset < 11; offset += 4) {
      const page = await run(registry, (r) => r.listInstallations(filter, { limit: 4, offset }))
      expect(page.total).toBe(11)
      expect(page.more).toBe(offset + 4 < 11)
      byOffset.push(...page.items.map((i) => i.id))
    }
    expect(byOffset).toEqual(inOrder)
    const byCursor = []
    let after: { createdAt: number; id: string } | undefined
    for (;;) {
      const page = await run(registry, (r) =>
        r.listInstallations(filter, after === undefined ? { limit: 3, offset: 0 } : { limit: 3, after })
      )
      byCursor.push(...page.items.map((i) => i.id))
      if (!page.more) break
      const last = page.items.at(-1)!
      after = { createdAt: last.createdAt, id: last.id }
    }
    expect(byCursor).toEqual(inOrder)
  })
})

describe("growing from one database", () => {
  const shards = sqliteShards(2)

  it("keeps every token and installation of one database when shards are added; new installations go to the new shard", async () => {
    // One database, as the issuer runs today.
    const single = SqlRegistry.make(shards[0]!)
    const app = await newApp(single)
    const before = await newInstallation(single, app.id)
    expect(shardOfInstallation(before.id)).toBe(0)
    const oldTokens = tokensOver(single)
    const old = await oldTokens.mint(app.id, before.id)
    expect(old.slice(4, 8)).toBe("0000")

    // A second shard is added and opened to new installations; the first keeps what it holds.
    const grown = ShardedRegistry.make(shards, { open: [1] })
    const tokens = tokensOver(grown)
    expect(Either.isRight(await tokens.authenticate(old))).toBe(true)
    // The organization installed before sharding is still taken.
    const again = await attempt(grown, (r) =>
      r.createInstallation({ ...before, id: crypto.randomUUID(), createdAt: 1, updatedAt: 1, suspendedAt: null })
    )
    expect(Either.isLeft(again) && again.left._tag).toBe("AlreadyInstalled")
    const after = await newInstallation(grown, app.id)
    expect(shardOfInstallation(after.id)).toBe(1)
    const fresh = await tokens.mint(app.id, after.id)
    expect(Either.isRight(await tokens.authenticate(fresh))).toBe(true)
    // The app's kill switch reaches both: the old database's token and the new shard's.
    await run(grown, (r) => r.revokeAppTokens(app.id))
    expect(Either.isLeft(await tokens.authenticate(old))).toBe(true)
    expect(Either.isLeft(await tokens.authenticate(fresh))).toBe(true)
    const listed = await run(grown, (r) =>
      r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 10, offset: 0 })
    )
    expect(listed.items.map((i) => i.id)).toEqual([before.id, after.id])
  })
})
