/**
 * The Postgres part of the scale simulation (issue 21): a primary and two synchronous standbys
 * started here (one applying WAL `applyDelayMs` late, `recovery_min_apply_delay`), the issuer's real
 * core services (AccessTokens over SqlRegistry, as the server wires them) over the routed driver
 * (`src/sql/postgresStandbys.ts`), and concurrent mints, uses, revocations and kill switches,
 * recorded as a history for the checker: no use that starts after a revocation's or kill switch's
 * acknowledgement succeeds, no acknowledged mint lost. It also measures, in the same run, uses/s
 * served by the standbys against the primary alone, and a kill switch's latency with
 * `remote_apply` against a plain commit. Self-contained: it starts and stops its cluster.
 *
 *   tsx --conditions=@icr-apps/source packages/worker/bench/scale-postgres.ts [--operations N] [--delay MS]
 */
import { pathToFileURL } from "node:url"
import * as AccessTokens from "@icr-apps/core/issuer/AccessTokens"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { Registry } from "@icr-apps/core/issuer/Registry"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import { issuerMigrations, migrate } from "../src/sql/migrate.js"
import { openPostgres } from "../src/sql/postgres.js"
import { openRoutedPostgres, type RoutingCounts } from "../src/sql/postgresStandbys.js"
import { startPostgresCluster } from "../test/support/postgresCluster.js"

/** One operation of the history (times from `performance.now()`, ms). */
export interface PostgresHistoryEvent {
  readonly kind: "mint" | "use" | "revoke" | "killInstallation" | "killApp"
  readonly start: number
  readonly end: number
  /** ok: done (a use honoured); refused: the issuer said no (a use of an ended token); error: storage failed (503). */
  readonly outcome: "ok" | "refused" | "error"
  /** The token used or revoked. */
  readonly tokenId?: string
  /** The installation minted for, used through, or killed (`revokeInstallationTokens`). */
  readonly installationId?: string
  /** The app of the operation (killApp: `revokeAppTokens`, every token of the app). */
  readonly appId?: string
  /** A mint's new token. */
  readonly mintedTokenId?: string
}

/** Percentiles of a latency, ms. */
export interface Latency {
  readonly p50: number
  readonly p99: number
}

/** What {@link runPostgresHistory} returns. */
export interface PostgresHistoryResult {
  readonly history: ReadonlyArray<PostgresHistoryEvent>
  /** Which Postgres, where, its standbys and their delay. */
  readonly postgres: string
  /** Uses completed per second during the history (all kinds running together). */
  readonly usesPerSecond: number
  /** Latency of each kind during the history. */
  readonly latency: Readonly<Record<PostgresHistoryEvent["kind"], Latency>>
  /** Measured in the same run, one after the other, after the history. */
  readonly measured: {
    /** Uses/s, token standing served by the standbys (routed driver). */
    readonly standbyUsesPerSecond: number
    /** Uses/s, token standing served by the primary alone (plain driver, same pool size). */
    readonly primaryUsesPerSecond: number
    /** A revocation committed with remote_apply (waits for every synchronous standby to apply it). */
    readonly killSwitchRemoteApply: Latency
    /** The same revocation committed `on` (flushed on the standbys, not applied): what the guarantee costs. */
    readonly killSwitchOn: Latency
  }
  /** Where the routed driver sent statements during the history. */
  readonly routing: RoutingCounts
}

/** How the history is run. */
export interface PostgresHistoryOptions {
  /** Operations in the history (all kinds). */
  readonly operations: number
  /** `recovery_min_apply_delay` of the delayed synchronous standby, ms. */
  readonly applyDelayMs: number
  /** Operations in flight at once (default 16). */
  readonly concurrency?: number | undefined
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const latencyOf = (durations: ReadonlyArray<number>): Latency => {
  const sorted = [...durations].sort((a, b) => a - b)
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)) }
}
const round = (x: number) => Math.round(x * 100) / 100

type Services = ManagedRuntime.ManagedRuntime<AccessTokens.AccessTokens | Registry | Entropy.Entropy, never>
const servicesOver = (driver: SqlDriver): Services =>
  ManagedRuntime.make(
    AccessTokens.layer().pipe(Layer.provideMerge(Layer.mergeAll(SqlRegistry.layer(driver), Entropy.layer)))
  )

