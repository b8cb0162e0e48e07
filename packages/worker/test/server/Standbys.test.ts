/**
 * Postgres with synchronous standbys (issue 21, STORAGE.md "Postgres with standbys"), on a primary
 * and two standbys started here (test/support/postgresCluster.ts), both applying WAL 400 ms late:
 * `s1` synchronous (`FIRST 1 (s1)`), `s2` asynchronous. Through the real core services
 * (AccessTokens over SqlRegistry over the routed driver), a revocation or kill switch acknowledged
 * is refused on the very next use served by the standby; a token used the moment it is minted is
 * found on the primary; a standby that is not synchronous never decides standing, at start or later.
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import * as AccessTokens from "@icr-apps/core/issuer/AccessTokens"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { Registry } from "@icr-apps/core/issuer/Registry"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { statementsFor } from "@icr-apps/core/issuer/SqlStatements"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ConfigError } from "../../src/server/Config.js"
import { startIssuer } from "../../src/server/Issuer.js"
import { listen } from "../../src/server/node.js"
import { issuerMigrations, migrate } from "../../src/sql/migrate.js"
import { openPostgres } from "../../src/sql/postgres.js"
import { routeOf, unlistedStatements } from "../../src/sql/postgresRoutes.js"
import {
  openRoutedPostgres,
  parseSynchronousStandbyNames,
  type RoutedPostgresDriver,
  StandbyNotSynchronous,
  synchronousProblems
} from "../../src/sql/postgresStandbys.js"
import { DEFAULT_PG_BIN, type PostgresCluster, startPostgresCluster } from "../support/postgresCluster.js"

const DELAY_MS = 400
const binDir = process.env.ICR_PG_BIN || DEFAULT_PG_BIN
/** Which Postgres this suite runs, for its title: known before the cluster starts. */
const postgresLabel = (() => {
  const server = join(binDir, "postgres")
  if (!existsSync(server)) return `no Postgres server binary in ${binDir}: the suite fails`
  return `${execFileSync(server, ["--version"], { encoding: "utf8" }).trim()} from ${binDir}`
})()

type Services = ManagedRuntime.ManagedRuntime<AccessTokens.AccessTokens | Registry | Entropy.Entropy, never>

/** The issuer's token services over `driver`, wired as the server wires them. */
const servicesOver = (driver: RoutedPostgresDriver): Services =>
  ManagedRuntime.make(
    AccessTokens.layer().pipe(Layer.provideMerge(Layer.mergeAll(SqlRegistry.layer(driver), Entropy.layer)))
  )

