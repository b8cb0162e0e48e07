/**
 * Trust policies that live in the broker's store (SPEC §8), managed through `GET/PUT
 * /admin/policies`: validated exactly as `BROKER_POLICIES` is, versioned, audited, and effective on
 * the next exchange without a redeploy.
 *
 * Storage: the broker's KV namespace (a table on the servers), **sealed** like the token cache
 * (AES-GCM under a key derived from BROKER_CACHE_SECRET, bound to its key name), so that write
 * access to KV alone cannot add a policy. `policies:current` holds the document in force;
 * `policies:v<n>` keeps every version written. Until a document is stored, BROKER_POLICIES is in
 * force (version 0).
 *
 * Concurrency: a `PUT` names the version it is based on (`If-Match`) and is refused (409) when that
 * is no longer the version in force. KV has no compare-and-set, so the check and the write are not
 * one atomic step: each write is read back, and a writer that finds another's write in its place
 * answers 409. Two writers racing in one location are caught so; across locations Workers KV takes
 * up to 60 s to converge, and two operators writing within that window through different locations
 * can both be told 200 — the later write (KV's last-writer-wins) is the one in force.
 *
 * Freshness: the isolate that took a `PUT` uses the new document at once; other isolates read the
 * store again when their copy is older than {@link REFRESH_SECONDS} (and Workers KV itself takes up
 * to 60 s to reach every location).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { KvLike } from "./EncryptedTokenCache.js"
import type { Policy } from "./Policies.js"
import { Conflict, InvalidRequest, Unavailable } from "./Problems.js"

/** How long an isolate uses its copy of the stored document before reading the store again. */
export const REFRESH_SECONDS = 5
/** Stored documents never expire (KV wants a TTL: ten years). */
const FOREVER_SECONDS = 10 * 365 * 86_400
const CURRENT = "policies:current"

/** The policy document in force, as the operator API shows it. */
export interface PolicyDocument {
  /** 0 for BROKER_POLICIES; 1, 2, … for each document stored through the operator API. */
  readonly version: number
  readonly updatedAt: string | null
  readonly source: "environment" | "store"
  /** The policies as they were written (the JSON array of BROKER_POLICIES' shape). */
  readonly policies: ReadonlyArray<unknown>
}

/** A document and its decoded policies. */
export interface Loaded {
  readonly document: PolicyDocument
  readonly policies: ReadonlyArray<Policy>
}

/** Decodes a policy array as BROKER_POLICIES is decoded (the same errors, with their paths). */
export type Validate = (policies: unknown) => Either.Either<ReadonlyArray<Policy>, ReadonlyArray<string>>

/** The store of one broker. */
export interface PolicyStore {
  /** The policies in force now. */
  readonly current: (now: number) => Effect.Effect<Loaded, Unavailable>
  /**
   * Validates and stores a new document, if the version in force is still `basedOn` (else
   * `Conflict`, as when another writer stores the same version at the same time); answers it with
   * its version.
   */
  readonly put: (
    policies: unknown,
    basedOn: number,
    now: number
  ) => Effect.Effect<Loaded, InvalidRequest | Conflict | Unavailable>
}

/**
 * A history entry this old whose version never reached `policies:current` belongs to a writer
 * that failed half-way: the next writer may take its version.
 */
export const ABANDONED_SECONDS = 60

const conflict = (current: number | undefined) =>
  new Conflict({
    detail:
      current === undefined
        ? "Another change of the policies was written at the same time: GET them again, and PUT with the new If-Match"
        : `The policies in force are version ${current}, not the one this change is based on: GET them again, and PUT with If-Match: "${current}"`
  })

const storeDown = () =>
  new Unavailable({ detail: "The broker's policy store cannot be read; retry later", retryAfter: 5 })

/**
 * Makes the store over a (sealed) KV namespace; `environment` is what BROKER_POLICIES decoded to.
 */
