import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")

/** major.minor.patch of a version or of a caret range's floor. */
const parts = (version: string) => version.replace(/^\^/, "").split(".").map(Number) as [number, number, number]
/** Whether `version` satisfies the caret range `range` (npm's rules, 0.x included). */
const satisfiesCaret = (version: string, range: string) => {
  const [m, n, p] = parts(version)
  const [rm, rn, rp] = parts(range)
  if (m !== rm || (rm === 0 && n !== rn)) return false
  return n > rn || (n === rn && p >= rp)
}

// One Effect per app: the SDK's effect and @effect/platform are peers, of the Effect 3 line only
// (Effect 4 fails at import), and the README states the same ranges the package declares.
describe("the package's peers", () => {
  it("are effect 3.x and @effect/platform 0.97.x, satisfied by what the SDK is built and tested with", () => {
    const peers = pkg.peerDependencies as Record<string, string>
    expect(peers).toEqual({
      effect: expect.stringMatching(/^\^3\.\d+\.\d+$/),
      "@effect/platform": expect.stringMatching(/^\^0\.97\.\d+$/)
    })
    for (const name of ["effect", "@effect/platform"]) {
      expect(satisfiesCaret(pkg.devDependencies[name], peers[name]!)).toBe(true)
      expect(pkg.dependencies[name]).toBeUndefined()
      expect(readme).toContain(`\`${name}\` \`${peers[name]}\``)
    }
    expect(satisfiesCaret("4.0.0", peers.effect!)).toBe(false)
    expect(satisfiesCaret("0.98.0", peers["@effect/platform"]!)).toBe(false)
  })
})
