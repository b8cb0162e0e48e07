/**
 * What every phase of `npm run bench:issuer` shares: medians, and rows of ratios taken within one
 * round (the two sides of a ratio run back to back, so a noisy neighbour hits both alike).
 */

/** The median of some numbers (the lower middle for an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** The q-quantile (0..1) by nearest rank. */
export const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]!
}

/** One row of the report: ours against a baseline, measured in one run. */
export interface Row {
  /** Stable key (`cpu.describe`, `workerd.mint`, …): what `--check` and the notes refer to. */
  readonly key: string
  readonly label: string
  /** Ours and the baseline, in `unit`, each the median over rounds. */
  readonly ours: number | undefined
  readonly base: number | undefined
  readonly unit: string
  readonly baseLabel: string
  /** ours ÷ base, the median of per-round ratios (undefined when it means nothing). */
  readonly ratio: number | undefined
  /** The 25th and 75th percentile of the per-round ratios: how much the rounds agreed. */
  readonly spread?: readonly [number, number] | undefined
  /** The target, as text, and whether this run meets it (undefined = no target). */
  readonly target?: string | undefined
  readonly pass?: boolean | undefined
  /** How it was measured (iterations, rounds, concurrency). */
  readonly how: string
  /** Extra detail for the notes (wall time, errors). */
  readonly note?: string | undefined
}

/** A phase's output: its rows and anything worth keeping for PROFILE.md. */
export interface PhaseResult {
  readonly phase: string
  readonly rows: ReadonlyArray<Row>
  readonly extra?: Record<string, unknown>
}

/** ours ÷ base per round, summarised: median and interquartile range. */
export const ratioOf = (ours: ReadonlyArray<number>, base: ReadonlyArray<number>) => {
  const ratios = ours.map((o, i) => o / base[i]!).filter((r) => Number.isFinite(r))
  return {
    ratio: median(ratios),
    spread: [quantile(ratios, 0.25), quantile(ratios, 0.75)] as const
  }
}

/** Formats a duration given in microseconds. */
export const fmtMicros = (us: number): string =>
  us >= 1000
    ? `${(us / 1000).toFixed(us >= 10_000 ? 0 : 1)} ms`
    : us >= 10
      ? `${us.toFixed(0)} µs`
      : `${us.toFixed(1)} µs`
