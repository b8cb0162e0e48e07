import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { SqlDriver, SqlStatement } from "../../src/issuer/Sql.js"
import { numberPlaceholders } from "../../src/issuer/Sql.js"
import * as SqlRegistry from "../../src/issuer/SqlRegistry.js"
import { statementsFor } from "../../src/issuer/SqlStatements.js"

/** A driver whose every call fails with `error` (what an engine throws: it may quote SQL and values). */
const failing = (error: unknown, dialect: SqlDriver["dialect"] = "sqlite"): SqlDriver => {
  const fail = () => Promise.reject(error)
  return { dialect, all: fail, first: fail, run: fail, batch: fail, isUniqueViolation: (e) => e === uniqueViolation }
}
const uniqueViolation = new Error("UNIQUE constraint failed: apps.name (secret crs_0123456789abcdef)")
const engineFailure = new Error("SQLITE_BUSY: database is locked while running INSERT INTO tokens VALUES ('crs_…')")

const key = { id: "k", appId: "1", fingerprint: "SHA256:x", spki: "x", createdAt: 1 }
const app = { name: "n", permissions: {}, createdAt: 1, updatedAt: 1 }

describe("SqlRegistry over a failing engine", () => {
  it.effect("answers every engine failure as StorageUnavailable, keeping nothing of its message", () =>
    Effect.gen(function* () {
      const registry = SqlRegistry.make(failing(engineFailure))
      const outcomes = yield* Effect.all(
        [
          registry.getApp("1"),
          registry.createApp(app, key),
          registry.addKey(key),
          registry.deleteKey("1", "k", 1),
          registry.findToken("d"),
          registry.revokeToken("d", 1),
          registry.listApps({ limit: 1, offset: 0 }),
          registry.listInstallations({ activeOnly: true }, { limit: 1, offset: 0 })
        ].map((e) => Effect.either(e as Effect.Effect<unknown, { readonly _tag: string }>))
      )
      for (const outcome of outcomes) {
        expect(Either.isLeft(outcome) && outcome.left._tag).toBe("StorageUnavailable")
        expect(JSON.stringify(Either.isLeft(outcome) ? outcome.left : null)).not.toMatch(/SQLITE|INSERT|crs_/)
      }
    })
  )
  it.effect(
    "the promise forms reject as their effects fail: the engine's failure as StorageUnavailable, a row that does not decode as a defect",
    () =>
      Effect.gen(function* () {
        const registry = SqlRegistry.make(failing(engineFailure))
        for (const call of [
          () => registry.findTokenNow!("d"),
          () => registry.getAppWithInstallationNow!("1", "i"),
          () => registry.putTokenNow!("d", { id: "t", kind: "app", appId: "1", permissions: {} } as never)
        ]) {
          const rejected = yield* Effect.promise(() =>
            call().then(
              () => undefined,
              (e: unknown) => e
            )
          )
          expect((rejected as { _tag?: string })._tag).toBe("StorageUnavailable")
          expect(JSON.stringify(rejected)).not.toMatch(/SQLITE|INSERT|crs_/)
        }
        // A stored row this version cannot read is no outage (503, retried forever): a defect (500, logged).
        const corrupt: SqlDriver = {
          ...failing(engineFailure),
          first: async () =>
            ({ t_id: "t", kind: "app", t_app_id: 1, t_permissions: "not json", revoked_at: null }) as never
        }
        const exit = yield* Effect.exit(SqlRegistry.make(corrupt).findToken("d"))
        expect(exit._tag === "Failure" && exit.cause._tag).toBe("Die")
      })
  )

  it.effect("answers a unique violation as the conflict it is: a taken name, a key the app has, an installed app", () =>
    Effect.gen(function* () {
      const registry = SqlRegistry.make(failing(uniqueViolation))
      expect((yield* Effect.flip(registry.createApp(app, key)))._tag).toBe("NameTaken")
      expect((yield* Effect.flip(registry.addKey(key)))._tag).toBe("KeyExists")
      const installation = { id: "i", appId: "1", organizationId: "o", permissions: {}, createdAt: 1, updatedAt: 1 }
      expect((yield* Effect.flip(registry.createInstallation({ ...installation, suspendedAt: null })))._tag).toBe(
        "AlreadyInstalled"
      )
      // Elsewhere a unique violation is no conflict of the caller's: storage failed.
      expect(
        (yield* Effect.flip(
          registry.putToken("d", {
            id: "t",
            kind: "app",
            appId: "1",
            permissions: {},
            createdAt: 1,
            expiresAt: 2,
            appEpoch: 0,
            installationEpoch: 0
          } as never)
        ))._tag
      ).toBe("StorageUnavailable")
    })
  )
})

