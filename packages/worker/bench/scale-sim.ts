/**
 * The load of `npm run bench:scale` (issue 21), in one process: apps and installations seeded through
 * the registry, then many concurrent clients minting installation tokens, using them (most
 * operations), revoking them, and pulling installation kill switches (suspension, revokeTokens) and
 * app kill switches (revokeTokens, a key deletion) — all through the real core services: the
 * {@link AccessTokens} service for mint, authenticate and revoke, the {@link Registry} for the kill
 * switches, over shards that add latency and fail at random (scale-shards.ts). Every call is
 * recorded with its start, end and outcome for the checker (scale-checker.ts).
 */
import { canonical, type Permissions } from "@icr-apps/core/api/Permissions"
import * as AccessTokens from "@icr-apps/core/issuer/AccessTokens"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { AppMissing, Registry } from "@icr-apps/core/issuer/Registry"
import { shardOfSecret } from "@icr-apps/core/issuer/Shards"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { HistoryEntry, Outcome } from "./scale-checker.js"

/** The mix of operations, as shares of all operations (uses take the rest). */
export interface OperationMix {
  readonly mint: number
  readonly revoke: number
  readonly killInstallation: number
  readonly killApp: number
}

/** What the simulation runs. */
export interface SimulationOptions {
  readonly registry: Registry["Type"]
  /**
   * The load, in phases run one after the other on the same apps, installations and tokens: each
   * `operations` long with `concurrency` operations in flight.
   */
  readonly phases: ReadonlyArray<{ readonly name: string; readonly operations: number; readonly concurrency: number }>
  /** Called as each phase begins. */
  readonly onPhase?: ((name: string) => void) | undefined
  readonly apps: number
  readonly installationsPerApp: number
  readonly mix: OperationMix
  /** How many of the latest minted tokens the uses pick from. */
  readonly livePool: number
  readonly random: () => number
  /** The shard an installation id names. */
  readonly installationShard: (id: string) => number
  /** Called every 100,000 operations. */
  readonly onProgress?: ((done: number) => void) | undefined
}

/** What the simulation recorded. */
export interface SimulationResult {
  readonly history: ReadonlyArray<HistoryEntry>
  /** Each phase: its wall time (ms) and the duration of each of its calls by kind (ms). */
  readonly phases: ReadonlyArray<{
    readonly name: string
    readonly operations: number
    readonly concurrency: number
    readonly wallMs: number
    readonly durations: Readonly<Record<HistoryEntry["kind"], ReadonlyArray<number>>>
  }>
  /** Tokens minted and acknowledged. */
  readonly minted: number
  /** Installations created, and how many on each shard (as their ids name it). */
  readonly installations: number
  readonly installationsPerShard: ReadonlyArray<number>
}

const GRANT: Permissions = canonical({ contents: "read", issues: "write" } as Permissions)
const LIFETIME_MS = AccessTokens.defaultLifetimes.installationTokenSeconds * 1000

interface LiveToken {
  readonly secret: string
  readonly id: string
  readonly installationId: string
  readonly appId: string
}

/**
 * How a call ended: a 503 (storage, an injected fault) is an `error`, any rule's answer (invalid
 * token, suspended, missing) `refused`. A defect is a bug in the code under test: it stops the run.
 */
const outcomeOf = (exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (Exit.isSuccess(exit)) return "ok"
  const defect = Cause.dieOption(exit.cause)
  if (Option.isSome(defect)) throw defect.value
  const failure = Option.getOrUndefined(Cause.failureOption(exit.cause)) as { _tag?: string } | undefined
  return failure?._tag === "StorageUnavailable" ? "error" : "refused"
}

