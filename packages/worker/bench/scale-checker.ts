/**
 * The consistency checker of `npm run bench:scale` (issue 21): reads a recorded history of token
 * mints, uses, revocations and kill switches and finds every place where the issuer broke SPEC §4's
 * rules as a client could see them — with nothing but the times each call started and ended.
 *
 * A call takes effect at one instant between its start and its end (each is one statement, or one
 * transaction, on one shard), so:
 *
 * (a) **killed token honoured**: a use of token T that succeeds although it STARTED after the
 *     acknowledgement (end, outcome ok) of a kill that must have come after T's mint — a revocation
 *     of T, or a kill switch of T's installation or app — i.e. a kill that STARTED after T's mint
 *     ENDED. (A kill that overlaps the mint may be ordered before it, and then ends nothing.)
 * (b) **acknowledged mint lost**: a use of T REFUSED (not `error`) although it started after T's mint
 *     ended, T had not expired, and no kill of T (revocation, installation or app kill switch) could
 *     be ordered between the mint and the use: one is such when it started before the use ended and
 *     ended after the mint started — or failed with `error`, whose effect may land at any later time
 *     (a fan-out finished by a later call).
 *
 * `error` outcomes (503, an injected fault) are never violations. Cost: the kills are grouped by
 * target and sorted by start once (O(k log k)); each use is then two binary searches, so 10⁶
 * operations check in about a second.
 */

/** What a history entry did. */
export type OperationKind = "mint" | "use" | "revoke" | "killInstallation" | "killApp"

/** How a call ended: acknowledged, refused by a rule (401, 404, 409, …), or failed (503, a fault). */
export type Outcome = "ok" | "refused" | "error"

/** One call as a client saw it: `start` and `end` are `performance.now()` milliseconds. */
export interface HistoryEntry {
  readonly kind: OperationKind
  readonly start: number
  readonly end: number
  readonly outcome: Outcome
  /** The token used or revoked (`use`, `revoke`). */
  readonly tokenId?: string | undefined
  /** The installation minted for or killed (`mint`, `killInstallation`). */
  readonly installationId?: string | undefined
  /** The app minted for or killed (`mint`, `killApp`). */
  readonly appId?: string | undefined
  /** The token an acknowledged mint returned. */
  readonly mintedTokenId?: string | undefined
  /** When the minted token expires, on the same clock as `start`/`end` (never, when absent). */
  readonly expiresAt?: number | undefined
}

/** Which rule a violation breaks. */
export type ViolationKind = "killedTokenHonoured" | "acknowledgedMintLost"

/** One broken rule, with the entries that prove it (indexes into the history). */
export interface Violation {
  readonly kind: ViolationKind
  readonly tokenId: string
  /** The offending use. */
  readonly use: number
  /** The mint of the token. */
  readonly mint: number
  /** For `killedTokenHonoured`: the acknowledged kill the use came after. */
  readonly kill?: number | undefined
}

/** What the checker found. */
export interface CheckReport {
  readonly operations: number
  readonly violations: ReadonlyArray<Violation>
  /** Entries of each kind and outcome, for the bench's report. */
  readonly counts: Readonly<Record<OperationKind, Readonly<Record<Outcome, number>>>>
  /** Uses of a token with no acknowledged mint in the history (not judged). */
  readonly unjudged: number
}

/**
 * The kills aimed at one target (a token, an installation or an app), sorted by start, with two
 * running extrema for the two rules:
 * - `suffixMinAckEnd[i]`: the earliest end among acknowledged kills at positions ≥ i (rule a: kills
 *   that started after a given instant);
 * - `prefixMaxEnd[i]`: the latest end among kills at positions ≤ i, `error` ones counting as +∞
 *   (rule b: kills that started before a given instant).
 */
interface KillIndex {
  readonly starts: Float64Array
  readonly suffixMinAckEnd: Float64Array
  readonly suffixMinAckAt: Int32Array
  readonly prefixMaxEnd: Float64Array
}

const buildIndex = (history: ReadonlyArray<HistoryEntry>, members: ReadonlyArray<number>): KillIndex => {
  const order = [...members].sort((a, b) => history[a]!.start - history[b]!.start)
  const n = order.length
  const starts = new Float64Array(n)
  const suffixMinAckEnd = new Float64Array(n + 1)
  const suffixMinAckAt = new Int32Array(n + 1)
  const prefixMaxEnd = new Float64Array(n)
  let max = Number.NEGATIVE_INFINITY
  for (let i = 0; i < n; i++) {
    const e = history[order[i]!]!
    starts[i] = e.start
    max = Math.max(max, e.outcome === "error" ? Number.POSITIVE_INFINITY : e.end)
    prefixMaxEnd[i] = max
  }
  suffixMinAckEnd[n] = Number.POSITIVE_INFINITY
  suffixMinAckAt[n] = -1
  for (let i = n - 1; i >= 0; i--) {
    const e = history[order[i]!]!
    if (e.outcome === "ok" && e.end < suffixMinAckEnd[i + 1]!) {
      suffixMinAckEnd[i] = e.end
      suffixMinAckAt[i] = order[i]!
    } else {
      suffixMinAckEnd[i] = suffixMinAckEnd[i + 1]!
      suffixMinAckAt[i] = suffixMinAckAt[i + 1]!
    }
  }
  return { starts, suffixMinAckEnd, suffixMinAckAt, prefixMaxEnd }
}

