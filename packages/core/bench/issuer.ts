/**
 * `npm run bench:issuer` — every row of issue 12's table as a ratio measured in one run, against a
 * baseline doing the same work, with the issue's target and PASS/FAIL. A report: exits 0 whatever the
 * numbers say, unless `--check` is given (then non-zero when a target is missed).
 *
 * Phases, each in its own process (so one's heap and JIT state do not colour another's):
 *   inprocess  bench/inprocess.ts: CPU per request, issuer vs plain handler vs minimal HttpApi
 *   sdk        bench/tokens.ts: the SDK's cached installation token vs @octokit/auth-app
 *   worker     ../worker/bench/workerd.ts: bundle size, cold start in Node, storage round trips,
 *              and req/s under `wrangler dev` against the plain worker
 *   broker     ../worker/bench/broker.ts: CPU per token exchange answered from a warm cache, the
 *              broker vs a plain handler (jose + Maps) doing the same checks
 *
 *   npm run bench:issuer [-- --quick] [-- --check] [-- --only inprocess,sdk,worker,broker] [-- --markdown FILE]
 *                        [-- --repeat N]
 *
 * The machine is shared and noisy: candidates run interleaved, many times, and a ratio is the median
 * of per-round ratios (its interquartile range is printed beside it). Compare ratios, not times.
 * Within a run the rounds agree closely, but two runs can differ by 20–30 % as the load from other
 * processes changes: `--repeat N` runs the in-process, SDK and broker phases N times, reports the median
 * run, and prints the range over the runs in place of the IQR.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { fmtMicros, median, type PhaseResult, ratioOf, type Row } from "./stats.js"

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, "..", "..", "..")
const tsx = join(root, "node_modules", ".bin", "tsx")
const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const option = (name: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = flag("quick")
const only = new Set((option("only") ?? "inprocess,sdk,worker,broker").split(","))
const tmp = mkdtempSync(join(tmpdir(), "icr-bench-issuer-"))
const startedAt = new Date()
const load = loadavg()[0]!

/** Runs one phase; its progress goes to stderr, its result to a JSON file. */
const phase = (name: string, cwd: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const out = join(tmp, `${name}.json`)
  console.error(`\n» phase ${name}`)
  const t0 = performance.now()
  const result = spawnSync(tsx, [...args], {
    cwd,
    env: { ...process.env, ...env, BENCH_JSON: out },
    stdio: ["ignore", "inherit", "inherit"],
    // A phase that hangs is cut well before a 10-minute shell limit would cut the whole run.
    timeout: 540_000
  })
  console.error(`» phase ${name}: ${((performance.now() - t0) / 1000).toFixed(0)} s, exit ${result.status}`)
  if (result.status !== 0) return undefined
  try {
    return JSON.parse(readFileSync(out, "utf8")) as any
  } catch {
    return undefined
  }
}

const repeat = Math.max(1, Number(option("repeat") ?? "1"))
/** The median run of each row (by ratio), with the runs' range as its spread. */
const mergeRuns = (runs: ReadonlyArray<ReadonlyArray<Row>>): Array<Row> =>
  runs.length === 1
    ? [...runs[0]!]
    : runs[0]!.map((first) => {
        const same = runs.map((run) => run.find((r) => r.key === first.key)!).filter(Boolean)
        const ratios = same.map((r) => r.ratio!)
        const mid = same.find((r) => r.ratio === median(ratios))!
        return {
          ...mid,
          spread: [Math.min(...ratios), Math.max(...ratios)] as const,
          how: `${mid.how}; median of ${same.length} runs (range: min–max of the runs)`
        }
      })

const rows: Array<Row> = []
const failedPhases: Array<string> = []
const extras: Record<string, unknown> = {}

/** A phase that prints rows, run `repeat` times: each row's median run, and the last run's extras. */
const repeatedPhase = (name: string, cwd: string, args: Array<string>) => {
  const runs: Array<ReadonlyArray<Row>> = []
  let last: PhaseResult | undefined
  for (let i = 0; i < repeat; i++) {
    const r = phase(name, cwd, args) as PhaseResult | undefined
    if (r) {
      runs.push(r.rows)
      last = r
    }
  }
  if (last) {
    rows.push(...mergeRuns(runs))
    extras[name] = last.extra
  } else failedPhases.push(name)
}

if (only.has("inprocess")) {
  repeatedPhase("inprocess", join(root, "packages", "core"), [
    "bench/inprocess.ts",
    "--json",
    join(tmp, "inprocess.json"),
    "--rounds",
    quick ? "5" : "15",
    "--batch-ms",
    quick ? "120" : "250"
  ])
}

