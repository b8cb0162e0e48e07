import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Registry from "@icr-apps/core/issuer/Registry"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import { rateLimiterContract } from "../src/RateLimiterContract.js"
import { registryContract } from "../src/RegistryContract.js"

// The registry contract against the in-memory registry (the test kit's); SQL backends run it too.
registryContract("in memory", () => Registry.layerMemory, { afterAll, beforeAll, describe, expect, it })

// The rate-limiter contract against the in-memory limiter (per process); the database one runs it on SQL.
rateLimiterContract(
  "in memory",
  (limits) => RateLimiter.layerMemory({ ...limits.address, principal: limits.principal }),
  {
    afterAll,
    beforeAll,
    describe,
    expect,
    it
  }
)