/** The first position whose start is > `t` (binary search). */
const firstStartAfter = (starts: Float64Array, t: number): number => {
  let lo = 0
  let hi = starts.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (starts[mid]! > t) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** The first position whose start is ≥ `t`. */
const firstStartAtOrAfter = (starts: Float64Array, t: number): number => {
  let lo = 0
  let hi = starts.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (starts[mid]! >= t) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** Rule (a) for one index: the earliest acknowledged kill that started after `mintEnd` (its end and entry). */
const earliestAckAfter = (index: KillIndex | undefined, mintEnd: number): { end: number; at: number } => {
  if (index === undefined) return { end: Number.POSITIVE_INFINITY, at: -1 }
  const i = firstStartAfter(index.starts, mintEnd)
  return { end: index.suffixMinAckEnd[i]!, at: index.suffixMinAckAt[i]! }
}

/**
 * Rule (b) for one index: whether some kill started before `useEnd` and ended after `mintStart`
 * (an `error` kill never ends, for this purpose).
 */
const couldEndBetween = (index: KillIndex | undefined, mintStart: number, useEnd: number): boolean => {
  if (index === undefined) return false
  const i = firstStartAtOrAfter(index.starts, useEnd) - 1
  return i >= 0 && index.prefixMaxEnd[i]! > mintStart
}

const emptyCounts = () => ({ ok: 0, refused: 0, error: 0 })

/** Checks a history; see the module comment for the two rules. */
export const checkHistory = (history: ReadonlyArray<HistoryEntry>): CheckReport => {
  const counts: Record<OperationKind, Record<Outcome, number>> = {
    mint: emptyCounts(),
    use: emptyCounts(),
    revoke: emptyCounts(),
    killInstallation: emptyCounts(),
    killApp: emptyCounts()
  }
  const mints = new Map<string, number>()
  const byToken = new Map<string, Array<number>>()
  const byInstallation = new Map<string, Array<number>>()
  const byApp = new Map<string, Array<number>>()
  const push = (map: Map<string, Array<number>>, key: string | undefined, i: number) => {
    if (key === undefined) return
    const list = map.get(key)
    if (list === undefined) map.set(key, [i])
    else list.push(i)
  }
  for (let i = 0; i < history.length; i++) {
    const e = history[i]!
    counts[e.kind][e.outcome]++
    switch (e.kind) {
      case "mint":
        if (e.outcome === "ok" && e.mintedTokenId !== undefined) mints.set(e.mintedTokenId, i)
        break
      // A kill refused by a rule (no such installation, …) changed nothing: it explains nothing.
      case "revoke":
        if (e.outcome !== "refused") push(byToken, e.tokenId, i)
        break
      case "killInstallation":
        if (e.outcome !== "refused") push(byInstallation, e.installationId, i)
        break
      case "killApp":
        if (e.outcome !== "refused") push(byApp, e.appId, i)
        break
      case "use":
        break
    }
  }
  const index = (map: Map<string, Array<number>>) => {
    const built = new Map<string, KillIndex>()
    for (const [key, members] of map) built.set(key, buildIndex(history, members))
    return built
  }
  const tokenKills = index(byToken)
  const installationKills = index(byInstallation)
  const appKills = index(byApp)

  // Rule (a)'s deadline per token, computed once: the earliest acknowledgement of a kill that must follow the mint.
  const deadlines = new Map<string, { end: number; at: number }>()
  const deadlineOf = (tokenId: string, mint: HistoryEntry) => {
    let found = deadlines.get(tokenId)
    if (found === undefined) {
      found = earliestAckAfter(tokenKills.get(tokenId), mint.end)
      for (const other of [
        earliestAckAfter(
          mint.installationId === undefined ? undefined : installationKills.get(mint.installationId),
          mint.end
        ),
        earliestAckAfter(mint.appId === undefined ? undefined : appKills.get(mint.appId), mint.end)
      ]) {
        if (other.end < found.end) found = other
      }
      deadlines.set(tokenId, found)
    }
    return found
  }

  const violations: Array<Violation> = []
  let unjudged = 0
  for (let i = 0; i < history.length; i++) {
    const use = history[i]!
    if (use.kind !== "use" || use.outcome === "error") continue
    const tokenId = use.tokenId
    const at = tokenId === undefined ? undefined : mints.get(tokenId)
    if (tokenId === undefined || at === undefined) {
      unjudged++
      continue
    }
    const mint = history[at]!
    if (use.outcome === "ok") {
      const deadline = deadlineOf(tokenId, mint)
      if (use.start > deadline.end) {
        violations.push({ kind: "killedTokenHonoured", tokenId, use: i, mint: at, kill: deadline.at })
      }
    } else if (use.start > mint.end && (mint.expiresAt === undefined || use.end < mint.expiresAt)) {
      const explained =
        couldEndBetween(tokenKills.get(tokenId), mint.start, use.end) ||
        (mint.installationId !== undefined &&
          couldEndBetween(installationKills.get(mint.installationId), mint.start, use.end)) ||
        (mint.appId !== undefined && couldEndBetween(appKills.get(mint.appId), mint.start, use.end))
      if (!explained) violations.push({ kind: "acknowledgedMintLost", tokenId, use: i, mint: at })
    }
  }
  return { operations: history.length, violations, counts, unjudged }
}