describe(`Postgres with synchronous standbys (${postgresLabel}; primary + 2 standbys started here)`, () => {
  let cluster: PostgresCluster
  let driver: RoutedPostgresDriver
  let services: Services
  let standby: postgres.Sql
  let plainPrimary: ReturnType<typeof openPostgres>

  beforeAll(async () => {
    cluster = await startPostgresCluster({
      binDir,
      standbys: [
        { name: "s1", applyDelayMs: DELAY_MS },
        { name: "s2", applyDelayMs: DELAY_MS }
      ],
      synchronousStandbyNames: "FIRST 1 (s1)"
    })
    plainPrimary = openPostgres(cluster.primaryUrl, { poolSize: 2 })
    await migrate(plainPrimary, issuerMigrations("postgres"))
    driver = await openRoutedPostgres(cluster.primaryUrl, { standbyUrls: [cluster.standbys[0]!.url], recheckMs: 0 })
    services = servicesOver(driver)
    standby = postgres(cluster.standbys[0]!.url, { max: 1, onnotice: () => {} })
  }, 120_000)
  afterAll(async () => {
    await services?.dispose()
    await driver?.close()
    await plainPrimary?.close()
    await standby?.end()
    await cluster?.stop()
  })

  let n = 0
  /** A fresh app with one installation. */
  const arrange = () =>
    services.runPromise(
      Effect.gen(function* () {
        const registry = yield* Registry
        const now = Date.now()
        n++
        const app = yield* registry.createApp(
          { name: `standbys-${n}-${now}`, permissions: { organization_info: "VIEW" }, createdAt: now, updatedAt: now },
          { id: `key-${n}`, fingerprint: `SHA256:${n}-${now}`, spki: "spki", createdAt: now }
        )
        const installation = yield* registry.createInstallation({
          id: crypto.randomUUID(),
          appId: app.id,
          organizationId: `org-${n}`,
          permissions: { organization_info: "VIEW" },
          createdAt: now,
          updatedAt: now,
          suspendedAt: null
        })
        return { appId: app.id, keyId: app.keys[0]!.id, installationId: installation.id }
      })
    )
  const mint = (appId: string, installationId: string) =>
    services.runPromise(
      Effect.gen(function* () {
        const tokens = yield* AccessTokens.AccessTokens
        const minted = yield* tokens.mintInstallationToken(appId, installationId, undefined, 0)
        const secret = Redacted.value(minted.secret)
        return { secret, digest: yield* AccessTokens.digestOf(secret) }
      })
    )
  /** A use of the token: "ok" or the refusal's tag. */
  const use = (secret: string) =>
    services
      .runPromise(Effect.either(Effect.flatMap(AccessTokens.AccessTokens, (tokens) => tokens.authenticate(secret))))
      .then((outcome) => (Either.isRight(outcome) ? "ok" : outcome.left._tag))
  /** Waits until the standby has the token's row (so that the next use is served there). */
  const onStandby = async (digest: string) => {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      if ((await standby`SELECT 1 FROM tokens WHERE digest = ${digest}`).length > 0) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error("the standby never applied the mint")
  }
  const revokedOnStandby = async (digest: string) =>
    (
      await standby<
        Array<{ revoked: boolean }>
      >`SELECT revoked_at IS NOT NULL AS revoked FROM tokens WHERE digest = ${digest}`
    )[0]?.revoked
  const run = <A, E>(effect: Effect.Effect<A, E, Registry | AccessTokens.AccessTokens | Entropy.Entropy>) =>
    services.runPromise(Effect.either(effect))

  it("names, by statement identity, where each registry statement runs; none is left to the fallback", () => {
    const S = statementsFor("postgres")
    expect(unlistedStatements()).toEqual([])
    expect(routeOf(S.findToken)).toBe("standing")
    expect(routeOf(S.putToken[0]!)).toBe("mint")
    for (const text of [
      S.revokeToken,
      S.revokeAppTokens,
      S.deleteInstallation,
      S.revokeInstallationTokens,
      ...S.deleteKey
    ])
      expect(routeOf(text)).toBe("killSwitch")
    expect(routeOf(S.updateInstallation(["updated_at = ?", "suspended_at = ?"], ["suspended_at IS NULL"]))).toBe(
      "killSwitch"
    )
    for (const text of [S.app, S.keysOfApp, S.installation]) expect(routeOf(text)).toBe("primary")
    for (const text of [S.addKey, S.createInstallation, ...S.createApp]) expect(routeOf(text)).toBe("write")
    // A statement nobody listed takes the strictest route.
    expect(routeOf("UPDATE tokens SET revoked_at = 1")).toBe("killSwitch")
  })

  it("a token used the moment it is minted is found: the standby (400 ms behind) misses it, the primary answers", async () => {
    const { appId, installationId } = await arrange()
    const { secret, digest } = await mint(appId, installationId)
    const before = driver.routing()
    expect(await use(secret)).toBe("ok")
    const after = driver.routing()
    expect(after.standbyMisses - before.standbyMisses).toBe(1)
    expect(after.standbyHits).toBe(before.standbyHits)
    // Not there yet: the mint committed `on` (flushed on the standby, applied later).
    expect(await revokedOnStandby(digest)).toBeUndefined()
    await onStandby(digest)
    expect(await use(secret)).toBe("ok")
    expect(driver.routing().standbyHits - after.standbyHits).toBe(1)
  })

  it("a revocation acknowledged is refused on the very next use, served by the standby (the ack waited for its apply)", async () => {
    const { appId, installationId } = await arrange()
    const { secret, digest } = await mint(appId, installationId)
    await onStandby(digest)
    expect(await use(secret)).toBe("ok")
    const started = performance.now()
    expect(Either.isRight(await run(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest))))).toBe(true)
    // remote_apply: the acknowledgement came after the standby's 400 ms apply delay.
    expect(performance.now() - started).toBeGreaterThanOrEqual(DELAY_MS * 0.75)
    const before = driver.routing()
    expect(await use(secret)).toBe("InvalidToken")
    expect(driver.routing().standbyHits - before.standbyHits).toBe(1)
  })

  it("control: a revocation committed without remote_apply is not yet on the standby when acknowledged", async () => {
    const { appId, installationId } = await arrange()
    const { digest } = await mint(appId, installationId)
    await onStandby(digest)
    await plainPrimary.run(statementsFor("postgres").revokeToken, [Date.now(), digest])
    expect(await revokedOnStandby(digest)).toBe(false)
  })

  it("a repeated revocation (which changes no row) is acknowledged only once the first is applied on the standby", async () => {
    const { appId, installationId } = await arrange()
    const { secret, digest } = await mint(appId, installationId)
    await onStandby(digest)
    // The first revocation, not waited for (as one whose 503 the operator retries).
    await plainPrimary.run(statementsFor("postgres").revokeToken, [Date.now(), digest])
    expect(await revokedOnStandby(digest)).toBe(false)
    expect(Either.isRight(await run(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest))))).toBe(true)
    expect(await revokedOnStandby(digest)).toBe(true)
    expect(await use(secret)).toBe("InvalidToken")
  })

  const killSwitches: ReadonlyArray<
    readonly [
      string,
      (ids: { appId: string; installationId: string; keyId: string }) => Effect.Effect<unknown, unknown, Registry>
    ]
  > = [
    [
      "installation suspended",
      ({ installationId }) =>
        Effect.flatMap(Registry, (r) =>
          r.updateInstallation(installationId, { suspendedAt: Date.now(), updatedAt: Date.now() })
        )
    ],
    [
      "installation permissions narrowed",
      ({ installationId }) =>
        Effect.flatMap(Registry, (r) =>
          r.updateInstallation(installationId, { permissions: {}, updatedAt: Date.now() })
        )
    ],
    [
      "installation tokens revoked",
      ({ installationId }) => Effect.flatMap(Registry, (r) => r.revokeInstallationTokens(installationId))
    ],
    [
      "installation deleted",
      ({ installationId }) => Effect.flatMap(Registry, (r) => r.deleteInstallation(installationId))
    ],
    ["app tokens revoked", ({ appId }) => Effect.flatMap(Registry, (r) => r.revokeAppTokens(appId))],
    ["app key deleted", ({ appId, keyId }) => Effect.flatMap(Registry, (r) => r.deleteKey(appId, keyId, Date.now()))]
  ]
  for (const [name, pull] of killSwitches)
    it(`kill switch (${name}) acknowledged: the very next use, served by the standby, is refused`, async () => {
      const ids = await arrange()
      const { secret, digest } = await mint(ids.appId, ids.installationId)
      await onStandby(digest)
      expect(await use(secret)).toBe("ok")
      const started = performance.now()
      const outcome = await run(pull(ids) as Effect.Effect<unknown, unknown, Registry>)
      expect(Either.isRight(outcome)).toBe(true)
      expect(performance.now() - started).toBeGreaterThanOrEqual(DELAY_MS * 0.75)
      const before = driver.routing()
      expect(await use(secret)).toBe("InvalidToken")
      expect(driver.routing().standbyHits - before.standbyHits).toBe(1)
    })

  it("the wait is bounded: a kill switch the standby has not applied within the timeout fails (503), never succeeds early", async () => {
    const impatient = await openRoutedPostgres(cluster.primaryUrl, {
      standbyUrls: [cluster.standbys[0]!.url],
      recheckMs: 0,
      applyTimeoutMs: 150
    })
    const impatientServices = servicesOver(impatient)
    try {
      const { appId, installationId } = await arrange()
      const { digest } = await mint(appId, installationId)
      const started = performance.now()
      const outcome = await impatientServices.runPromise(
        Effect.either(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest)))
      )
      const waited = performance.now() - started
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("StorageUnavailable")
      expect(waited).toBeLessThan(DELAY_MS)
      expect(impatient.routing().killSwitchFailures).toBe(1)
    } finally {
      await impatientServices.dispose()
      await impatient.close()
    }
  })

  it("a wait canceled on the server (which commits locally and reports success with a WARNING) is a failure, not an ack", async () => {
    const { appId, installationId } = await arrange()
    const { digest } = await mint(appId, installationId)
    const admin = postgres(cluster.primaryUrl, { max: 1, onnotice: () => {} })
    try {
      const revoking = run(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest)))
      let canceled = 0
      for (const deadline = Date.now() + 2000; canceled === 0 && Date.now() < deadline; ) {
        const rows = await admin<Array<{ canceled: boolean }>>`
          SELECT pg_cancel_backend(pid) AS canceled FROM pg_stat_activity
          WHERE application_name = 'icr-apps issuer (kill switch)' AND wait_event = 'SyncRep'`
        canceled = rows.length
      }
      expect(canceled).toBe(1)
      const outcome = await revoking
      expect(Either.isLeft(outcome) && (outcome.left as { _tag: string })._tag).toBe("StorageUnavailable")
    } finally {
      await admin.end()
    }
  })

  it("refuses at start a standby the primary does not wait for (async s2): a configuration error from startIssuer", async () => {
    const attempt = startIssuer(
      { DATABASE_URL: cluster.primaryUrl, DATABASE_STANDBY_URLS: cluster.standbys[1]!.url, PORT: "0" },
      listen,
      "node",
      { info: () => {}, warn: () => {} }
    )
    await expect(attempt).rejects.toBeInstanceOf(ConfigError)
    const error = (await attempt.catch((e: unknown) => e)) as ConfigError
    expect(error.problems).toEqual([
      "DATABASE_STANDBY_URLS: standby s2 is not in the primary's synchronous_standby_names = 'FIRST 1 (s1)': it is not synchronous",
      "DATABASE_STANDBY_URLS: standby s2 is async on the primary, not synchronous"
    ])
  })

  it("refuses at start standbys of which the primary requires only some (FIRST 1 of 2), accepts ANY 2 of 2", async () => {
    const both = { standbyUrls: cluster.standbys.map((s) => s.url), recheckMs: 0 }
    await cluster.setSynchronousStandbyNames("FIRST 1 (s1, s2)")
    try {
      const refused = await openRoutedPostgres(cluster.primaryUrl, both).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(StandbyNotSynchronous)
      expect((refused as StandbyNotSynchronous).problems[0]).toMatch(/requires 1 of 2 standbys/)
      await cluster.setSynchronousStandbyNames("ANY 2 (s1, s2)")
      const accepted = await openRoutedPostgres(cluster.primaryUrl, both)
      expect(accepted.standbys().map((s) => [s.name, s.trusted])).toEqual([
        ["s1", true],
        ["s2", true]
      ])
      await accepted.close()
    } finally {
      await cluster.setSynchronousStandbyNames("FIRST 1 (s1)")
    }
  })

  it("a standby the primary stops waiting for stops deciding standing at the next check (the primary decides)", async () => {
    const { appId, installationId } = await arrange()
    const { secret, digest } = await mint(appId, installationId)
    await onStandby(digest)
    await cluster.setSynchronousStandbyNames("")
    try {
      await driver.recheck()
      expect(driver.standbys()[0]!.trusted).toBe(false)
      // No synchronous standby now: the revocation is acknowledged at once, the standby still shows the token live …
      expect(Either.isRight(await run(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest))))).toBe(true)
      expect(await revokedOnStandby(digest)).toBe(false)
      // … and the use is decided by the primary.
      const before = driver.routing()
      expect(await use(secret)).toBe("InvalidToken")
      expect(driver.routing().standingOnPrimary - before.standingOnPrimary).toBe(1)
      expect(driver.routing().standbyHits).toBe(before.standbyHits)
    } finally {
      await cluster.setSynchronousStandbyNames("FIRST 1 (s1)")
    }
    // Synchronous again: it serves standing once it has replayed what the primary had when it became so.
    for (const deadline = Date.now() + 5000; !driver.standbys()[0]!.trusted && Date.now() < deadline; )
      await driver.recheck()
    expect(driver.standbys()[0]!.trusted).toBe(true)
  })

  it("a synchronous standby down: kill switches and mints answer 503 within the bound, uses go on from the primary", async () => {
    const { appId, installationId } = await arrange()
    const { secret, digest } = await mint(appId, installationId)
    await onStandby(digest)
    const bounded = await openRoutedPostgres(cluster.primaryUrl, {
      standbyUrls: [cluster.standbys[0]!.url],
      recheckMs: 0,
      applyTimeoutMs: 300
    })
    const boundedServices = servicesOver(bounded)
    await cluster.stopStandby("s1")
    try {
      const timed = async <A, E extends { readonly _tag: string }>(
        effect: Effect.Effect<A, E, AccessTokens.AccessTokens>
      ) => {
        const started = performance.now()
        const outcome = await boundedServices.runPromise(Effect.either(effect))
        return { tag: Either.isLeft(outcome) ? outcome.left._tag : "ok", ms: performance.now() - started }
      }
      const revoked = await timed(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest)))
      expect(revoked.tag).toBe("StorageUnavailable")
      expect(revoked.ms).toBeLessThan(2000)
      const minted = await timed(
        Effect.flatMap(AccessTokens.AccessTokens, (t) => t.mintInstallationToken(appId, installationId, undefined, 0))
      )
      expect(minted.tag).toBe("StorageUnavailable")
      // The revocation was not acknowledged; the use is decided by the primary (the standby does not answer).
      const before = bounded.routing()
      const used = await timed(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.authenticate(secret)))
      expect(used.tag).not.toBe("StorageUnavailable")
      expect(bounded.routing().standbyErrors - before.standbyErrors).toBe(1)
      // Skipped after that, until a check finds it again.
      expect(bounded.standbys()[0]!.trusted).toBe(false)
      await timed(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.authenticate(secret)))
      expect(bounded.routing().standbyErrors - before.standbyErrors).toBe(1)
      expect(bounded.routing().standingOnPrimary - before.standingOnPrimary).toBe(1)
      expect(bounded.routing().killSwitchFailures).toBe(1)
      expect(bounded.routing().writeTimeouts).toBe(1)
    } finally {
      await cluster.startStandby("s1")
      await boundedServices.dispose()
      await bounded.close()
    }
    // Back: the revocation is applied on the standby, and the next is acknowledged.
    expect(Either.isRight(await run(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(digest))))).toBe(true)
    expect(await revokedOnStandby(digest)).toBe(true)
  })

  it("says which Postgres ran", async () => {
    const described = await cluster.describe()
    expect(described).toMatch(/^PostgreSQL 15\./)
    expect(described).toContain("s1")
    expect(postgresLabel).toContain(cluster.version.replace(/^PostgreSQL /, "").split(" ")[0]!)
  })
})

