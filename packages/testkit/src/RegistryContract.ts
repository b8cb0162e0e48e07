/**
 * The contract every issuer `Registry` obeys (SPEC §4, §5, §9), as a suite any storage runs
 * unchanged: memory, D1 in workerd, SQLite under Node, Deno and Bun, Postgres. The same outcomes,
 * exactly, on every backend — including under real concurrency, where an engine that runs writes in
 * parallel (Postgres) would otherwise let two requests pass the 25-key cap or add one key twice.
 *
 * Every test makes its own apps (unique names), so the suite runs on a database other suites share.
 */
import { MAX_KEYS_PER_APP } from "@icr-apps/core/api/Apps"
import { StoredToken } from "@icr-apps/core/api/Tokens"
import {
  type AppRecord,
  type InstallationRecord,
  type KeyRecord,
  PRUNE_BATCH,
  Registry,
  type RegistryFailure
} from "@icr-apps/core/issuer/Registry"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type { TestRunner } from "./TestRunner.js"

/** How many requests each race sends at once. */
const RACERS = 12

const FULL = { organization_info: "VIEW", organization_inventory: "WRITE" } as const

/** Registers the suite for a registry layer (built once for the suite) with the given runner's functions. */
export const registryContract = (
  name: string,
  makeLayer: () => Layer.Layer<Registry, unknown> | Promise<Layer.Layer<Registry, unknown>>,
  { afterAll, beforeAll, describe, expect, it }: TestRunner
) =>
  describe(`Registry contract: ${name}`, () => {
    let runtime: ManagedRuntime.ManagedRuntime<Registry, unknown>
    beforeAll(async () => {
      runtime = ManagedRuntime.make(await makeLayer())
      await runtime.runtime()
    }, 60_000)
    afterAll?.(() => runtime?.dispose())

    /** Runs an operation on the registry; its failure comes back as a value, its tag compared exactly. */
    const run = <A, E>(f: (registry: Registry["Type"]) => Effect.Effect<A, E>): Promise<A> =>
      runtime.runPromise(Effect.flatMap(Registry, f))
    const attempt = <A, E>(f: (registry: Registry["Type"]) => Effect.Effect<A, E>): Promise<Either.Either<A, E>> =>
      runtime.runPromise(Effect.either(Effect.flatMap(Registry, f)))
    const tagOf = <A>(result: Either.Either<A, RegistryFailure>): string =>
      Either.isRight(result) ? "ok" : result.left._tag

    let counter = 0
    const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`
    const uuid = () => crypto.randomUUID()
    /** A distinct key record (the registry stores keys as given; their checks are the issuer's). */
    const newKey = (createdAt = Date.now()): Omit<KeyRecord, "appId" | "notBefore"> => ({
      id: uuid(),
      fingerprint: `SHA256:${btoa(uuid())}`,
      spki: btoa(`spki-${uuid()}`),
      createdAt
    })
    const newApp = async (permissions: Record<string, string> = FULL, createdAt = Date.now()): Promise<AppRecord> =>
      run((r) => r.createApp({ name: unique("app"), permissions, createdAt, updatedAt: createdAt }, newKey(createdAt)))
    const newInstallation = (appId: string, createdAt = Date.now(), permissions: Record<string, string> = FULL) =>
      run((r) =>
        r.createInstallation({
          id: uuid(),
          appId,
          organizationId: uuid(),
          permissions,
          createdAt,
          updatedAt: createdAt,
          suspendedAt: null
        })
      )
    const appOf = (appId: string) => run((r) => r.getApp(appId)).then(Option.getOrThrow)
    const installationOf = (id: string) => run((r) => r.getInstallation(id)).then(Option.getOrThrow)
    const token = (fields: Partial<StoredToken> & Pick<StoredToken, "kind" | "appId">, createdAt = Date.now()) =>
      new StoredToken({
        id: uuid(),
        permissions: { organization_info: "VIEW" },
        createdAt,
        expiresAt: createdAt + 3_600_000,
        appEpoch: 0,
        installationEpoch: 0,
        ...fields
      })
    const digest = () =>
      Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("")

    describe("apps and keys", () => {
      it("creates an app with its first key, and reads it back exactly", async () => {
        const key = newKey(1_700_000_000_123)
        const name = unique("exact")
        const created = await run((r) =>
          r.createApp(
            {
              name,
              permissions: { organization_inventory: "REQUEST", organization_info: "VIEW" },
              createdAt: 1_700_000_000_123,
              updatedAt: 1_700_000_000_456
            },
            key
          )
        )
        expect(created.id).toMatch(/^[1-9][0-9]*$/)
        const read = await appOf(created.id)
        expect(read).toEqual({
          id: created.id,
          name,
          permissions: { organization_info: "VIEW", organization_inventory: "REQUEST" },
          createdAt: 1_700_000_000_123,
          updatedAt: 1_700_000_000_456,
          tokenEpoch: 0,
          keys: [{ ...key, appId: created.id, notBefore: null }]
        })
        expect(created).toEqual(read)
      })

      it("names no app by an unknown or malformed id", async () => {
        for (const id of ["999999999", "0", "-1", "abc", "1.5", "", "1e3", "12345678901234567890"]) {
          expect(Option.isNone(await run((r) => r.getApp(id))), id).toBe(true)
        }
      })

      it("refuses a taken name (NameTaken), also when racing for it", async () => {
        const app = await newApp()
        const again = await attempt((r) =>
          r.createApp({ name: app.name, permissions: FULL, createdAt: 1, updatedAt: 1 }, newKey())
        )
        expect(Either.isLeft(again) && again.left).toEqual(
          expect.objectContaining({ _tag: "NameTaken", name: app.name })
        )
        const name = unique("race")
        const racers = await Promise.all(
          Array.from({ length: RACERS }, () =>
            attempt((r) => r.createApp({ name, permissions: FULL, createdAt: 1, updatedAt: 1 }, newKey()))
          )
        )
        expect(racers.map(tagOf).sort()).toEqual([...Array(RACERS - 1).fill("NameTaken"), "ok"])
      })

      it("adds keys up to the cap, then KeyLimitReached; the same key twice is KeyExists", async () => {
        const app = await newApp()
        const first = app.keys[0]!
        const same = await attempt((r) => r.addKey({ ...newKey(), fingerprint: first.fingerprint, appId: app.id }))
        expect(tagOf(same)).toBe("KeyExists")
        for (let i = 1; i < MAX_KEYS_PER_APP; i++) {
          const key = { ...newKey(1_700_000_000_000 + i), appId: app.id }
          expect(await run((r) => r.addKey(key))).toEqual({ ...key, notBefore: null })
        }
        const over = await attempt((r) => r.addKey({ ...newKey(), appId: app.id }))
        expect(Either.isLeft(over) && over.left).toEqual(
          expect.objectContaining({ _tag: "KeyLimitReached", limit: MAX_KEYS_PER_APP })
        )
        // At the cap, a duplicate is still reported as the duplicate it is.
        expect(
          tagOf(await attempt((r) => r.addKey({ ...newKey(), fingerprint: first.fingerprint, appId: app.id })))
        ).toBe("KeyExists")
        const read = await appOf(app.id)
        expect(read.keys.length).toBe(MAX_KEYS_PER_APP)
        // Oldest key first.
        expect(read.keys.map((k) => k.createdAt)).toEqual([...read.keys.map((k) => k.createdAt)].sort((a, b) => a - b))
      })

      it("holds the key cap under concurrent additions: exactly the room left succeeds", async () => {
        const app = await newApp()
        const racers = await Promise.all(
          Array.from({ length: MAX_KEYS_PER_APP + 5 }, () => attempt((r) => r.addKey({ ...newKey(), appId: app.id })))
        )
        const tags = racers.map(tagOf)
        expect(tags.filter((t) => t === "ok").length).toBe(MAX_KEYS_PER_APP - 1)
        expect(tags.filter((t) => t === "KeyLimitReached").length).toBe(6)
        expect((await appOf(app.id)).keys.length).toBe(MAX_KEYS_PER_APP)
      })

      it("adds one key once under concurrent additions of it: one succeeds, the rest are KeyExists", async () => {
        const app = await newApp()
        const key = newKey()
        const racers = await Promise.all(
          Array.from({ length: RACERS }, () => attempt((r) => r.addKey({ ...key, id: uuid(), appId: app.id })))
        )
        expect(racers.map(tagOf).sort()).toEqual([...Array(RACERS - 1).fill("KeyExists"), "ok"])
        expect((await appOf(app.id)).keys.filter((k) => k.fingerprint === key.fingerprint).length).toBe(1)
      })

      it("adds no key to an unknown app (AppMissing)", async () => {
        expect(tagOf(await attempt((r) => r.addKey({ ...newKey(), appId: "999999999" })))).toBe("AppMissing")
        expect(tagOf(await attempt((r) => r.addKey({ ...newKey(), appId: "not-an-id" })))).toBe("AppMissing")
      })

      it("deletes a key with its kill switch, and remembers the deletion for the same key registered again", async () => {
        const app = await newApp()
        const [first] = app.keys
        const second = await run((r) => r.addKey({ ...newKey(), appId: app.id }))
        await run((r) => r.deleteKey(app.id, first!.id, 1_700_000_123_456))
        const after = await appOf(app.id)
        expect(after.keys.map((k) => k.id)).toEqual([second.id])
        expect(after.tokenEpoch).toBe(app.tokenEpoch + 1)
        // The same key (same fingerprint) again: it refuses JWTs issued up to its deletion.
        const again = await run((r) => r.addKey({ ...newKey(), fingerprint: first!.fingerprint, appId: app.id }))
        expect(again.notBefore).toBe(1_700_000_123_456)
        expect((await appOf(app.id)).keys.find((k) => k.id === again.id)?.notBefore).toBe(1_700_000_123_456)
        // Deleted and registered again later: the latest deletion counts.
        await run((r) => r.deleteKey(app.id, again.id, 1_700_000_999_000))
        const third = await run((r) => r.addKey({ ...newKey(), fingerprint: first!.fingerprint, appId: app.id }))
        expect(third.notBefore).toBe(1_700_000_999_000)
        // Another app registering that key is not bound by this app's deletions.
        const other = await newApp()
        expect(
          (await run((r) => r.addKey({ ...newKey(), fingerprint: first!.fingerprint, appId: other.id }))).notBefore
        ).toBe(null)
      })

      it("deletes nothing it should not: KeyMissing for an unknown key or another app's, AppMissing for no app", async () => {
        const app = await newApp()
        const other = await newApp()
        expect(tagOf(await attempt((r) => r.deleteKey(app.id, uuid(), 1)))).toBe("KeyMissing")
        expect(tagOf(await attempt((r) => r.deleteKey(app.id, other.keys[0]!.id, 1)))).toBe("KeyMissing")
        expect(tagOf(await attempt((r) => r.deleteKey("999999999", app.keys[0]!.id, 1)))).toBe("AppMissing")
        expect(tagOf(await attempt((r) => r.deleteKey("x", app.keys[0]!.id, 1)))).toBe("AppMissing")
        expect((await appOf(other.id)).keys.length).toBe(1)
        expect((await appOf(app.id)).tokenEpoch).toBe(0)
        expect((await appOf(other.id)).tokenEpoch).toBe(0)
      })

      it("revokes an app's tokens by moving its epoch on; AppMissing for no app", async () => {
        const app = await newApp()
        await run((r) => r.revokeAppTokens(app.id))
        await run((r) => r.revokeAppTokens(app.id))
        expect((await appOf(app.id)).tokenEpoch).toBe(2)
        expect(tagOf(await attempt((r) => r.revokeAppTokens("999999999")))).toBe("AppMissing")
      })

      it("lists apps in creation order with their keys, and counts them all", async () => {
        const created: Array<AppRecord> = []
        for (let i = 0; i < 3; i++) created.push(await newApp(FULL, 4_000_000_000_000 + i))
        await run((r) => r.addKey({ ...newKey(4_000_000_000_100), appId: created[1]!.id }))
        const all: Array<AppRecord> = []
        let total = -1
        for (let offset = 0; ; offset += 7) {
          const page = await run((r) => r.listApps({ limit: 7, offset }))
          expect(page.items.length).toBeLessThanOrEqual(7)
          all.push(...page.items)
          total = page.total
          if (!page.more) break
        }
        expect(all.length).toBe(total)
        const ours = all.filter((a) => created.some((c) => c.id === a.id))
        expect(ours.map((a) => a.id)).toEqual(created.map((c) => c.id))
        expect(ours.map((a) => a.keys.length)).toEqual([1, 2, 1])
        const order = all.map((a) => a.createdAt)
        expect(order).toEqual([...order].sort((a, b) => a - b))
        expect((await run((r) => r.listApps({ limit: 5, offset: total }))).items).toEqual([])
      })
    })

    describe("installations", () => {
      it("creates an installation with its app's name and both epochs; one per app and organization", async () => {
        const app = await newApp()
        await run((r) => r.revokeAppTokens(app.id))
        const id = uuid()
        const organizationId = uuid()
        const record = await run((r) =>
          r.createInstallation({
            id,
            appId: app.id,
            organizationId,
            permissions: { organization_info: "VIEW" },
            createdAt: 1_700_000_000_001,
            updatedAt: 1_700_000_000_002,
            suspendedAt: null
          })
        )
        // The registry keeps the id it was given, or (split over shards) puts its shard in front of it.
        expect(
          record.id === id || (record.id.slice(4, 14) === id.slice(4, 14) && record.id.slice(14) === `8${id.slice(15)}`)
        ).toBe(true)
        const expected: InstallationRecord = {
          id: record.id,
          appId: app.id,
          appName: app.name,
          organizationId,
          permissions: { organization_info: "VIEW" },
          createdAt: 1_700_000_000_001,
          updatedAt: 1_700_000_000_002,
          suspendedAt: null,
          tokenEpoch: 0,
          appTokenEpoch: 1
        }
        expect(record).toEqual(expected)
        expect(await installationOf(record.id)).toEqual(expected)
        const twice = await attempt((r) =>
          r.createInstallation({ ...expected, id: uuid(), createdAt: 1, updatedAt: 1, suspendedAt: null })
        )
        expect(tagOf(twice)).toBe("AlreadyInstalled")
        expect(tagOf(await attempt((r) => r.createInstallation({ ...expected, id: uuid(), appId: "999999999" })))).toBe(
          "AppMissing"
        )
        expect(Option.isNone(await run((r) => r.getInstallation(uuid())))).toBe(true)
      })

      it("installs an app in an organization once when racing for it", async () => {
        const app = await newApp()
        const organizationId = uuid()
        const racers = await Promise.all(
          Array.from({ length: RACERS }, () =>
            attempt((r) =>
              r.createInstallation({
                id: uuid(),
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
        expect(racers.map(tagOf).sort()).toEqual([...Array(RACERS - 1).fill("AlreadyInstalled"), "ok"])
        const listed = await run((r) =>
          r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 100, offset: 0 })
        )
        expect(listed.total).toBe(1)
      })

      it("moves the installation's epoch on exactly when a suspension begins or its permissions change", async () => {
        const app = await newApp()
        const { id } = await newInstallation(app.id, Date.now(), {
          organization_info: "VIEW",
          organization_inventory: "WRITE"
        })
        const epochAfter = async (change: Parameters<Registry["Type"]["updateInstallation"]>[1]) =>
          (await run((r) => r.updateInstallation(id, change))).tokenEpoch
        // The same permissions, in another key order: no change.
        expect(
          await epochAfter({
            permissions: { organization_inventory: "WRITE", organization_info: "VIEW" },
            updatedAt: 2
          })
        ).toBe(0)
        expect(await epochAfter({ permissions: { organization_info: "VIEW" }, updatedAt: 3 })).toBe(1)
        expect(
          await epochAfter({
            permissions: { organization_info: "VIEW", organization_inventory: "WRITE" },
            updatedAt: 4
          })
        ).toBe(2)
        expect(await epochAfter({ suspendedAt: 5, updatedAt: 5 })).toBe(3)
        // Already suspended: suspending again ends nothing new; unsuspending ends nothing, revives nothing.
        expect(await epochAfter({ suspendedAt: 6, updatedAt: 6 })).toBe(3)
        expect(await epochAfter({ suspendedAt: null, updatedAt: 7 })).toBe(3)
        expect(await epochAfter({ updatedAt: 8 })).toBe(3)
        const read = await installationOf(id)
        expect({ suspendedAt: read.suspendedAt, updatedAt: read.updatedAt, tokenEpoch: read.tokenEpoch }).toEqual({
          suspendedAt: null,
          updatedAt: 8,
          tokenEpoch: 3
        })
        expect(tagOf(await attempt((r) => r.updateInstallation(uuid(), { updatedAt: 1 })))).toBe("InstallationMissing")
      })

      it("bumps the epoch once per kill switch under concurrent suspensions", async () => {
        const app = await newApp()
        const { id } = await newInstallation(app.id)
        await Promise.all(
          Array.from({ length: RACERS }, (_, i) =>
            run((r) => r.updateInstallation(id, { suspendedAt: 100 + i, updatedAt: 100 + i }))
          )
        )
        expect((await installationOf(id)).tokenEpoch).toBe(1)
      })

      it("uninstalls (telling the app), revokes an installation's tokens; InstallationMissing when gone", async () => {
        const app = await newApp()
        const { id } = await newInstallation(app.id)
        expect(await run((r) => r.revokeInstallationTokens(id))).toEqual({ appId: app.id })
        expect((await installationOf(id)).tokenEpoch).toBe(1)
        expect(await run((r) => r.deleteInstallation(id))).toEqual({ appId: app.id })
        expect(Option.isNone(await run((r) => r.getInstallation(id)))).toBe(true)
        expect(tagOf(await attempt((r) => r.deleteInstallation(id)))).toBe("InstallationMissing")
        expect(tagOf(await attempt((r) => r.revokeInstallationTokens(id)))).toBe("InstallationMissing")
      })

      it("reads an app, its keys and an installation together, each absent on its own", async () => {
        const app = await newApp()
        const installation = await newInstallation(app.id)
        const both = await run((r) => r.getAppWithInstallation(app.id, installation.id))
        expect(both).toEqual({ app: Option.some(await appOf(app.id)), installation: Option.some(installation) })
        const noInstallation = await run((r) => r.getAppWithInstallation(app.id, uuid()))
        expect(Option.isSome(noInstallation.app) && Option.isNone(noInstallation.installation)).toBe(true)
        const noApp = await run((r) => r.getAppWithInstallation("not-an-id", installation.id))
        expect(Option.isNone(noApp.app) && Option.isSome(noApp.installation)).toBe(true)
      })

      it("pages installations by offset and by keyset, in (createdAt, id) order, filtered by app and activity", async () => {
        const app = await newApp()
        const at = 5_000_000_000_000
        // Two share a createdAt: the id breaks the tie.
        const made: Array<InstallationRecord> = []
        for (const offset of [0, 1, 1, 2, 3, 4, 5]) made.push(await newInstallation(app.id, at + offset))
        await run((r) => r.updateInstallation(made[3]!.id, { suspendedAt: at + 10, updatedAt: at + 10 }))
        const order = [...made].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)).map((i) => i.id)
        const active = order.filter((id) => id !== made[3]!.id)

        const all = await run((r) =>
          r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 100, offset: 0 })
        )
        expect({ ids: all.items.map((i) => i.id), total: all.total, more: all.more }).toEqual({
          ids: order,
          total: 7,
          more: false
        })

        const byOffset = await run((r) =>
          r.listInstallations({ appId: app.id, activeOnly: true }, { limit: 2, offset: 2 })
        )
        expect({ ids: byOffset.items.map((i) => i.id), total: byOffset.total, more: byOffset.more }).toEqual({
          ids: active.slice(2, 4),
          total: 6,
          more: true
        })
        const walked: Array<string> = []
        let after: { createdAt: number; id: string } | undefined
        for (;;) {
          const page = await run((r) =>
            r.listInstallations(
              { appId: app.id, activeOnly: true },
              after === undefined ? { limit: 4, offset: 0 } : { limit: 4, after }
            )
          )
          expect(page.total).toBe(6)
          walked.push(...page.items.map((i) => i.id))
          const last = page.items.at(-1)
          if (!page.more || last === undefined) break
          after = { createdAt: last.createdAt, id: last.id }
        }
        expect(walked).toEqual(active)
        // A keyset page does not shift when an earlier installation leaves the listing.
        const tie = made[1]!.createdAt
        const afterTie = await run((r) =>
          r.listInstallations(
            { appId: app.id, activeOnly: true },
            { limit: 10, after: { createdAt: tie, id: order[1]! } }
          )
        )
        await run((r) => r.deleteInstallation(order[0]!))
        const again = await run((r) =>
          r.listInstallations(
            { appId: app.id, activeOnly: true },
            { limit: 10, after: { createdAt: tie, id: order[1]! } }
          )
        )
        expect(again.items.map((i) => i.id)).toEqual(afterTie.items.map((i) => i.id))
        expect(again.total).toBe(afterTie.total - 1)
        // Every app's installations include this app's; an app id that names nothing lists nothing.
        const everyone = await run((r) => r.listInstallations({ activeOnly: false }, { limit: 100, offset: 0 }))
        expect(everyone.total).toBeGreaterThanOrEqual(6)
        expect(
          await run((r) => r.listInstallations({ appId: "nope", activeOnly: false }, { limit: 10, offset: 0 }))
        ).toEqual({
          items: [],
          more: false,
          total: 0
        })
        expect(
          (await run((r) => r.listInstallations({ appId: app.id, activeOnly: false }, { limit: 10, offset: 50 }))).items
        ).toEqual([])
      })
    })

    describe("tokens, by digest", () => {
      it("stores a token with its standing and reads it back, with both epochs, in one read", async () => {
        const app = await newApp()
        const installation = await newInstallation(app.id)
        const ofInstallation = token({
          kind: "installation",
          appId: app.id,
          installationId: installation.id,
          organizationId: installation.organizationId
        })
        const ofApp = token({ kind: "app", appId: app.id, permissions: FULL })
        const [d1, d2] = [digest(), digest()]
        await run((r) => r.putToken(d1, ofInstallation))
        await run((r) => r.putToken(d2, ofApp))
        const one = Option.getOrThrow(await run((r) => r.findToken(d1, r.tokenShard(ofInstallation))))
        expect({ ...one.token }).toEqual({ ...ofInstallation })
        expect(one.revoked).toBe(false)
        expect(one.installation).toEqual(Option.some(installation))
        expect(Option.isNone(one.appTokenEpoch)).toBe(true)
        const two = Option.getOrThrow(await run((r) => r.findToken(d2)))
        expect({ ...two.token }).toEqual({ ...ofApp })
        expect(two.appTokenEpoch).toEqual(Option.some(0))
        expect(Option.isNone(two.installation)).toBe(true)
        // Kill switches show in the standing; the token's own record never changes.
        await run((r) => r.revokeInstallationTokens(installation.id))
        await run((r) => r.revokeAppTokens(app.id))
        const ended = Option.getOrThrow(await run((r) => r.findToken(d1, r.tokenShard(ofInstallation))))
        expect(Option.map(ended.installation, (i) => [i.tokenEpoch, i.appTokenEpoch])).toEqual(Option.some([1, 1]))
        expect({ ...ended.token }).toEqual({ ...ofInstallation })
        expect(Option.getOrThrow(await run((r) => r.findToken(d2))).appTokenEpoch).toEqual(Option.some(1))
        // Uninstalled: the token stands on nothing.
        await run((r) => r.deleteInstallation(installation.id))
        expect(Option.getOrThrow(await run((r) => r.findToken(d1, r.tokenShard(ofInstallation)))).installation).toEqual(
          Option.none()
        )
        expect(Option.isNone(await run((r) => r.findToken(digest())))).toBe(true)
      })

      it("revokes a token for good; revoking again or an unknown digest changes nothing", async () => {
        const app = await newApp()
        const d = digest()
        await run((r) => r.putToken(d, token({ kind: "app", appId: app.id })))
        await run((r) => r.revokeToken(d, 10))
        await run((r) => r.revokeToken(d, 20))
        await run((r) => r.revokeToken(digest(), 30))
        expect(Option.getOrThrow(await run((r) => r.findToken(d))).revoked).toBe(true)
      })

      it("prunes records that expired before a mint, at most PRUNE_BATCH of them, and nothing else", async () => {
        const app = await newApp()
        // Expired long ago, so they are the oldest records whatever else the database holds.
        const expired = Array.from({ length: 3 }, () => digest())
        for (const [i, d] of expired.entries()) {
          await run((r) => r.putToken(d, token({ kind: "app", appId: app.id, expiresAt: 1_000 + i }, 0)))
        }
        const live = digest()
        await run((r) => r.putToken(live, token({ kind: "app", appId: app.id, expiresAt: Date.now() + 60_000 }, 0)))
        const minted = digest()
        await run((r) => r.putToken(minted, token({ kind: "app", appId: app.id })))
        for (const d of expired) expect(Option.isNone(await run((r) => r.findToken(d)))).toBe(true)
        expect(Option.isSome(await run((r) => r.findToken(live)))).toBe(true)
        expect(Option.isSome(await run((r) => r.findToken(minted)))).toBe(true)
        expect(PRUNE_BATCH).toBeGreaterThanOrEqual(expired.length)
      })

      it("stores every concurrent mint", async () => {
        const app = await newApp()
        const digests = Array.from({ length: RACERS * 2 }, () => digest())
        await Promise.all(digests.map((d) => run((r) => r.putToken(d, token({ kind: "app", appId: app.id })))))
        for (const d of digests) expect(Option.isSome(await run((r) => r.findToken(d)))).toBe(true)
      })
    })
  })
