/**
 * One module shape, as the READMEs show it: every name a documented snippet imports from
 * `@icr-apps/core` or `@icr-apps/testkit` exists there; every `Name.layerX` the docs mention exists
 * on that root export; and every root tag whose module has layers carries them as statics.
 */
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as Core from "@icr-apps/core"
import * as AdminClientModule from "@icr-apps/core/sdk/AdminClient"
import * as AppJwtModule from "@icr-apps/core/sdk/AppJwt"
import * as ClientModule from "@icr-apps/core/sdk/Client"
import * as InstallationTokensModule from "@icr-apps/core/sdk/InstallationTokens"
import * as TokenCacheModule from "@icr-apps/core/sdk/TokenCache"
import { describe, expect, it } from "vitest"
import * as Testkit from "../src/index.js"

const root = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url))
const DOCS = ["README.md", "packages/core/README.md", "packages/testkit/README.md", "docs/API.md"]
const modules: Record<string, Record<string, unknown>> = {
  "@icr-apps/core": Core,
  "@icr-apps/testkit": Testkit
}

/** The fenced code blocks of a markdown file. */
const snippets = (text: string): ReadonlyArray<string> =>
  [...text.matchAll(/```(?:ts|typescript|js|javascript|mjs)\n([\s\S]*?)```/g)].map((m) => m[1]!)

describe("the documented module shape", () => {
  for (const doc of DOCS) {
    const text = readFileSync(root(doc), "utf8")
    it(`${doc}: every name its snippets import from a package root exists there`, () => {
      const missing: Array<string> = []
      for (const code of snippets(text)) {
        for (const m of code.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(@icr-apps\/(?:core|testkit))"/g)) {
          for (const part of m[1]!.split(",")) {
            const name = part
              .trim()
              .replace(/^type\s+/, "")
              .split(/\s+as\s+/)[0]!
            if (name !== "" && !part.trim().startsWith("type ") && !(name in modules[m[2]!]!))
              missing.push(`${m[2]}: ${name}`)
          }
        }
      }
      expect(missing).toEqual([])
    })
    it(`${doc}: every Name.layer… it mentions exists on that root export`, () => {
      const missing: Array<string> = []
      for (const m of text.matchAll(/\b([A-Z][A-Za-z]+)\.(layer[A-Za-z]*)\b/g)) {
        const [, name, member] = m
        const owner = modules["@icr-apps/core"]![name!] ?? modules["@icr-apps/testkit"]![name!]
        if (owner === undefined) continue // a name of another package (Layer.…, HttpClient.…)
        if (typeof (owner as unknown as Record<string, unknown>)[member!] !== "function")
          missing.push(`${name}.${member}`)
      }
      expect(missing).toEqual([])
    })
  }

  it("every TypeScript snippet of the test kit's README is tested code: verbatim in examples/testkit", () => {
    const examples = readdirSync(root("examples/testkit"))
      .filter((f) => f.endsWith(".test.ts"))
      .map((f) => readFileSync(root(`examples/testkit/${f}`), "utf8"))
    const readme = readFileSync(root("packages/testkit/README.md"), "utf8")
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)
    expect(blocks.length).toBeGreaterThan(0)
    for (const block of blocks) expect(examples.some((text) => text.includes(block))).toBe(true)
  })

  it("every root tag with layers carries them as statics, the same functions' results", () => {
    const shapes: ReadonlyArray<readonly [unknown, Record<string, unknown>, ReadonlyArray<string>]> = [
      [Core.AdminClient, AdminClientModule, ["layer"]],
      [Core.AppJwt, AppJwtModule, ["layer"]],
      [Core.IcrAppsClient, ClientModule, ["layer"]],
      [Core.IcrAppsHttpClient, ClientModule, ["layerFetch", "layerHttpClient"]],
      [Core.InstallationTokens, InstallationTokensModule, ["layer"]],
      [Core.TokenCache, TokenCacheModule, ["layerMemoryCache"]]
    ]
    for (const [tag, module, layers] of shapes) {
      for (const name of layers) {
        expect(typeof module[name]).toBe("function")
        expect(typeof (tag as Record<string, unknown>)[name]).toBe("function")
      }
    }
    // Namespaces stay namespaces.
    expect(typeof Core.IcrApps.layer).toBe("function")
    expect(typeof Core.KvTokenCache.layer).toBe("function")
    expect(typeof Testkit.FakeIssuer.layer).toBe("function")
  })

  it("exports the conformance suites and the kit from the test kit's root", () => {
    for (const name of [
      "issuerContract",
      "sdkContract",
      "tokenCacheContract",
      "registryContract",
      "rateLimiterContract",
      "runAdvancing",
      "trackRealWork",
      "testOnlyKeyPair",
      "Fault",
      "FakeIssuer",
      "makeFakeIssuer"
    ]) {
      expect(typeof (Testkit as Record<string, unknown>)[name], name).not.toBe("undefined")
    }
  })
})