interface Minted {
  readonly secret: string
  readonly digest: string
  readonly tokenId: string
  readonly installationId: string
  readonly appId: string
}

const APPS = 4
const INSTALLATIONS_PER_APP = 8

/** Starts the cluster, runs the history and the measurements, stops the cluster. */
export const runPostgresHistory = async (options: PostgresHistoryOptions): Promise<PostgresHistoryResult> => {
  const concurrency = options.concurrency ?? 16
  const cluster = await startPostgresCluster({
    standbys: [{ name: "s1", applyDelayMs: options.applyDelayMs }, { name: "s2" }],
    synchronousStandbyNames: "ANY 2 (s1, s2)"
  })
  const plain = openPostgres(cluster.primaryUrl, { poolSize: 8 })
  let routed: Awaited<ReturnType<typeof openRoutedPostgres>> | undefined
  const runtimes: Array<Services> = []
  try {
    await migrate(plain, issuerMigrations("postgres"))
    routed = await openRoutedPostgres(cluster.primaryUrl, {
      standbyUrls: cluster.standbys.map((s) => s.url),
      poolSize: 8,
      killSwitchConnections: concurrency,
      applyTimeoutMs: Math.max(5000, options.applyDelayMs * 20)
    })
    const services = servicesOver(routed)
    runtimes.push(services)
    const describe = await cluster.describe()

    // Apps and installations, then a first token per installation.
    const installations = await services.runPromise(
      Effect.gen(function* () {
        const registry = yield* Registry
        const now = Date.now()
        const made: Array<{ appId: string; installationId: string }> = []
        for (let a = 0; a < APPS; a++) {
          const app = yield* registry.createApp(
            { name: `scale-${a}-${now}`, permissions: { organization_info: "VIEW" }, createdAt: now, updatedAt: now },
            { id: `key-${a}`, fingerprint: `SHA256:scale-${a}-${now}`, spki: "spki", createdAt: now }
          )
          for (let i = 0; i < INSTALLATIONS_PER_APP; i++) {
            const installation = yield* registry.createInstallation({
              id: crypto.randomUUID(),
              appId: app.id,
              organizationId: `org-${a}-${i}`,
              permissions: { organization_info: "VIEW" },
              createdAt: now,
              updatedAt: now,
              suspendedAt: null
            })
            made.push({ appId: app.id, installationId: installation.id })
          }
        }
        return made
      })
    )
    const epochOf = (appId: string) =>
      services.runPromise(
        Effect.flatMap(Registry, (r) => r.getApp(appId)).pipe(
          Effect.map((app) => (app._tag === "Some" ? app.value.tokenEpoch : 0))
        )
      )
    const mintFor = async (services: Services, appId: string, installationId: string): Promise<Minted> => {
      const appEpoch = await epochOf(appId)
      return services.runPromise(
        Effect.gen(function* () {
          const tokens = yield* AccessTokens.AccessTokens
          const minted = yield* tokens.mintInstallationToken(appId, installationId, undefined, appEpoch)
          const secret = Redacted.value(minted.secret)
          return {
            secret,
            digest: yield* AccessTokens.digestOf(secret),
            tokenId: minted.record.id,
            installationId,
            appId
          }
        })
      )
    }
    const tokens: Array<Minted> = []
    // The history: workers draw operations until `operations` have started (the first mints included).
    const history: Array<PostgresHistoryEvent> = []
    for (const { appId, installationId } of installations) {
      const start = performance.now()
      const minted = await mintFor(services, appId, installationId)
      tokens.push(minted)
      history.push({
        kind: "mint",
        start,
        end: performance.now(),
        outcome: "ok",
        appId,
        installationId,
        mintedTokenId: minted.tokenId
      })
    }

    const useWith = (services: Services, secret: string) =>
      services.runPromise(Effect.either(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.authenticate(secret))))

    const startRouting = routed.routing()
    let started = history.length
    const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(Math.random() * xs.length)]!
    const outcomeOf = (either: Either.Either<unknown, { readonly _tag: string }>): PostgresHistoryEvent["outcome"] =>
      Either.isRight(either) ? "ok" : either.left._tag === "StorageUnavailable" ? "error" : "refused"
    const worker = async () => {
      while (started < options.operations) {
        started++
        const roll = Math.random()
        const start = performance.now()
        if (roll < 0.82) {
          // A third of the uses take the newest token: often minted a moment ago, not yet on the late standby.
          const token = Math.random() < 1 / 3 ? tokens[tokens.length - 1]! : pick(tokens.slice(-64))
          const outcome = await useWith(services, token.secret)
          history.push({
            kind: "use",
            start,
            end: performance.now(),
            outcome: Either.isRight(outcome) ? "ok" : outcome.left._tag === "InvalidToken" ? "refused" : "error",
            tokenId: token.tokenId,
            installationId: token.installationId,
            appId: token.appId
          })
        } else if (roll < 0.94) {
          const { appId, installationId } = pick(installations)
          const minted = await mintFor(services, appId, installationId).then(
            (m) => Either.right(m),
            () => Either.left({ _tag: "StorageUnavailable" })
          )
          if (Either.isRight(minted)) tokens.push(minted.right)
          history.push({
            kind: "mint",
            start,
            end: performance.now(),
            outcome: outcomeOf(minted),
            installationId,
            appId,
            ...(Either.isRight(minted) ? { mintedTokenId: minted.right.tokenId } : {})
          })
        } else if (roll < 0.975) {
          const token = pick(tokens.slice(-64))
          const outcome = await services.runPromise(
            Effect.either(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(token.digest)))
          )
          history.push({
            kind: "revoke",
            start,
            end: performance.now(),
            outcome: outcomeOf(outcome),
            tokenId: token.tokenId,
            installationId: token.installationId,
            appId: token.appId
          })
        } else if (roll < 0.995) {
          const { appId, installationId } = pick(installations)
          const outcome = await services.runPromise(
            Effect.either(Effect.flatMap(Registry, (r) => r.revokeInstallationTokens(installationId)))
          )
          history.push({
            kind: "killInstallation",
            start,
            end: performance.now(),
            outcome: outcomeOf(outcome),
            installationId,
            appId
          })
        } else {
          const { appId } = pick(installations)
          const outcome = await services.runPromise(
            Effect.either(Effect.flatMap(Registry, (r) => r.revokeAppTokens(appId)))
          )
          history.push({ kind: "killApp", start, end: performance.now(), outcome: outcomeOf(outcome), appId })
        }
      }
    }
    const historyStart = performance.now()
    await Promise.all(Array.from({ length: concurrency }, worker))
    const historySeconds = (performance.now() - historyStart) / 1000
    const endRouting = routed.routing()
    const routing = Object.fromEntries(
      Object.entries(endRouting).map(([key, value]) => [key, value - startRouting[key as keyof RoutingCounts]])
    ) as unknown as RoutingCounts
    const kinds = ["mint", "use", "revoke", "killInstallation", "killApp"] as const
    const latency = Object.fromEntries(
      kinds.map((kind) => [kind, latencyOf(history.filter((e) => e.kind === kind).map((e) => e.end - e.start))])
    ) as Record<PostgresHistoryEvent["kind"], Latency>

    // Uses/s, standbys against the primary alone: the same live tokens (applied everywhere), same concurrency.
    const live: Array<Minted> = []
    for (const { appId, installationId } of installations) live.push(await mintFor(services, appId, installationId))
    const primaryOnly = servicesOver(plain)
    runtimes.push(primaryOnly)
    await new Promise((resolve) => setTimeout(resolve, options.applyDelayMs + 200))
    const usesPerSecondWith = async (services: Services, count: number) => {
      let next = 0
      const begin = performance.now()
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) {
            next++
            await useWith(services, live[next % live.length]!.secret)
          }
        })
      )
      return Math.round(count / ((performance.now() - begin) / 1000))
    }
    const useCount = Math.max(2000, Math.min(20_000, options.operations))
    await usesPerSecondWith(services, 500) // warm both paths (prepared statements, connections)
    await usesPerSecondWith(primaryOnly, 500)
    const standbyUsesPerSecond = await usesPerSecondWith(services, useCount)
    const primaryUsesPerSecond = await usesPerSecondWith(primaryOnly, useCount)

    // A kill switch's latency, one at a time: remote_apply (routed) against `on` (plain).
    const revokeTimes = async (services: Services, n: number) => {
      // Fresh tokens, each revoked once: a revocation that changes a row (its commit writes WAL).
      const fresh: Array<Minted> = []
      for (let i = 0; i < n; i++) {
        const { appId, installationId } = installations[i % installations.length]!
        fresh.push(await mintFor(services, appId, installationId))
      }
      const times: Array<number> = []
      for (const token of fresh) {
        const begin = performance.now()
        await services.runPromise(Effect.flatMap(AccessTokens.AccessTokens, (t) => t.revoke(token.digest)))
        times.push(performance.now() - begin)
      }
      return latencyOf(times)
    }
    const killSwitchRemoteApply = await revokeTimes(services, 40)
    const killSwitchOn = await revokeTimes(primaryOnly, 40)

    return {
      history,
      postgres: describe,
      usesPerSecond: Math.round(history.filter((e) => e.kind === "use").length / historySeconds),
      latency,
      measured: { standbyUsesPerSecond, primaryUsesPerSecond, killSwitchRemoteApply, killSwitchOn },
      routing
    }
  } finally {
    for (const runtime of runtimes) await runtime.dispose()
    await routed?.close()
    await plain.close()
    await cluster.stop()
  }
}

