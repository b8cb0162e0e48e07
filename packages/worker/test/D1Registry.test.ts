import { env } from "cloudflare:test"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { describe, expect, it } from "vitest"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import {
  APP_LISTING_KEYS_SQL,
  APP_LISTING_SQL,
  installationCountSql,
  installationListingSql,
  type ListingShape,
  PRUNE_TOKENS_SQL,
  TOKEN_STANDING_SQL
} from "@icr-apps/core/issuer/SqlStatements"
import * as D1 from "../src/sql/d1.js"

/** The issuer's registry on D1, as the worker makes it. */
const D1Registry = { make: (db: D1Database) => SqlRegistry.make(D1.make(db)) }
import { StoredToken } from "@icr-apps/core/api/Tokens"

/** The plan SQLite (D1) chooses for `sql`, one line per step. */
const planOf = async (sql: string, values: ReadonlyArray<unknown>): Promise<Array<string>> => {
  const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...values)
    .all<{ detail: string }>()
  return results.map((row) => row.detail)
}

const shapes: Array<ListingShape> = [false, true].flatMap((byApp) =>
  [false, true].flatMap((activeOnly) => [false, true].map((keyset) => ({ byApp, activeOnly, keyset })))
)

// The listings must stay cheap as installations grow: each reads its index in (created_at, id)
// order and stops after a page, rather than reading and sorting the table (migrations/0003).
describe("D1 listing queries walk an index in listing order", () => {
  for (const shape of shapes) {
    const name = `installations ${JSON.stringify(shape)}`
    it(name, async () => {
      const values = [
        ...(shape.byApp ? [1] : []),
        ...(shape.keyset ? [1_700_000_000_000, crypto.randomUUID()] : []),
        11,
        0
      ]
      const plan = await planOf(installationListingSql(shape), values)
      expect(plan.join("\n"), name).not.toMatch(/TEMP B-TREE/)
      const installations = plan.find((step) => / i\b/.test(step)) ?? ""
      expect(installations, plan.join("\n")).toMatch(/USING (COVERING )?INDEX installations_/)
      if (shape.byApp) expect(installations).toMatch(/^SEARCH/)
      if (shape.keyset) expect(installations).toMatch(/\(created_at,id\)>\(\?,\?\)/)
      const count = await planOf(installationCountSql(shape), shape.byApp ? [1] : [])
      if (shape.byApp) expect(count.join("\n")).toMatch(/SEARCH i USING (COVERING )?INDEX/)
    })
  }
  it("apps, with their keys", async () => {
    const apps = await planOf(APP_LISTING_SQL, [11, 0])
    expect(apps.join("\n")).toMatch(/SCAN apps USING (COVERING )?INDEX apps_by_creation/)
    expect(apps.join("\n")).not.toMatch(/TEMP B-TREE/)
    const keys = await planOf(APP_LISTING_KEYS_SQL, [10, 0])
    expect(keys.join("\n")).toMatch(/SEARCH app_keys USING INDEX app_keys_by_app/)
  })
  it("a token's standing: by primary key, then each join by primary key", async () => {
    const plan = (await planOf(TOKEN_STANDING_SQL, ["0".repeat(64)])).join("\n")
    expect(plan).toMatch(/SEARCH t USING PRIMARY KEY \(digest=\?\)/)
    expect(plan).toMatch(/SEARCH i USING INDEX sqlite_autoindex_installations_1 \(id=\?\)/)
    expect(plan).toMatch(/SEARCH a USING INTEGER PRIMARY KEY \(rowid=\?\)/)
    expect(plan).not.toMatch(/SCAN/)
  })
  it("pruning: expired tokens off tokens_by_expiry, oldest first, never a scan of the table", async () => {
    const plan = (await planOf(PRUNE_TOKENS_SQL, [Date.now(), 100])).join("\n")
    expect(plan).toMatch(/SEARCH tokens USING (COVERING )?INDEX tokens_by_expiry \(expires_at<\?\)/)
    expect(plan).not.toMatch(/TEMP B-TREE|SCAN tokens/)
  })
})

/** `db`, counting its round trips: every `batch`, `exec`, and statement `first`/`run`/`all`/`raw`. */
const counted = (db: D1Database) => {
  const trips: Array<string> = []
  const statement = (s: D1PreparedStatement, sql: string): D1PreparedStatement =>
    new Proxy(s, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver)
        if (typeof value !== "function") return value
        if (prop === "bind") return (...args: Array<unknown>) => statement(value.apply(target, args), sql)
        if (prop === "first" || prop === "run" || prop === "all" || prop === "raw") {
          return (...args: Array<unknown>) => {
            trips.push(sql)
            return value.apply(target, args)
          }
        }
        return value.bind(target)
      }
    })
  const counting = new Proxy(db, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver)
      if (prop === "prepare") return (sql: string) => statement(target.prepare(sql), sql)
      if (prop === "batch" || prop === "exec") {
        return (...args: Array<unknown>) => {
          trips.push(String(prop))
          return (value as (...a: Array<unknown>) => unknown).apply(target, args)
        }
      }
      return typeof value === "function" ? value.bind(target) : value
    }
  })
  return { db: counting, trips }
}

const tokenOf = (fields: Partial<StoredToken> & Pick<StoredToken, "kind" | "appId">, now: number) =>
  new StoredToken({
    id: crypto.randomUUID(),
    permissions: {},
    createdAt: now,
    expiresAt: now + 3_600_000,
    appEpoch: 0,
    installationEpoch: 0,
    ...fields
  })