if (only.has("sdk")) {
  const iterations = quick ? "5000" : "20000"
  const rounds = quick ? "5" : "9"
  const runs: Array<ReadonlyArray<Row>> = []
  for (let i = 0; i < repeat; i++) {
    const r = phase("sdk", join(root, "packages", "core"), ["bench/tokens.ts"], {
      BENCH_ITERATIONS: iterations,
      BENCH_ROUNDS: rounds
    }) as { samples: Record<string, Array<number>> } | undefined
    if (r) {
      const octokit = r.samples["@octokit/auth-app installation token (cached)"]!
      const how = `${rounds} interleaved rounds × ${iterations} sequential calls (bench/tokens.ts), median of per-round ratios`
      const sdkRow = (key: string, label: string, name: string, target?: number, targetText?: string): Row => {
        const ours = r.samples[name]!
        const { ratio, spread } = ratioOf(ours, octokit)
        return {
          key,
          label,
          ours: median(ours) / 1000,
          base: median(octokit) / 1000,
          unit: "µs/op",
          baseLabel: "@octokit/auth-app cached",
          ratio,
          spread,
          target: targetText,
          pass: target === undefined ? undefined : ratio <= target,
          how
        }
      }
      runs.push([
        sdkRow(
          "sdk.facade",
          "SDK cached installation token: Promise facade",
          "icr-apps getInstallationToken (Promise facade)",
          1,
          "≤ 1× (not slower)"
        ),
        sdkRow(
          "sdk.effect",
          "SDK cached installation token: Effect (InstallationTokens.get in an Effect loop)",
          "icr-apps InstallationTokens.get (Effect loop)",
          1 / 3,
          "≤ 0.33× (≥ 3× faster)"
        ),
        sdkRow(
          "sdk.effect-runpromise",
          "SDK cached installation token: Effect, one runPromise per call",
          "icr-apps InstallationTokens.get (runPromise per call)"
        )
      ])
    }
  }
  if (runs.length > 0) rows.push(...mergeRuns(runs))
  else failedPhases.push("sdk")
}

if (only.has("worker")) {
  const r = phase("worker", join(root, "packages", "worker"), [
    "bench/workerd.ts",
    "--json",
    join(tmp, "worker.json"),
    "--rounds",
    quick ? "2" : "7",
    "--seconds",
    quick ? "2" : "3",
    "--cold-samples",
    quick ? "3" : "9"
  ]) as PhaseResult | undefined
  if (r) {
    rows.push(...r.rows)
    extras.worker = r.extra
  } else failedPhases.push("worker")
}

if (only.has("broker")) {
  repeatedPhase("broker", join(root, "packages", "worker"), [
    "--conditions=@icr-apps/source",
    "bench/broker.ts",
    "--json",
    join(tmp, "broker.json"),
    "--rounds",
    quick ? "5" : "15",
    "--batch-ms",
    quick ? "120" : "250"
  ])
}

// --- the table ---------------------------------------------------------------------------------------

const value = (v: number | undefined, unit: string) => {
  if (v === undefined || !Number.isFinite(v)) return "—"
  switch (unit) {
    case "µs CPU/req":
    case "µs/op":
      return fmtMicros(v)
    case "ms":
      return `${v.toFixed(1)} ms`
    case "KiB gz":
      return `${v.toFixed(1)} KiB gz`
    case "req/s":
      return `${v.toFixed(0)} req/s`
    default:
      return `${v} ${unit}`.trim()
  }
}
const ratioText = (r: Row) =>
  r.ratio === undefined || !Number.isFinite(r.ratio)
    ? "—"
    : `${r.ratio.toFixed(2)}×${r.spread ? ` (${r.spread[0].toFixed(2)}–${r.spread[1].toFixed(2)})` : ""}`
const verdict = (r: Row) => (r.pass === undefined ? (r.target ? "TODO" : "info") : r.pass ? "PASS" : "FAIL")

const lines = [
  `icr-apps issuer benchmark (issue 12) — ${startedAt.toISOString()}, node ${process.version}, ${cpus().length} cores, load ${load.toFixed(1)}${quick ? ", --quick" : ""}`,
  "",
  "| row | icr-apps | baseline | ours ÷ baseline (IQR) | target | |",
  "|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.label} | ${value(r.ours, r.unit)} | ${value(r.base, r.unit)} (${r.baseLabel}) | ${ratioText(r)} | ${r.target ?? ""} | ${verdict(r)} |`
  ),
  "",
  "How each row was measured:",
  ...rows.map((r) => `- ${r.key}: ${r.how}${r.note ? `; ${r.note}` : ""}`)
]
if (failedPhases.length > 0) lines.push("", `Phases that failed (see above): ${failedPhases.join(", ")}`)
const mismatches = (extras.inprocess as { mismatches?: Array<string> } | undefined)?.mismatches ?? []
if (mismatches.length > 0)
  lines.push("", `! The plain handler and the issuer answered differently: ${mismatches.join("; ")}`)
const brokerMismatches = (extras.broker as { mismatches?: Array<string> } | undefined)?.mismatches ?? []
if (brokerMismatches.length > 0)
  lines.push("", `! The plain handler and the broker answered differently: ${brokerMismatches.join("; ")}`)
console.log(`\n${lines.join("\n")}`)

const markdown = option("markdown")
if (markdown)
  writeFileSync(
    markdown,
    `${lines.join("\n")}\n\n<details><summary>raw</summary>\n\n\`\`\`json\n${JSON.stringify(extras, null, 2)}\n\`\`\`\n</details>\n`
  )
rmSync(tmp, { recursive: true, force: true })

const missed = rows.filter((r) => r.pass === false)
if (flag("check") && (missed.length > 0 || failedPhases.length > 0)) {
  console.error(`\n${missed.length} target(s) missed: ${missed.map((r) => r.key).join(", ")}`)
  process.exit(1)
}
