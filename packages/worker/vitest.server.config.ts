import { defineConfig } from "vitest/config"

/**
 * The worker package's suites that run on Node, not in workerd: the server side of issue 16 (drivers,
 * migrations, the runtimes' adapters, the issuer and broker served on Node, Deno and Bun) and the
 * Postgres they need (test/support/postgres-setup.ts finds or starts one per run).
 */
export default defineConfig({
  // Workspace packages resolve to their TypeScript sources (the "@icr-apps/source" export condition),
  // as in core's config; the rest is Vite's default server list.
  ssr: { resolve: { conditions: ["@icr-apps/source", "module", "node", "development|production"] } },
  test: {
    name: "server",
    environment: "node",
    // Servers started in-process print their start-up and audit lines: shown for a failing test only.
    silent: "passed-only",
    include: ["test/server/**/*.test.ts", "test/support/**/*.test.ts"],
    globalSetup: ["./test/support/postgres-setup.ts"],
    reporters: ["default", ["json", { outputFile: ".vitest-server-result.json" }]]
  }
})
