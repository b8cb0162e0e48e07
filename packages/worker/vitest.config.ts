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
          bindings: { TEST_MIGRATIONS: migrations, ADMIN_TOKEN: "test-admin-token" }
        }
      })
    ],
    test: {
      include: ["test/**/*.test.ts"],
      // The broker has its own worker, wrangler config and suite (vitest.broker.config.ts).
      exclude: [...configDefaults.exclude, "test/broker/**"],
      setupFiles: ["./test/setup.ts"],
      reporters: ["default", ["json", { outputFile: ".vitest-result.json" }]],
      deps: { optimizer: { ssr: { enabled: true, include: ["effect", "@effect/platform"] } } }
    }
  }
})