export const make = (
  kv: KvLike,
  environment: { readonly raw: ReadonlyArray<unknown>; readonly policies: ReadonlyArray<Policy> },
  validate: Validate
): PolicyStore => {
  const fromEnvironment: Loaded = {
    document: { version: 0, updatedAt: null, source: "environment", policies: environment.raw },
    policies: environment.policies
  }
  let copy: { readonly loaded: Loaded; readonly at: number } | undefined
  let reading: Promise<Loaded> | undefined

  /** The stored document, or the environment's; a document that no longer validates allows nobody. */
  const read = async (): Promise<Loaded> => {
    const text = await kv.get(CURRENT, "text")
    if (text === null) return fromEnvironment
    const stored = JSON.parse(text) as { version: number; updatedAt: string; policies: ReadonlyArray<unknown> }
    const decoded = validate(stored.policies)
    if (Either.isLeft(decoded))
      // BROKER_OIDC_ISSUERS may have changed since it was stored: deny by default, and say so.
      console.error(`broker: stored policies v${stored.version} no longer validate: ${decoded.left[0]}`)
    return {
      document: { version: stored.version, updatedAt: stored.updatedAt, source: "store", policies: stored.policies },
      policies: Either.getOrElse(decoded, () => [])
    }
  }

  /**
   * Writes version `version` (`text`) unless another writer has: KV has no compare-and-set, so each
   * write is read back. First the history entry `policies:v<n>` is claimed — refused when another
   * writer's entry of that version is there already and younger than {@link ABANDONED_SECONDS}
   * (older, it is one whose writer never reached `policies:current`) — and read back, then
   * `policies:current` is written, and the history entry read again: whoever wrote it last wins.
   */
  const claimAndWrite = async (version: number, text: string, now: number): Promise<boolean> => {
    const history = `policies:v${version}`
    const options = { expirationTtl: FOREVER_SECONDS }
    const existing = await kv.get(history, "text")
    if (existing !== null) {
      const at = Date.parse((JSON.parse(existing) as { updatedAt?: string }).updatedAt ?? "")
      if (!(now - at >= ABANDONED_SECONDS * 1000)) return false
    }
    await kv.put(history, text, options)
    if ((await kv.get(history, "text")) !== text) return false
    await kv.put(CURRENT, text, options)
    // The last writer of the history entry is the one whose document stands: a writer that lost it
    // meanwhile puts the winner's document back in force (if its own is there) and answers 409.
    const winner = await kv.get(history, "text")
    if (winner === text) return true
    if (winner !== null && (await kv.get(CURRENT, "text")) === text) await kv.put(CURRENT, winner, options)
    return false
  }

  const refresh = (now: number) =>
    Effect.tryPromise({
      try: () => {
        reading ??= read().finally(() => {
          reading = undefined
        })
        return reading
      },
      catch: storeDown
    }).pipe(
      Effect.tap((loaded) =>
        Effect.sync(() => {
          copy = { loaded, at: now }
        })
      ),
      // An unreadable store with a copy in hand: the copy, rather than failing every exchange.
      Effect.catchAll((e) => (copy !== undefined ? Effect.succeed(copy.loaded) : Effect.fail(e)))
    )

  return {
    current: (now) =>
      copy !== undefined && now - copy.at < REFRESH_SECONDS * 1000 ? Effect.succeed(copy.loaded) : refresh(now),
    put: (policies, basedOn, now) =>
      Effect.gen(function* () {
        if (!Array.isArray(policies))
          return yield* new InvalidRequest({ detail: "policies: must be a JSON array of policies" })
        const decoded = validate(policies)
        if (Either.isLeft(decoded))
          return yield* new InvalidRequest({ detail: decoded.left.slice(0, 5).join("; ").slice(0, 2000) })
        // The version follows the store's, not this isolate's copy (another isolate may have written).
        const before = yield* Effect.tryPromise({ try: read, catch: storeDown })
        if (before.document.version !== basedOn) return yield* conflict(before.document.version)
        const document: PolicyDocument = {
          version: basedOn + 1,
          updatedAt: new Date(now).toISOString(),
          source: "store",
          policies
        }
        // Which write is this one's: two writers of the same version are told apart by it.
        const text = JSON.stringify({
          version: document.version,
          updatedAt: document.updatedAt,
          policies: document.policies,
          writer: crypto.randomUUID()
        })
        const written = yield* Effect.tryPromise({
          try: () => claimAndWrite(document.version, text, now),
          catch: () =>
            new Unavailable({ detail: "The broker's policy store cannot be written; retry later", retryAfter: 5 })
        })
        if (!written) {
          // Whatever is in force now is another writer's: read it again on the next exchange.
          copy = undefined
          return yield* conflict(undefined)
        }
        const loaded: Loaded = { document, policies: decoded.right }
        copy = { loaded, at: now }
        return loaded
      })
  }
}
