import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// examples/testkit in the repository, against the sources (packed-sdk runs them from the tarballs).
// Needs examples/node_modules -> ../packages/testkit/node_modules (git-ignored; made by hand).
export default defineConfig({
  cacheDir: fileURLToPath(new URL("./node_modules/.vite-examples", import.meta.url)),
  resolve: { alias: { "@icr-apps/testkit": fileURLToPath(new URL("./src/index.ts", import.meta.url)) } },
  ssr: { resolve: { conditions: ["@icr-apps/source", "module", "node", "development|production"] } },
  test: {
    root: fileURLToPath(new URL("../../examples/testkit", import.meta.url)),
    include: ["*.test.ts"],
    // A quiet run: what a test logs is shown only when that test fails.
    silent: "passed-only"
  }
})
