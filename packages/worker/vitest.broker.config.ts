import { generateKeyPairSync, randomBytes } from "node:crypto"
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers"
import { defineConfig } from "vitest/config"

/**
 * The broker's workerd suite: the broker is `main` (its own wrangler config and KV namespace);
 * the real issuer worker runs in the same isolate, in-process, over its own KV and D1 bindings
 * declared here, and is reached through the broker's optional ISSUER binding.
 */
export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations")
  // The worker's own env is a broker with an identity and no policy (deny all): enough to prove,
  // through a real service binding, who a caller is. Tests of exchanges build brokers of their own.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
  return {
    plugins: [
      cloudflareTest({
        main: "./src/broker/index.ts",
        wrangler: { configPath: "./wrangler.broker.jsonc" },
        miniflare: {
          kvNamespaces: ["TOKENS"],
          d1Databases: ["DB"],
          bindings: {
            TEST_MIGRATIONS: migrations,
            // At least 32 characters, or the issuer keeps its operator API off (SPEC §5).
            ADMIN_TOKEN: "test-admin-token-of-at-least-32-characters",
            BROKER_APP_ID: "1",
            BROKER_PRIVATE_KEY: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
            BROKER_CACHE_SECRET: randomBytes(32).toString("hex")
          },
          // A real service binding to the broker (this worker) whose props name the caller, as a
          // bound Worker's configuration would: `props` never comes from a request.
          serviceBindings: {
            AS_INVENTORY_SYNC: { name: "vitest-pool-workers-runner-broker", props: { service: "inventory-sync" } }
          }
        }
      })
    ],
    test: {
      name: "broker",
      include: ["test/broker/**/*.test.ts"],
      setupFiles: ["./test/setup.ts"],
      // A quiet run: what a test logs (audit lines, warnings) is shown only when that test fails.
      silent: "passed-only",
      reporters: ["default", ["json", { outputFile: ".vitest-broker-result.json" }]],
      deps: { optimizer: { ssr: { enabled: true, include: ["effect", "@effect/platform", "jose"] } } }
    }
  }
})
