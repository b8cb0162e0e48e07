import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers"
import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations")
  return {
    plugins: [
      cloudflareTest({
        main: "./src/index.ts",
        wrangler: { configPath: "./wrangler.jsonc" },
        miniflare: {
          // ADMIN_TOKEN: at least 32 characters, or the operator API stays off (SPEC §5).
          bindings: { TEST_MIGRATIONS: migrations, ADMIN_TOKEN: "test-admin-token-of-at-least-32-characters" },
          // Not the issuer's (it keeps everything in D1): the KV namespace an app on Workers gives the
          // SDK's KvTokenCache, which test/KvTokenCache.test.ts runs the cache contract against.
          kvNamespaces: ["APP_TOKEN_CACHE"],
          // Two more D1 databases: the shards test/Shards.test.ts splits the registry over (with DB as home).
          d1Databases: ["DB_SHARD_1", "DB_SHARD_2"]
        }
      }),
      {
        // Workspace packages resolve to their TypeScript sources (the "@icr-apps/source" export
        // condition), ahead of the workerd conditions the pool has just set. Through a plugin because
        // a `resolve.conditions` in this config replaces the pool's list for the tests' environment.
        // (wrangler dev and deploy bundle core's dist instead: `npm start` builds it first.)
        name: "icr-apps-source",
        config(config: { resolve?: { conditions?: Array<string> } }) {
          config.resolve ??= {}
          config.resolve.conditions ??= []
          config.resolve.conditions.unshift("@icr-apps/source")
        }
      }
    ],
    test: {
      include: ["test/**/*.test.ts"],
      // The broker has its own worker, wrangler config and suite (vitest.broker.config.ts); the Node-side
      // suites and their Postgres run on Node (vitest.server.config.ts).
      exclude: [...configDefaults.exclude, "test/broker/**", "test/server/**", "test/support/**"],
      setupFiles: ["./test/setup.ts"],
      // A quiet run: what a test logs (audit lines, warnings) is shown only when that test fails.
      silent: "passed-only",
      reporters: ["default", ["json", { outputFile: ".vitest-result.json" }]],
      deps: { optimizer: { ssr: { enabled: true, include: ["effect", "@effect/platform"] } } }
    }
  }
})