const digestOf = () =>
  [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("")

// Issue 12: a token, its revocation, what it stands on and the SPEC §5 epochs: one D1 statement per use.
describe("a token with its standing, epochs included, is one D1 statement", () => {
  it("for installation tokens and app tokens, before and after kill switches, revocation and uninstall", async () => {
    const registry = D1Registry.make(env.DB)
    const now = Date.now()
    const app = await Effect.runPromise(
      registry.createApp(
        { name: `standing-${now}`, permissions: {}, createdAt: now, updatedAt: now },
        { id: crypto.randomUUID(), fingerprint: `SHA256:${now}`, spki: "", createdAt: now }
      )
    )
    const installation = await Effect.runPromise(
      registry.createInstallation({
        id: crypto.randomUUID(),
        appId: app.id,
        organizationId: crypto.randomUUID(),
        permissions: { organization_info: "VIEW" },
        createdAt: now,
        updatedAt: now,
        suspendedAt: null
      })
    )
    const ofInstallation = tokenOf(
      {
        kind: "installation",
        appId: app.id,
        installationId: installation.id,
        organizationId: installation.organizationId,
        permissions: { organization_info: "VIEW" }
      },
      now
    )
    const ofApp = tokenOf({ kind: "app", appId: app.id }, now)
    const [installationDigest, appDigest] = [digestOf(), digestOf()]
    await Effect.runPromise(registry.putToken(installationDigest, ofInstallation))
    await Effect.runPromise(registry.putToken(appDigest, ofApp))

    const { db, trips } = counted(env.DB)
    const find = (digest: string) => Effect.runPromise(D1Registry.make(db).findToken(digest)).then(Option.getOrThrow)
    const before = await find(installationDigest)
    expect(before.token).toEqual(ofInstallation)
    expect(before.revoked).toBe(false)
    expect(Option.getOrThrow(before.installation)).toMatchObject({
      id: installation.id,
      appId: app.id,
      appName: app.name,
      tokenEpoch: 0,
      appTokenEpoch: 0
    })
    expect(Option.isNone(before.appTokenEpoch)).toBe(true)
    expect(trips).toEqual([TOKEN_STANDING_SQL])

    await Effect.runPromise(registry.revokeInstallationTokens(installation.id))
    await Effect.runPromise(registry.revokeAppTokens(app.id))
    await Effect.runPromise(registry.revokeAppTokens(app.id))
    const after = await find(installationDigest)
    expect(Option.getOrThrow(after.installation)).toMatchObject({ tokenEpoch: 1, appTokenEpoch: 2 })
    const appToken = await find(appDigest)
    expect(appToken.token).toEqual(ofApp)
    expect(Option.getOrThrow(appToken.appTokenEpoch)).toBe(2)
    expect(Option.isNone(appToken.installation)).toBe(true)

    await Effect.runPromise(registry.revokeToken(appDigest, now + 1))
    expect((await find(appDigest)).revoked).toBe(true)
    expect((await find(installationDigest)).revoked).toBe(false)
    await Effect.runPromise(registry.deleteInstallation(installation.id))
    expect(Option.isNone((await find(installationDigest)).installation)).toBe(true)
    expect(Option.isNone(await Effect.runPromise(D1Registry.make(db).findToken(digestOf())))).toBe(true)
    expect(trips).toHaveLength(7)
  })
  it("a mint prunes records that expired before it, and nothing else", async () => {
    const registry = D1Registry.make(env.DB)
    const now = Date.now()
    const expired = digestOf()
    const live = digestOf()
    await Effect.runPromise(
      registry.putToken(
        expired,
        tokenOf({ kind: "app", appId: "1", createdAt: now - 7_200_000, expiresAt: now - 1 }, now)
      )
    )
    await Effect.runPromise(registry.putToken(live, tokenOf({ kind: "app", appId: "1" }, now)))
    const rows = await env.DB.prepare("SELECT digest FROM tokens WHERE digest IN (?, ?)").bind(expired, live).all()
    expect(rows.results).toEqual([{ digest: live }])
  })
})

describe("installation epochs", () => {
  it("bumps an installation's epoch exactly when a suspension begins or its permissions change (Registry.bumpsEpoch)", async () => {
    const registry = D1Registry.make(env.DB)
    const now = Date.now()
    const app = await Effect.runPromise(
      registry.createApp(
        { name: `bumps-${now}`, permissions: {}, createdAt: now, updatedAt: now },
        { id: crypto.randomUUID(), fingerprint: `SHA256:b${now}`, spki: "", createdAt: now }
      )
    )
    const { id } = await Effect.runPromise(
      registry.createInstallation({
        id: crypto.randomUUID(),
        appId: app.id,
        organizationId: crypto.randomUUID(),
        permissions: { organization_info: "VIEW", organization_members: "VIEW" },
        createdAt: now,
        updatedAt: now,
        suspendedAt: null
      })
    )
    const epochAfter = async (change: Parameters<typeof registry.updateInstallation>[1]) =>
      (await Effect.runPromise(registry.updateInstallation(id, change))).tokenEpoch
    expect(await epochAfter({ suspendedAt: now, updatedAt: now })).toBe(1)
    expect(await epochAfter({ suspendedAt: now, updatedAt: now })).toBe(1) // already suspended
    expect(await epochAfter({ suspendedAt: null, updatedAt: now })).toBe(1) // unsuspending ends nothing
    // The same permissions, in another order: no change.
    expect(
      await epochAfter({ permissions: { organization_members: "VIEW", organization_info: "VIEW" }, updatedAt: now })
    ).toBe(1)
    expect(await epochAfter({ permissions: { organization_info: "VIEW" }, updatedAt: now })).toBe(2)
    expect(await epochAfter({ permissions: { organization_info: "VIEW" }, suspendedAt: now, updatedAt: now })).toBe(3)
    expect(await epochAfter({ permissions: {}, suspendedAt: now, updatedAt: now })).toBe(4)
    expect(await epochAfter({ updatedAt: now })).toBe(4)
  })
})