/**
 * The history's violations by the rule of issue 21, as a smoke check beside the simulation's own
 * checker: a use that succeeded although it started after a revocation of its token, or a kill
 * switch of its installation or app, was acknowledged, where the token's mint started before that
 * kill switch started (a token minted after a kill switch is live).
 */
export const violationsOf = (history: ReadonlyArray<PostgresHistoryEvent>): ReadonlyArray<PostgresHistoryEvent> => {
  const mintStart = new Map<string, number>()
  for (const e of history)
    if (e.kind === "mint" && e.mintedTokenId !== undefined) mintStart.set(e.mintedTokenId, e.start)
  const acknowledged = history.filter((e) => e.kind !== "use" && e.kind !== "mint" && e.outcome === "ok")
  return history.filter((use) => {
    if (use.kind !== "use" || use.outcome !== "ok" || use.tokenId === undefined) return false
    const minted = mintStart.get(use.tokenId) ?? Number.NEGATIVE_INFINITY
    return acknowledged.some(
      (k) =>
        k.end < use.start &&
        ((k.kind === "revoke" && k.tokenId === use.tokenId) ||
          (k.kind === "killInstallation" && k.installationId === use.installationId && minted < k.start) ||
          (k.kind === "killApp" && k.appId === use.appId && minted < k.start))
    )
  })
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isMain) {
  const arg = (name: string, fallback: number) => {
    const at = process.argv.indexOf(`--${name}`)
    return at === -1 ? fallback : Number(process.argv[at + 1])
  }
  const result = await runPostgresHistory({ operations: arg("operations", 5000), applyDelayMs: arg("delay", 50) })
  const count = (kind: string, outcome: string) =>
    result.history.filter((e) => e.kind === kind && e.outcome === outcome).length
  console.log(result.postgres)
  console.log(
    `history: ${result.history.length} operations; uses ${count("use", "ok")} ok / ${count("use", "refused")} refused / ` +
      `${count("use", "error")} error; mints ${count("mint", "ok")}; revocations ${count("revoke", "ok")}; ` +
      `installation kills ${count("killInstallation", "ok")}; app kills ${count("killApp", "ok")}; errors ` +
      `${result.history.filter((e) => e.outcome === "error").length}`
  )
  console.log(`history: ${result.usesPerSecond} uses/s; latency ms ${JSON.stringify(result.latency)}`)
  console.log(`routing: ${JSON.stringify(result.routing)}`)
  console.log(`smoke check: ${violationsOf(result.history).length} violations`)
  const m = result.measured
  console.log(
    `uses/s: ${m.standbyUsesPerSecond} from the standbys, ${m.primaryUsesPerSecond} from the primary alone ` +
      `(${(m.standbyUsesPerSecond / m.primaryUsesPerSecond).toFixed(2)}x)`
  )
  console.log(
    `kill switch (revoke) ms: remote_apply p50 ${m.killSwitchRemoteApply.p50} p99 ${m.killSwitchRemoteApply.p99}; ` +
      `on p50 ${m.killSwitchOn.p50} p99 ${m.killSwitchOn.p99}`
  )
}
