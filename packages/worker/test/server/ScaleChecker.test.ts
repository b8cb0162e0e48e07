/**
 * The checker of `npm run bench:scale` (bench/scale-checker.ts): each kind of violation planted in a
 * small history is found, with the entries that prove it; the orderings the rules allow (a kill
 * overlapping the mint, an `error`, an expired token, a kill that may land between mint and use)
 * are not; and a large legal history checks clean and fast enough for the bench.
 */
import { describe, expect, it } from "vitest"
import { checkHistory, type HistoryEntry } from "../../bench/scale-checker.js"

const mint = (token: string, start: number, end: number, extra: Partial<HistoryEntry> = {}): HistoryEntry => ({
  kind: "mint",
  start,
  end,
  outcome: "ok",
  mintedTokenId: token,
  installationId: `inst-${token}`,
  appId: "app-1",
  ...extra
})
const use = (token: string, start: number, end: number, outcome: HistoryEntry["outcome"]): HistoryEntry => ({
  kind: "use",
  start,
  end,
  outcome,
  tokenId: token
})
const revoke = (token: string, start: number, end: number, outcome: HistoryEntry["outcome"] = "ok"): HistoryEntry => ({
  kind: "revoke",
  start,
  end,
  outcome,
  tokenId: token
})
const killInstallation = (
  installationId: string,
  start: number,
  end: number,
  outcome: HistoryEntry["outcome"] = "ok"
): HistoryEntry => ({ kind: "killInstallation", start, end, outcome, installationId })
const killApp = (appId: string, start: number, end: number, outcome: HistoryEntry["outcome"] = "ok"): HistoryEntry => ({
  kind: "killApp",
  start,
  end,
  outcome,
  appId
})

const kinds = (history: ReadonlyArray<HistoryEntry>) => checkHistory(history).violations.map((v) => v.kind)

describe("checkHistory: a killed token honoured (rule a)", () => {
  it("finds a use that succeeds after a revocation of the token was acknowledged", () => {
    const history = [mint("t", 0, 1), use("t", 2, 3, "ok"), revoke("t", 4, 5), use("t", 6, 7, "ok")]
    const report = checkHistory(history)
    expect(report.violations).toEqual([{ kind: "killedTokenHonoured", tokenId: "t", use: 3, mint: 0, kill: 2 }])
  })

  it("finds it after an installation kill switch that started after the mint ended", () => {
    const history = [mint("t", 0, 1), killInstallation("inst-t", 2, 3), use("t", 4, 5, "ok")]
    expect(checkHistory(history).violations).toEqual([
      { kind: "killedTokenHonoured", tokenId: "t", use: 2, mint: 0, kill: 1 }
    ])
  })

  it("finds it after an app kill switch, naming the earliest acknowledgement", () => {
    const history = [
      mint("t", 0, 1),
      killApp("app-1", 2, 9),
      killApp("app-1", 3, 4),
      use("t", 5, 6, "ok"),
      use("t", 10, 11, "ok")
    ]
    expect(checkHistory(history).violations).toEqual([
      { kind: "killedTokenHonoured", tokenId: "t", use: 3, mint: 0, kill: 2 },
      { kind: "killedTokenHonoured", tokenId: "t", use: 4, mint: 0, kill: 2 }
    ])
  })

  it("allows a success that overlaps the kill or starts before its acknowledgement", () => {
    expect(kinds([mint("t", 0, 1), revoke("t", 2, 5), use("t", 4, 6, "ok"), use("t", 3, 5.5, "ok")])).toEqual([])
  })

  it("allows a success after a kill that overlapped the mint (it may have been ordered first)", () => {
    expect(kinds([mint("t", 0, 3), killInstallation("inst-t", 2, 4), use("t", 5, 6, "ok")])).toEqual([])
    expect(kinds([killApp("app-1", 0, 2), mint("t", 1, 3), use("t", 5, 6, "ok")])).toEqual([])
  })

  it("does not count a kill that failed (error) or was refused, nor another token's, installation's or app's", () => {
    const history = [
      mint("t", 0, 1),
      revoke("t", 2, 3, "error"),
      killInstallation("inst-t", 2, 3, "refused"),
      revoke("u", 2, 3),
      killInstallation("inst-u", 2, 3),
      killApp("app-2", 2, 3),
      use("t", 4, 5, "ok")
    ]
    expect(kinds(history)).toEqual([])
  })
})

