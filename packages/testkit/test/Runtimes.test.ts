import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const smoke = join(root, "packages/testkit/runtimes/smoke.ts")
const tool = (name: string) => join(root, ".tools/node_modules/.bin", name)

const run = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number; out: string }>((resolve) => {
    execFile(command, args, { cwd: join(root, "packages/testkit"), timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? 1 : 0, out: `${stdout}${stderr}` })
    )
  })

// The core uses web-standard APIs only: the same end-to-end pass (issuer + SDK) runs unchanged on each runtime.
describe("runs unchanged on Node, Deno and Bun", () => {
  // The workspace's packages from their sources (the "@icr-apps/source" export condition), not a build;
  // the packed, compiled SDK is run on each runtime by scripts/packed-sdk.mjs.
  const source = "--conditions=@icr-apps/source"
  const runtimes: ReadonlyArray<readonly [string, string, ReadonlyArray<string>]> = [
    ["node", join(root, "node_modules/.bin/tsx"), [source, smoke]],
    ["deno", tool("deno"), ["run", "--allow-read", "--allow-env", "--unstable-sloppy-imports", source, smoke]],
    ["bun", tool("bun"), [source, "run", smoke]]
  ]
  for (const [name, command, args] of runtimes) {
    it(name, async () => {
      // npm test's bootstrap installs deno and bun into .tools/; without it this fails, never skips.
      expect(existsSync(command), `${command} is missing: run npm test (its bootstrap installs it)`).toBe(true)
      const { code, out } = await run(command, args)
      expect(out).toContain(`smoke ok ${name}`)
      expect(code).toBe(0)
    }, 90_000)
  }
})
