/**
 * The {@link SqlDriver} over Cloudflare D1: the issuer's storage on Workers is `SqlRegistry` over
 * this. A D1 `batch` runs as one transaction; statements are prepared per call (a D1 prepared
 * statement is a client-side object, cheap to make).
 */
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"

/** SQLite's message for a violated `UNIQUE` or primary-key constraint, as D1 relays it. */
const uniqueViolation = /UNIQUE constraint failed/i

/** A driver over one D1 database binding. */
export const make = (db: D1Database): SqlDriver => ({
  dialect: "sqlite",
  all: async <R>(text: string, params: ReadonlyArray<string | number | null> = []) =>
    (
      await db
        .prepare(text)
        .bind(...params)
        .all<R>()
    ).results,
  first: async <R>(text: string, params: ReadonlyArray<string | number | null> = []) =>
    (await db
      .prepare(text)
      .bind(...params)
      .first<R>()) ?? undefined,
  run: async (text, params = []) => ({
    changes: (
      await db
        .prepare(text)
        .bind(...params)
        .run()
    ).meta.changes
  }),
  batch: async (statements) =>
    (await db.batch<Record<string, unknown>>(statements.map((s) => db.prepare(s.sql).bind(...s.params)))).map(
      (result) => ({ rows: result.results ?? [], changes: result.meta.changes ?? 0 })
    ),
  isUniqueViolation: (e) => e instanceof Error && uniqueViolation.test(e.message)
})