describe("checkHistory: an acknowledged mint lost (rule b)", () => {
  it("finds a use refused after the mint ended with no kill to explain it", () => {
    const history = [mint("t", 0, 1), use("t", 2, 3, "refused")]
    expect(checkHistory(history).violations).toEqual([{ kind: "acknowledgedMintLost", tokenId: "t", use: 1, mint: 0 }])
  })

  it("finds it when the only kills ended before the mint started or started after the use ended", () => {
    const history = [
      killApp("app-1", 0, 1),
      killInstallation("inst-t", 0.5, 1.5),
      mint("t", 2, 3),
      use("t", 4, 5, "refused"),
      revoke("t", 6, 7)
    ]
    expect(kinds(history)).toEqual(["acknowledgedMintLost"])
  })

  it("finds a refusal of an unexpired token among many legal ones", () => {
    const history = [mint("t", 0, 1, { expiresAt: 100 }), use("t", 50, 60, "refused"), use("t", 99, 101, "refused")]
    expect(checkHistory(history).violations).toEqual([{ kind: "acknowledgedMintLost", tokenId: "t", use: 1, mint: 0 }])
  })

  it("allows a refusal explained by a kill that may be ordered between the mint and the use", () => {
    // Each kill started before the use ended and ended after the mint started.
    expect(kinds([mint("t", 0, 2), revoke("t", 3, 10), use("t", 4, 5, "refused")])).toEqual([])
    expect(kinds([mint("t", 0, 2), killInstallation("inst-t", 1, 3), use("t", 4, 5, "refused")])).toEqual([])
    expect(kinds([mint("t", 0, 2), killApp("app-1", 4.5, 6), use("t", 4, 5, "refused")])).toEqual([])
  })

  it("allows a refusal explained by a kill that failed (its effect may land later), but not one refused", () => {
    expect(kinds([killApp("app-1", -5, -4, "error"), mint("t", 0, 1), use("t", 4, 5, "refused")])).toEqual([])
    expect(kinds([killApp("app-1", -5, -4, "refused"), mint("t", 0, 1), use("t", 4, 5, "refused")])).toEqual([
      "acknowledgedMintLost"
    ])
  })

  it("never counts an error, a use overlapping the mint, or an expired token", () => {
    const history = [
      mint("t", 0, 2, { expiresAt: 10 }),
      use("t", 3, 4, "error"),
      use("t", 1, 3, "refused"),
      use("t", 9, 11, "refused")
    ]
    expect(kinds(history)).toEqual([])
  })

  it("leaves uses of tokens it never saw minted unjudged", () => {
    const report = checkHistory([use("x", 0, 1, "ok"), use("y", 0, 1, "refused")])
    expect(report.violations).toEqual([])
    expect(report.unjudged).toBe(2)
  })
})

describe("checkHistory: a legal history", () => {
  it("finds nothing in 1,000,000 operations and counts them by kind and outcome", () => {
    // A simulated issuer that keeps the rules: each call takes effect as it starts (calls start in order).
    let seed = 42
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed / 2147483648
    }
    const history: Array<HistoryEntry> = []
    const tokens: Array<{ id: string; installationId: string; appId: string; alive: boolean; at: number }> = []
    const installationEpoch = new Map<string, number>()
    const appEpoch = new Map<string, number>()
    let now = 0
    for (let i = 0; history.length < 1_000_000; i++) {
      now += 0.01
      const start = now
      const end = now + random() * 2
      const r = random()
      const installationId = `i${Math.floor(random() * 200)}`
      const appId = `a${Number(installationId.slice(1)) % 8}`
      if (r < 0.1 || tokens.length === 0) {
        const id = `t${i}`
        tokens.push({ id, installationId, appId, alive: true, at: start })
        history.push(mint(id, start, end, { installationId, appId }))
      } else if (r < 0.12) {
        const token = tokens[Math.floor(random() * tokens.length)]!
        token.alive = false
        history.push(revoke(token.id, start, end))
      } else if (r < 0.13) {
        installationEpoch.set(installationId, start)
        history.push(killInstallation(installationId, start, end, random() < 0.1 ? "error" : "ok"))
      } else if (r < 0.131) {
        appEpoch.set(appId, start)
        history.push(killApp(appId, start, end))
      } else {
        const token = tokens[tokens.length - 1 - Math.floor(random() * Math.min(tokens.length, 500))]!
        const killedAt = Math.max(
          installationEpoch.get(token.installationId) ?? Number.NEGATIVE_INFINITY,
          appEpoch.get(token.appId) ?? Number.NEGATIVE_INFINITY
        )
        const honoured = token.alive && !(killedAt > token.at)
        history.push(use(token.id, start, end, random() < 0.01 ? "error" : honoured ? "ok" : "refused"))
      }
    }
    const began = performance.now()
    const report = checkHistory(history)
    const took = performance.now() - began
    expect(report.violations).toEqual([])
    expect(report.operations).toBe(1_000_000)
    expect(report.counts.use.ok + report.counts.use.refused + report.counts.use.error).toBeGreaterThan(800_000)
    expect(report.counts.use.refused).toBeGreaterThan(0)
    // Not a speed target (the bench prints the time): a guard against an accidentally quadratic checker.
    expect(took).toBeLessThan(60_000)
  }, 120_000)
})
