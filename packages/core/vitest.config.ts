import { defineConfig } from "vitest/config"

export default defineConfig({
  // Workspace packages resolve to their TypeScript sources (the "@icr-apps/source" export condition),
  // so the suites never need, or run against a stale, build. The rest is Vite's default server list.
  ssr: { resolve: { conditions: ["@icr-apps/source", "module", "node", "development|production"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // A quiet run: what a test logs (audit lines, warnings) is shown only when that test fails.
    silent: "passed-only",
    reporters: ["default", ["json", { outputFile: ".vitest-result.json" }]]
  }
})
