/**
 * The architecture's rules (STYLE.md): the SDK never imports the issuer and the issuer never
 * imports the SDK; the HTTP edge the issuer and the broker share (edge/) imports neither; api/ and
 * internal/ import none of them. The broker (worker/src/broker) never imports the issuer, only the
 * SDK, api/ and the edge. Checked twice: no such import exists today, and the Biome rule that
 * enforces it refuses one when it is written.
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { describe, expect, it } from "vitest"

const root = join(import.meta.dirname, "..", "..", "..")
const src = join(root, "packages", "core", "src")
const broker = join(root, "packages", "worker", "src", "broker")
const biome = join(root, "node_modules", ".bin", "biome")

const files = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []
  )

const forbidden: Record<string, RegExp> = {
  sdk: /from "(\.\.\/issuer\/|@icr-apps\/core\/issuer\/)/,
  issuer: /from "(\.\.\/sdk\/|@icr-apps\/core\/sdk\/)/,
  edge: /from "(\.\.\/(sdk|issuer)\/|@icr-apps\/core\/(sdk|issuer)\/)/,
  api: /from "(\.\.\/(sdk|issuer|edge)\/|@icr-apps\/core\/(sdk|issuer|edge)\/)/,
  internal: /from "(\.\.\/(sdk|issuer|edge)\/|@icr-apps\/core\/(sdk|issuer|edge)\/)/
}

/** Lints one file written at `path` of a scratch copy of the repo's layout, under the repo's biome.json. */
const lint = (path: string, code: string) => {
  const scratch = mkdtempSync(join(tmpdir(), "icr-boundary-"))
  try {
    copyFileSync(join(root, "biome.json"), join(scratch, "biome.json"))
    mkdirSync(dirname(join(scratch, path)), { recursive: true })
    writeFileSync(join(scratch, path), code)
    return spawnSync(biome, ["lint", "--colors=off", "--vcs-enabled=false", path], { cwd: scratch, encoding: "utf8" })
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

describe("sdk / issuer boundary", () => {
  it("no module imports across it", () => {
    const crossings = files(src).flatMap((file) => {
      const role = relative(src, file).split("/")[0]!
      const rule = forbidden[role]
      return rule === undefined
        ? []
        : readFileSync(file, "utf8")
            .split("\n")
            .filter((line) => rule.test(line))
            .map((line) => `${relative(src, file)}: ${line.trim()}`)
    })
    expect(crossings).toEqual([])
  })

  it("the broker imports the shared edge, and never the issuer", () => {
    const lines = files(broker).flatMap((file) => readFileSync(file, "utf8").split("\n"))
    expect(lines.filter((line) => /from "@icr-apps\/core\/issuer\//.test(line))).toEqual([])
    expect(lines.some((line) => /from "@icr-apps\/core\/edge\/Edge"/.test(line))).toBe(true)
  })

  it.each([
    ["packages/core/src/sdk/X.ts", 'import { Registry } from "../issuer/Registry.js"'],
    ["packages/core/src/issuer/X.ts", 'import { AppJwt } from "../sdk/AppJwt.js"'],
    ["packages/core/src/api/X.ts", 'import { Registry } from "../issuer/Registry.js"'],
    ["packages/core/src/internal/x.ts", 'import { AppJwt } from "../sdk/AppJwt.js"'],
    ["packages/core/src/edge/X.ts", 'import { Registry } from "../issuer/Registry.js"'],
    ["packages/core/src/edge/X.ts", 'import { AppJwt } from "../sdk/AppJwt.js"'],
    ["packages/core/src/api/X.ts", 'import { makeEdge } from "../edge/Edge.js"'],
    ["packages/worker/src/broker/X.ts", 'import { issuerEdge } from "@icr-apps/core/issuer/Http"']
  ])("the lint rule refuses a crossing import in %s", (path, line) => {
    const result = lint(path, `${line}\nexport const x = 1\n`)
    expect(result.status).not.toBe(0)
    expect(result.stdout + result.stderr).toMatch(/noRestrictedImports/)
  })

  it.each([
    ["packages/core/src/sdk/X.ts", 'import { Permissions } from "../api/Permissions.js"'],
    ["packages/core/src/edge/X.ts", 'import { Permissions } from "../api/Permissions.js"'],
    ["packages/core/src/issuer/X.ts", 'import { makeEdge } from "../edge/Edge.js"'],
    ["packages/worker/src/broker/X.ts", 'import { makeEdge } from "@icr-apps/core/edge/Edge"']
  ])("the lint rule lets a shared import through in %s", (path, line) => {
    const result = lint(path, `${line}\nexport const x = 1\n`)
    expect(result.status, result.stdout + result.stderr).toBe(0)
  })
})