/** Seeds the apps and installations, then runs the load and records it. */
export const simulate = async (options: SimulationOptions): Promise<SimulationResult> => {
  const { registry, random } = options
  const tokens = Effect.runSync(
    Effect.provide(AccessTokens.make(), Layer.merge(Layer.succeed(Registry, registry), Entropy.layer))
  )
  const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExit(effect)
  /** Retries a seeding step through injected faults (seeding is not under test). */
  const seed = async <A, E>(make: () => Effect.Effect<A, E>): Promise<A> => {
    for (let attempt = 0; ; attempt++) {
      const exit = await run(make())
      if (Exit.isSuccess(exit)) return exit.value
      if (attempt > 50) throw new Error(`seeding failed: ${String(Exit.causeOption(exit))}`)
    }
  }

  // --- seed ------------------------------------------------------------------------------------------
  const apps: Array<string> = []
  const installations: Array<{ id: string; appId: string }> = []
  const now = Date.now()
  for (let a = 0; a < options.apps; a++) {
    const created = await seed(() =>
      Effect.catchTag(
        registry.createApp(
          { name: `scale-app-${a}`, permissions: GRANT, createdAt: now, updatedAt: now },
          { id: crypto.randomUUID(), fingerprint: `SHA256:scale-${a}-0`, spki: "c2NhbGU=", createdAt: now }
        ),
        // A retry after a fault that struck after the commit: the app is there already.
        "NameTaken",
        () => Effect.succeed(undefined)
      )
    )
    if (created !== undefined) apps.push(created.id)
  }
  if (apps.length < options.apps) {
    // Apps whose creation committed but whose acknowledgement was lost: find them by listing.
    const page = await seed(() => registry.listApps({ limit: options.apps * 2, offset: 0 }))
    for (const app of page.items) if (!apps.includes(app.id)) apps.push(app.id)
  }
  for (const appId of apps) {
    for (let i = 0; i < options.installationsPerApp; i++) {
      const organizationId = crypto.randomUUID()
      const created = await seed(() =>
        Effect.catchTag(
          registry.createInstallation({
            id: crypto.randomUUID(),
            appId,
            organizationId,
            permissions: GRANT,
            createdAt: now,
            updatedAt: now,
            suspendedAt: null
          }),
          "AlreadyInstalled",
          () => Effect.succeed(undefined)
        )
      )
      if (created !== undefined) installations.push({ id: created.id, appId })
    }
  }

  // --- load ------------------------------------------------------------------------------------------
  const history: Array<HistoryEntry> = []
  const noDurations = (): Record<HistoryEntry["kind"], Array<number>> => ({
    mint: [],
    use: [],
    revoke: [],
    killInstallation: [],
    killApp: []
  })
  let durations = noDurations()
  const pool: Array<LiveToken> = []
  let poolNext = 0
  let minted = 0
  let keyCounter = 0
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
  const record = (entry: HistoryEntry) => {
    history.push(entry)
    durations[entry.kind].push(entry.end - entry.start)
    if (options.onProgress !== undefined && history.length % 100_000 === 0) options.onProgress(history.length)
  }

  const mint = async () => {
    const installation = pick(installations)
    const start = performance.now()
    const exit = await run(
      Effect.flatMap(
        registry.getAppWithInstallation(installation.appId, installation.id),
        (read): Effect.Effect<AccessTokens.MintedToken, unknown> =>
          Option.isNone(read.app)
            ? Effect.fail(new AppMissing())
            : tokens.mintInstallationToken(
                installation.appId,
                installation.id,
                undefined,
                read.app.value.tokenEpoch,
                read.installation
              )
      )
    )
    const end = performance.now()
    const outcome = outcomeOf(exit)
    const token = Exit.isSuccess(exit) ? exit.value : undefined
    record({
      kind: "mint",
      start,
      end,
      outcome,
      installationId: installation.id,
      appId: installation.appId,
      mintedTokenId: token?.record.id,
      expiresAt: start + LIFETIME_MS
    })
    if (token !== undefined) {
      minted++
      const live = {
        secret: Redacted.value(token.secret),
        id: token.record.id,
        installationId: installation.id,
        appId: installation.appId
      }
      if (pool.length < options.livePool) pool.push(live)
      else pool[poolNext++ % options.livePool] = live
    }
  }

  const use = async () => {
    const token = pick(pool)
    const start = performance.now()
    const exit = await run(tokens.authenticate(token.secret))
    record({ kind: "use", start, end: performance.now(), outcome: outcomeOf(exit), tokenId: token.id })
  }

  const revoke = async () => {
    const token = pick(pool)
    const start = performance.now()
    const exit = await run(
      Effect.flatMap(AccessTokens.digestOf(token.secret), (digest) =>
        tokens.revoke(digest, shardOfSecret(token.secret))
      )
    )
    record({ kind: "revoke", start, end: performance.now(), outcome: outcomeOf(exit), tokenId: token.id })
  }

  const killInstallation = async () => {
    const installation = pick(installations)
    const suspend = random() < 0.5
    const start = performance.now()
    const exit = await run(
      suspend
        ? registry.updateInstallation(installation.id, { suspendedAt: Date.now(), updatedAt: Date.now() })
        : registry.revokeInstallationTokens(installation.id)
    )
    record({
      kind: "killInstallation",
      start,
      end: performance.now(),
      outcome: outcomeOf(exit),
      installationId: installation.id
    })
    if (suspend) {
      // Lift the suspension again (not a kill switch: it revives nothing), so the installation mints
      // again; a fault only delays it.
      for (let attempt = 0; attempt < 20; attempt++) {
        const lifted = await run(
          registry.updateInstallation(installation.id, { suspendedAt: null, updatedAt: Date.now() })
        )
        if (Exit.isSuccess(lifted)) break
      }
    }
  }

  const killApp = async () => {
    const appId = pick(apps)
    if (random() < 0.5) {
      const start = performance.now()
      const exit = await run(registry.revokeAppTokens(appId))
      record({ kind: "killApp", start, end: performance.now(), outcome: outcomeOf(exit), appId })
      return true
    }
    // A key deletion: add a key to delete (not itself a kill switch), then delete it.
    const keyId = crypto.randomUUID()
    const added = await run(
      registry.addKey({
        id: keyId,
        appId,
        fingerprint: `SHA256:scale-${appId}-${++keyCounter}`,
        spki: "c2NhbGU=",
        createdAt: Date.now()
      })
    )
    if (Exit.isFailure(added)) return false
    const start = performance.now()
    const exit = await run(registry.deleteKey(appId, keyId, Date.now()))
    record({ kind: "killApp", start, end: performance.now(), outcome: outcomeOf(exit), appId })
    return true
  }

  const { mix } = options
  const phases: Array<SimulationResult["phases"][number]> = []
  for (const phase of options.phases) {
    options.onPhase?.(phase.name)
    durations = noDurations()
    const began = performance.now()
    let issued = 0
    const client = async () => {
      while (issued < phase.operations) {
        issued++
        const r = random()
        if (pool.length === 0 || r < mix.mint) await mint()
        else if (r < mix.mint + mix.revoke) await revoke()
        else if (r < mix.mint + mix.revoke + mix.killInstallation) await killInstallation()
        else if (r < mix.mint + mix.revoke + mix.killInstallation + mix.killApp) {
          // A key deletion whose key could not be added first did not happen: it is issued again.
          if (!(await killApp())) issued--
        } else await use()
      }
    }
    await Promise.all(Array.from({ length: phase.concurrency }, client))
    phases.push({ ...phase, wallMs: performance.now() - began, durations })
  }
  return {
    history,
    phases,
    minted,
    installations: installations.length,
    installationsPerShard: installations.reduce<Array<number>>((counts, { id }) => {
      const shard = options.installationShard(id)
      counts[shard] = (counts[shard] ?? 0) + 1
      return counts
    }, [])
  }
}