describe("synchronous_standby_names, read as the server reads it", () => {
  it("parses FIRST, ANY, a bare count and a bare list; quotes and case", () => {
    expect(parseSynchronousStandbyNames("FIRST 2 (s1, s2)")).toEqual({ method: "first", count: 2, names: ["s1", "s2"] })
    expect(parseSynchronousStandbyNames('any 1 ("S,1", s2)')).toEqual({ method: "any", count: 1, names: ["s,1", "s2"] })
    expect(parseSynchronousStandbyNames("2 (a, b)")).toEqual({ method: "first", count: 2, names: ["a", "b"] })
    expect(parseSynchronousStandbyNames("a, b")).toEqual({ method: "first", count: 1, names: ["a", "b"] })
    expect(parseSynchronousStandbyNames("  ")).toBeUndefined()
  })
  it("requires every configured standby listed, and the count to cover every listed name", () => {
    expect(synchronousProblems("ANY 2 (s1, s2)", ["s1", "s2"])).toEqual([])
    expect(synchronousProblems("FIRST 2 (s1, s2)", ["s1"])).toEqual([])
    expect(synchronousProblems("s1", ["s1"])).toEqual([])
    expect(synchronousProblems("s1, s2", ["s1"])[0]).toMatch(/requires 1 of 2/)
    expect(synchronousProblems("ANY 1 (s1, s2)", ["s1", "s2"])[0]).toMatch(/requires 1 of 2/)
    expect(synchronousProblems("FIRST 1 (*)", ["s1"])[0]).toMatch(/matches any standby/)
    expect(synchronousProblems("", ["s1"])[0]).toMatch(/no synchronous standby/)
  })
})
