import type { D1Migration } from "cloudflare:test"

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: Array<D1Migration>
      ADMIN_TOKEN?: string | undefined
      /** Test only (vitest.config.ts): an app's KV namespace for the SDK's KvTokenCache. */
      APP_TOKEN_CACHE: KVNamespace
      /** Test only (vitest.config.ts): the shards test/Shards.test.ts adds to DB. */
      DB_SHARD_1?: D1Database | undefined
      DB_SHARD_2?: D1Database | undefined
    }
  }
}