describe("SqlStatements", () => {
  it("locks the app row before a key addition on Postgres only (SQLite and D1 serialize writes)", () => {
    expect(statementsFor("postgres").lockApp).toBe("SELECT id FROM apps WHERE id = ? FOR UPDATE")
    expect(statementsFor("sqlite").lockApp).toBeUndefined()
  })
  it("makes a mint's write one statement on Postgres and one batch of two on SQLite", () => {
    expect(statementsFor("postgres").putToken.length).toBe(1)
    expect(statementsFor("sqlite").putToken.length).toBe(2)
  })
  it("numbers placeholders for Postgres, leaving quoted ? alone", () => {
    expect(numberPlaceholders("SELECT ? , '?', \"a?\" WHERE x = ? AND y IN (?, ?)")).toBe(
      "SELECT $1 , '?', \"a?\" WHERE x = $2 AND y IN ($3, $4)"
    )
  })
  it("numbers no ? inside a comment, and reads a quote inside a comment as no quote", () => {
    // A comment's apostrophe ("the app's") must not swallow the placeholders after it, nor a `?` in
    // a comment take a number: either way the values would no longer line up with their placeholders.
    expect(numberPlaceholders("SELECT ? -- the app's key, or ?\nFROM t WHERE a = ? /* it's ? */ AND b = ?")).toBe(
      "SELECT $1 -- the app's key, or ?\nFROM t WHERE a = $2 /* it's ? */ AND b = $3"
    )
    expect(numberPlaceholders("SELECT 'it''s ?', ? WHERE x = '--' AND y = ?")).toBe(
      "SELECT 'it''s ?', $1 WHERE x = '--' AND y = $2"
    )
  })
  it("binds exactly as many values as each statement has placeholders", async () => {
    // Every call SqlRegistry makes, recorded: the count of `?` equals the count of values.
    const seen: Array<SqlStatement> = []
    const recording: SqlDriver = {
      dialect: "postgres",
      all: async (sql, params = []) => {
        seen.push({ sql, params })
        return []
      },
      first: async (sql, params = []) => {
        seen.push({ sql, params })
        return undefined
      },
      run: async (sql, params = []) => {
        seen.push({ sql, params })
        return { changes: 0 }
      },
      batch: async (statements) => {
        seen.push(...statements)
        return statements.map(() => ({ rows: [], changes: 0 }))
      },
      isUniqueViolation: () => false
    }
    for (const dialect of ["postgres", "sqlite"] as const) {
      seen.length = 0
      const registry = SqlRegistry.make({ ...recording, dialect })
      const run = (e: Effect.Effect<unknown, unknown>) => Effect.runPromise(Effect.either(e))
      await run(registry.createApp(app, key))
      await run(registry.getApp("1"))
      await run(registry.getAppWithInstallation("1", "i"))
      await run(registry.addKey(key))
      await run(registry.deleteKey("1", "k", 1))
      await run(registry.revokeAppTokens("1"))
      await run(
        registry.createInstallation({
          id: "i",
          appId: "1",
          organizationId: "o",
          permissions: {},
          createdAt: 1,
          updatedAt: 1,
          suspendedAt: null
        })
      )
      await run(registry.updateInstallation("i", { permissions: {}, suspendedAt: 2, updatedAt: 2 }))
      await run(registry.deleteInstallation("i"))
      await run(registry.revokeInstallationTokens("i"))
      await run(registry.findToken("d"))
      await run(registry.revokeToken("d", 1))
      await run(registry.listApps({ limit: 1, offset: 0 }))
      await run(
        registry.listInstallations({ appId: "1", activeOnly: true }, { limit: 1, after: { createdAt: 1, id: "i" } })
      )
      expect(seen.length).toBeGreaterThan(15)
      for (const statement of seen) {
        expect((statement.sql.match(/\?/g) ?? []).length, statement.sql).toBe(statement.params.length)
      }
    }
  })
})

describe("SqlRegistry: an unknown app costs what a known one does (SPEC §2)", () => {
  /** A driver that records every statement and finds nothing. */
  const recordingDriver = (seen: Array<SqlStatement>): SqlDriver => ({
    dialect: "sqlite",
    all: async (sql, params = []) => {
      seen.push({ sql, params })
      return []
    },
    first: async (sql, params = []) => {
      seen.push({ sql, params })
      return undefined
    },
    run: async (sql, params = []) => {
      seen.push({ sql, params })
      return { changes: 0 }
    },
    batch: async (statements) => {
      seen.push(...statements)
      return statements.map(() => ({ rows: [], changes: 0 }))
    },
    isUniqueViolation: () => false
  })

  it("reads the database for an app id that is no row id (a JWT's `iss` of any spelling) as for an unknown one", async () => {
    // A JWT whose `iss` is not an integer must not be refused sooner than one naming an unknown app:
    // the time of the answer would tell an app id's format, and which ids name nothing without a read.
    const statementsFor = async (appId: string) => {
      const seen: Array<SqlStatement> = []
      const found = await Effect.runPromise(SqlRegistry.make(recordingDriver(seen)).getApp(appId))
      expect(found._tag).toBe("None")
      return seen.map((s) => s.sql)
    }
    const unknownRow = await statementsFor("987654")
    expect(unknownRow.length).toBe(2)
    expect(await statementsFor("not-an-app")).toEqual(unknownRow)
    expect(await statementsFor("0")).toEqual(unknownRow)
    expect(await statementsFor("99999999999999999999")).toEqual(unknownRow)
  })
})
