import { env } from "cloudflare:test"
import * as SqlRateLimiter from "@icr-apps/core/issuer/SqlRateLimiter"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { rateLimiterContract } from "@icr-apps/testkit/RateLimiterContract"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as D1 from "../src/sql/d1.js"

const runner = { afterAll, beforeAll, describe, expect, it }

// The storage contracts on D1 in workerd, through the same SqlRegistry the worker serves with.
registryContract("D1 (workerd)", () => SqlRegistry.layer(D1.make(env.DB)), runner)
rateLimiterContract(
  "D1 (workerd), the database limiter",
  (limits) => SqlRateLimiter.layer(D1.make(env.DB), limits),
  runner
)
